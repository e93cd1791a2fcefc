"""Ads of the political-ad libraries: list, one ad with its provenance, its versions.

Fetching is `evidence crawl meta-ads|tiktok-ads|google-ads|x-ads` (``jobs.crawl``); the
sources' records step (``records.ads.parse``) indexes the ads. This is the quick look the
issue asks for; search and comparison belong to the research interface.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import case, func, select

from evidence_store.errors import EvidenceError
from jobs.access import record_access
from jobs.config import Settings
from jobs.context import open_evidence
from records.ads.models import Ad, AdVersion


class AdNotFound(EvidenceError):
    """No such ad, or an ambiguous reference."""


@dataclass
class AdSummary:
    platform: str
    ad_id: str
    advertiser: str | None
    versions: int
    first_seen_at: str
    last_seen_at: str
    unseen_since: str | None
    special_categories: list[str]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _summary(row: Ad) -> AdSummary:
    return AdSummary(
        platform=row.platform,
        ad_id=row.ad_id,
        advertiser=row.advertiser_name,
        versions=row.versions,
        first_seen_at=row.first_seen_at.isoformat(),
        last_seen_at=row.last_seen_at.isoformat(),
        unseen_since=row.unseen_since.isoformat() if row.unseen_since else None,
        special_categories=list(row.special_categories or []),
    )


def ads_list(
    settings: Settings,
    *,
    platform: str | None = None,
    advertiser: str | None = None,
    unseen: bool | None = None,
    special_category: str | None = None,
    limit: int = 100,
) -> tuple[list[AdSummary], int]:
    """Ads, most recently seen first, and how many match in all."""
    evidence = open_evidence(settings)
    query = select(Ad)
    if platform:
        query = query.where(Ad.platform == platform.lower())
    if advertiser:
        query = query.where(func.lower(Ad.advertiser_name).contains(advertiser.lower()))
    if unseen is True:
        query = query.where(Ad.unseen_since.is_not(None))
    elif unseen is False:
        query = query.where(Ad.unseen_since.is_(None))
    with evidence.index.session() as session:
        rows = session.scalars(query.order_by(Ad.last_seen_at.desc(), Ad.id.desc())).all()
    if special_category:
        rows = [r for r in rows if special_category in (r.special_categories or [])]
    return [_summary(r) for r in rows[:limit]], len(rows)


def ads_counts(settings: Settings) -> dict[str, dict[str, int]]:
    """Per platform: ads, ads with more than one version, ads no longer returned."""
    evidence = open_evidence(settings)
    with evidence.index.session() as session:
        rows = session.execute(
            select(
                Ad.platform,
                func.count(),
                func.sum(case((Ad.versions > 1, 1), else_=0)),
                func.count(Ad.unseen_since),
            ).group_by(Ad.platform)
        ).all()
    return {
        platform: {"ads": total, "changed": int(changed or 0), "unseen": unseen}
        for platform, total, changed, unseen in rows
    }


def _find(session: Any, ref: str) -> Ad:
    platform, _, ad_id = ref.partition(":") if ":" in ref else (None, "", ref)
    query = select(Ad).where(Ad.ad_id == ad_id.strip())
    if platform:
        query = query.where(Ad.platform == platform.lower())
    rows = session.scalars(query).all()
    if not rows:
        raise AdNotFound(f"no ad {ref!r} in the index (list them with: evidence ads list)")
    if len(rows) > 1:
        names = ", ".join(f"{r.platform}:{r.ad_id}" for r in rows)
        raise AdNotFound(f"ad {ref!r} is on several platforms ({names}): say which")
    return rows[0]


@dataclass
class AdDetail:
    summary: AdSummary
    fields: dict[str, Any]
    sources: list[dict[str, Any]]  # per version: snapshot, WARC record, run, seen at
    creative_snapshot: str | None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.summary.to_dict(),
            "fields": self.fields,
            "versions_from": self.sources,
            "creative_snapshot": self.creative_snapshot,
        }


def ads_show(settings: Settings, ref: str) -> AdDetail:
    """One ad (``platform:id`` or the id): its current fields and where each version came
    from. Logged in the custody log as a view of the snapshot of its current version."""
    evidence = open_evidence(settings)
    with evidence.index.session() as session:
        row = _find(session, ref)
        versions = session.scalars(
            select(AdVersion).where(AdVersion.ad_pk == row.id).order_by(AdVersion.number)
        ).all()
        detail = AdDetail(
            summary=_summary(row),
            fields=row.current,
            sources=[_source(v) for v in versions],
            creative_snapshot=row.creative_snapshot_id,
        )
    if versions:
        warning = record_access(
            evidence,
            action="viewed",
            snapshot_id=versions[-1].snapshot_id,
            details={"ad": f"{row.platform}:{row.ad_id}", "version": versions[-1].number},
        )
        if warning:
            detail.warnings.append(warning)
    return detail


def _source(version: AdVersion) -> dict[str, Any]:
    return {
        "version": version.number,
        "snapshot": version.snapshot_id,
        "warc_record": version.warc_record_id,
        "run": version.run_id,
        "seen_at": version.seen_at.isoformat(),
    }


def ads_versions(settings: Settings, ref: str) -> list[dict[str, Any]]:
    """Every version of an ad with the fields that changed from the one before."""
    evidence = open_evidence(settings)
    with evidence.index.session() as session:
        row = _find(session, ref)
        versions = session.scalars(
            select(AdVersion).where(AdVersion.ad_pk == row.id).order_by(AdVersion.number)
        ).all()
        result = []
        previous: dict[str, Any] = {}
        for version in versions:
            changed = {
                key: {"from": previous.get(key), "to": value}
                for key, value in version.fields.items()
                if previous and previous.get(key) != value
            }
            result.append(_source(version) | {"changed": changed})
            previous = version.fields
    return result
