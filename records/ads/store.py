"""Ads into the index: a new version when a normalised field changes, sightings per query,
and removals noticed when a query that returned an ad stops returning it."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import rfc8785
from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from records.ads.models import Ad, AdSighting, AdVersion
from records.ads.vocabulary import flag_targeting
from schemas.ad import AdRecord


@dataclass(frozen=True)
class Provenance:
    """Where a version came from: the snapshot and the WARC record of the response."""

    snapshot_id: str
    warc_record_id: str | None
    run_id: str | None
    seen_at: datetime


@dataclass
class RecordStats:
    ads: int = 0
    new_ads: int = 0
    new_versions: int = 0
    unchanged: int = 0
    reappeared: int = 0
    by_platform: dict[str, int] = field(default_factory=dict)

    def add(self, other: RecordStats) -> None:
        self.ads += other.ads
        self.new_ads += other.new_ads
        self.new_versions += other.new_versions
        self.unchanged += other.unchanged
        self.reappeared += other.reappeared
        for platform, n in other.by_platform.items():
            self.by_platform[platform] = self.by_platform.get(platform, 0) + n


def fields_of(ad: AdRecord) -> dict[str, Any]:
    """The normalised fields as stored (JSON), with the special-category flags computed."""
    flagged = ad.model_copy(update={"special_categories": flag_targeting(ad.targeting)})
    return flagged.model_dump(mode="json")


def digest_of(fields: dict[str, Any]) -> str:
    return hashlib.sha256(rfc8785.dumps(fields)).hexdigest()


def record_ads(
    session: Session,
    ads: Sequence[AdRecord],
    provenance: Provenance,
    *,
    query_key: str | None,
) -> RecordStats:
    """Index ``ads`` as one response showed them; duplicates within ``ads`` count once."""
    stats = RecordStats()
    unique: dict[tuple[str, str], AdRecord] = {}
    for ad in ads:
        unique[(ad.platform, ad.ad_id)] = ad
    if not unique:
        return stats
    existing = {
        (row.platform, row.ad_id): row
        for row in session.scalars(
            select(Ad).where(tuple_(Ad.platform, Ad.ad_id).in_(list(unique)))
        )
    }
    last_digest = (
        dict(
            session.execute(
                select(AdVersion.ad_pk, AdVersion.digest).where(
                    AdVersion.ad_pk.in_([row.id for row in existing.values()]),
                    tuple_(AdVersion.ad_pk, AdVersion.number).in_(
                        [(row.id, row.versions) for row in existing.values()]
                    ),
                )
            ).all()
        )
        if existing
        else {}
    )
    now = provenance.seen_at
    for key, ad in unique.items():
        fields = fields_of(ad)
        digest = digest_of(fields)
        row = existing.get(key)
        stats.ads += 1
        stats.by_platform[ad.platform] = stats.by_platform.get(ad.platform, 0) + 1
        if row is None:
            row = Ad(
                platform=ad.platform,
                ad_id=ad.ad_id,
                first_seen_at=now,
                last_seen_at=now,
                versions=0,
                current={},
                special_categories=[],
            )
            session.add(row)
            session.flush()
            stats.new_ads += 1
        elif row.unseen_since is not None:
            row.unseen_since, row.unseen_run_id = None, None  # back in the library
            stats.reappeared += 1
        row.last_seen_at = max(row.last_seen_at, now)
        row.last_run_id = provenance.run_id
        if last_digest.get(row.id) == digest:
            stats.unchanged += 1
        else:
            row.versions += 1
            row.current = fields
            row.advertiser_name = ad.advertiser_name or ad.page_name
            row.special_categories = sorted({f["category"] for f in fields["special_categories"]})
            session.add(
                AdVersion(
                    ad_pk=row.id,
                    number=row.versions,
                    digest=digest,
                    fields=fields,
                    snapshot_id=provenance.snapshot_id,
                    warc_record_id=provenance.warc_record_id,
                    run_id=provenance.run_id,
                    seen_at=now,
                )
            )
            if row.versions > 1:
                stats.new_versions += 1
        if query_key is not None:
            _sighting(session, row.id, query_key, provenance)
    return stats


def _sighting(session: Session, ad_pk: int, query_key: str, provenance: Provenance) -> None:
    sighting = session.scalar(
        select(AdSighting).where(AdSighting.ad_pk == ad_pk, AdSighting.query_key == query_key)
    )
    if sighting is None:
        session.add(
            AdSighting(
                ad_pk=ad_pk,
                query_key=query_key,
                last_run_id=provenance.run_id,
                last_seen_at=provenance.seen_at,
            )
        )
    else:
        sighting.last_run_id = provenance.run_id
        sighting.last_seen_at = max(sighting.last_seen_at, provenance.seen_at)


def mark_unseen(session: Session, query_key: str, run_id: str, now: datetime) -> list[Ad]:
    """Ads the query returned before and did not return in ``run_id`` (which fetched every
    page of it): marked unseen since now, by this run. Already unseen ones stay as they were."""
    rows = session.scalars(
        select(Ad)
        .join(AdSighting, AdSighting.ad_pk == Ad.id)
        .where(
            AdSighting.query_key == query_key,
            AdSighting.last_run_id.is_distinct_from(run_id),
            Ad.unseen_since.is_(None),
        )
    ).all()
    for row in rows:
        row.unseen_since, row.unseen_run_id = now, run_id
    return list(rows)


def link_creative(session: Session, platform: str, ad_id: str, snapshot_id: str) -> bool:
    """Point the ad at the snapshot of its rendered creative; False if the ad is unknown."""
    row = session.scalar(select(Ad).where(Ad.platform == platform, Ad.ad_id == ad_id))
    if row is None:
        return False
    row.creative_snapshot_id = snapshot_id
    return True


def query_key(source: str, parameters: dict[str, Any]) -> str:
    """A stable key of what a run asked a library for (the source and its query settings)."""
    return hashlib.sha256(rfc8785.dumps({"source": source, "query": parameters})).hexdigest()
