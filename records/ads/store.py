"""Ads into the index: a new version when a normalised field changes, sightings per query,
and removals noticed when a query that returned an ad stops returning it.

``record_ads`` works on a whole response at once: one SELECT of what the index knows of its
ads (the current version's digest and the query's sighting with them), then one executemany
per kind of write (new ads, changed ads, seen-again ads, versions, sightings). Per-ad
statements and a flush per new ad made indexing cost tens of times the parsing.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import rfc8785
from sqlalchemy import Text, and_, bindparam, cast, insert, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from records.ads.models import Ad, AdSighting, AdVersion
from records.ads.vocabulary import flag_targeting
from schemas.ad import AdRecord

# Rows per SELECT of known ads: far below SQLite's and PostgreSQL's limits on parameters.
LOOKUP_CHUNK = 2000


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
    fields = ad.model_dump(mode="json")
    # Set in the dump rather than on a copy of the model: the same dict (the key keeps its
    # place), without copying the ad.
    fields["special_categories"] = [
        flag.model_dump(mode="json") for flag in flag_targeting(ad.targeting)
    ]
    return fields


# -- the digest: RFC 8785 canonical JSON, the C encoder where its output is the same -----------

_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)
# Where json's output may part from RFC 8785, looked for in the bytes (each a literal-led
# pattern or a byte search: scanning 5 kB per ad must stay cheap): a float Python writes as
# "1.0" (JCS: "1") or with an exponent ("1e-05", "1e+16"; JCS: "0.00001",
# "10000000000000000"), and integers of 16 digits or more (JCS refuses those beyond 2**53).
# Matches inside strings are false alarms that only cost the slow path.
_INTEGRAL_FLOAT = re.compile(rb"\.0[,\]}]")
_EXPONENT = re.compile(rb"e[+-]\d")
_LONG_INTEGER = re.compile(rb"[:\[,]-?\d{16}")
# Keys are sorted by UTF-16 code units in JCS, by code points in json: the same order unless a
# key holds a character beyond the BMP (in UTF-8, a sequence led by F0 to F4).
_ASTRAL_LEADS = (b"\xf0", b"\xf1", b"\xf2", b"\xf3", b"\xf4")
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


def canonical_json(value: dict[str, Any]) -> bytes:
    """RFC 8785 canonical JSON of ``value`` (a ``model_dump(mode="json")``: string keys),
    byte for byte what ``rfc8785.dumps`` makes, and raising where it raises."""
    try:
        data = _CANONICAL.encode(value).encode("utf-8")
    except (TypeError, ValueError):  # NaN, infinity, a lone surrogate, a type JSON has not
        return rfc8785.dumps(value)
    if (
        _INTEGRAL_FLOAT.search(data)
        or _EXPONENT.search(data)
        or _LONG_INTEGER.search(data)
        or (any(lead in data for lead in _ASTRAL_LEADS) and _astral_key(value))
    ):
        return rfc8785.dumps(value)
    return data


def _astral_key(value: Any) -> bool:
    if isinstance(value, dict):
        return any(
            (isinstance(k, str) and _ASTRAL.search(k)) or _astral_key(v) for k, v in value.items()
        )
    if isinstance(value, list | tuple):
        return any(_astral_key(v) for v in value)
    return False


def digest_of(fields: dict[str, Any]) -> str:
    """SHA-256 (hex) of the RFC 8785 canonical JSON of an ad's fields: what versions compare."""
    return hashlib.sha256(canonical_json(fields)).hexdigest()


# -- record_ads ------------------------------------------------------------------------------


@dataclass
class _Known:
    """What the index holds of an ad before this response (one row of the lookup)."""

    pk: int
    versions: int
    unseen_since: datetime | None
    last_seen_at: datetime
    digest: str | None  # of the current version
    sighting_pk: int | None  # this query's sighting
    sighting_seen_at: datetime | None


def record_ads(
    session: Session,
    ads: Sequence[AdRecord],
    provenance: Provenance,
    *,
    query_key: str | None,
) -> RecordStats:
    """Index ``ads`` as one response showed them; duplicates within ``ads`` count once (the
    last one's fields, the first one's place)."""
    stats = RecordStats()
    unique: dict[tuple[str, str], AdRecord] = {}
    for ad in ads:
        unique[(ad.platform, ad.ad_id)] = ad
    if not unique:
        return stats
    session.flush()  # what the session holds must be in the rows read and written below
    known = _lookup(session, list(unique), query_key)
    _write(session, unique, known, provenance, query_key, stats)
    return stats


def _lookup(
    session: Session, keys: list[tuple[str, str]], query_key: str | None
) -> dict[tuple[str, str], _Known]:
    """The known ads among ``keys``, with their current digest and ``query_key``'s sighting."""
    by_platform: dict[str, list[str]] = {}
    for platform, ad_id in keys:
        by_platform.setdefault(platform, []).append(ad_id)
    current = AdVersion.__table__
    ads = Ad.__table__
    sightings = AdSighting.__table__
    columns = [
        ads.c.id,
        ads.c.ad_id,
        ads.c.versions,
        ads.c.unseen_since,
        ads.c.last_seen_at,
        current.c.digest,
    ]
    joined = ads.outerjoin(
        current, and_(current.c.ad_pk == ads.c.id, current.c.number == ads.c.versions)
    )
    if query_key is not None:
        columns += [sightings.c.id, sightings.c.last_seen_at]
        joined = joined.outerjoin(
            sightings, and_(sightings.c.ad_pk == ads.c.id, sightings.c.query_key == query_key)
        )
    known: dict[tuple[str, str], _Known] = {}
    for platform, ad_ids in by_platform.items():
        for start in range(0, len(ad_ids), LOOKUP_CHUNK):
            chunk = ad_ids[start : start + LOOKUP_CHUNK]
            rows = session.execute(
                select(*columns)
                .select_from(joined)
                .where(ads.c.platform == platform, ads.c.ad_id.in_(chunk))
            )
            for row in rows:
                sighting = (row[6], row[7]) if query_key is not None else (None, None)
                known[(platform, row[1])] = _Known(
                    row[0], row[2], row[3], row[4], row[5], *sighting
                )
    return known


def _write(
    session: Session,
    unique: dict[tuple[str, str], AdRecord],
    known: dict[tuple[str, str], _Known],
    provenance: Provenance,
    query_key: str | None,
    stats: RecordStats,
) -> None:
    now = provenance.seen_at
    run_id = provenance.run_id
    dialect = session.get_bind().dialect.name
    serialised = dialect in ("sqlite", "postgresql")  # JSON written as text, dumped once
    new_ads: list[dict[str, Any]] = []
    # Rows of new ads get their "ad_pk" once the ads are inserted; rows keep the ads' order.
    pending: list[list[dict[str, Any]]] = []  # per new ad: its version and sighting
    versions: list[dict[str, Any]] = []
    # Updates of known ads, grouped by the columns they set (one executemany each).
    changed: dict[bool, list[dict[str, Any]]] = {False: [], True: []}  # by reappeared
    seen: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
    new_sightings: list[dict[str, Any]] = []
    seen_sightings: list[dict[str, Any]] = []
    for key, ad in unique.items():
        fields = fields_of(ad)
        digest = digest_of(fields)
        stats.ads += 1
        stats.by_platform[ad.platform] = stats.by_platform.get(ad.platform, 0) + 1
        row = known.get(key)
        if row is None:
            stored = json.dumps(fields) if serialised else fields
            new_ads.append(
                {
                    "platform": ad.platform,
                    "ad_id": ad.ad_id,
                    "advertiser_name": ad.advertiser_name or ad.page_name,
                    "first_seen_at": now,
                    "last_seen_at": now,
                    "last_run_id": run_id,
                    "unseen_since": None,
                    "unseen_run_id": None,
                    "versions": 1,
                    "b_current": stored,
                    "special_categories": _categories(fields),
                    "creative_snapshot_id": None,
                }
            )
            rows = [_version(1, digest, stored, provenance)]
            versions.append(rows[0])
            if query_key is not None:
                rows.append(_sighting(None, query_key, provenance))
                new_sightings.append(rows[1])
            pending.append(rows)
            stats.new_ads += 1
            continue
        reappeared = row.unseen_since is not None
        if reappeared:
            stats.reappeared += 1
        params: dict[str, Any] = {
            "b_pk": row.pk,
            "b_last_seen_at": max(row.last_seen_at, now),
            "b_last_run_id": run_id,
        }
        if row.digest == digest:
            stats.unchanged += 1
            seen[reappeared].append(params)
        else:
            number = row.versions + 1
            stored = json.dumps(fields) if serialised else fields
            params |= {
                "b_versions": number,
                "b_current": stored,
                "b_advertiser_name": ad.advertiser_name or ad.page_name,
                "b_special_categories": _categories(fields),
            }
            changed[reappeared].append(params)
            versions.append(_version(number, digest, stored, provenance) | {"ad_pk": row.pk})
            if number > 1:
                stats.new_versions += 1
        if query_key is not None:
            if row.sighting_pk is None:
                new_sightings.append(_sighting(row.pk, query_key, provenance))
            else:
                seen_sightings.append(
                    {
                        "b_pk": row.sighting_pk,
                        "b_last_run_id": run_id,
                        "b_last_seen_at": max(row.sighting_seen_at or now, now),
                    }
                )
    statements = _statements(dialect)
    if new_ads:
        pks = session.execute(statements.insert_ads, new_ads).scalars().all()
        for pk, rows in zip(pks, pending, strict=True):
            for made in rows:
                made["ad_pk"] = pk
    for reappeared, rows in changed.items():
        if rows:
            session.execute(statements.update_changed[reappeared], rows)
    for reappeared, rows in seen.items():
        if rows:
            session.execute(statements.update_seen[reappeared], rows)
    if versions:
        session.execute(statements.insert_versions, versions)
    if new_sightings:
        session.execute(insert(AdSighting.__table__), new_sightings)
    if seen_sightings:
        session.execute(statements.update_sightings, seen_sightings)
    if session.identity_map:
        # Rows written past the ORM: an instance already loaded must not show the old values.
        for group in (changed, seen):
            for params in group[False] + group[True]:
                _expire(session, Ad, params["b_pk"])
        for params in seen_sightings:
            _expire(session, AdSighting, params["b_pk"])


def _version(number: int, digest: str, stored: Any, provenance: Provenance) -> dict[str, Any]:
    return {
        "number": number,
        "digest": digest,
        "b_fields": stored,
        "snapshot_id": provenance.snapshot_id,
        "warc_record_id": provenance.warc_record_id,
        "run_id": provenance.run_id,
        "seen_at": provenance.seen_at,
    }


def _sighting(ad_pk: int | None, query_key: str, provenance: Provenance) -> dict[str, Any]:
    return {
        "ad_pk": ad_pk,
        "query_key": query_key,
        "last_run_id": provenance.run_id,
        "last_seen_at": provenance.seen_at,
    }


def _categories(fields: dict[str, Any]) -> list[str]:
    return sorted({f["category"] for f in fields["special_categories"]})


def _expire(session: Session, model: type, pk: int) -> None:
    instance = session.identity_map.get(identity_key(model, pk))
    if instance is not None:
        session.expire(instance)


@dataclass(frozen=True)
class _Statements:
    insert_ads: Any
    update_changed: dict[bool, Any]  # by reappeared
    update_seen: dict[bool, Any]
    insert_versions: Any
    update_sightings: Any


_STATEMENTS: dict[str, _Statements] = {}


def _statements(dialect: str) -> _Statements:
    """The executemany statements, built once per dialect (so their compiled forms are
    cached too)."""
    made = _STATEMENTS.get(dialect)
    if made is not None:
        return made
    ads = Ad.__table__
    sightings = AdSighting.__table__

    def json_param(name: str) -> Any:
        # The fields are dumped once per ad and the text used for the ad and its version, as
        # the JSON type would have written it (json.dumps); PostgreSQL parses it to JSONB.
        if dialect == "sqlite":
            return bindparam(name, type_=Text())
        if dialect == "postgresql":
            return cast(bindparam(name, type_=Text()), JSONB)
        return bindparam(name, type_=ads.c.current.type)

    unseen = {"unseen_since": None, "unseen_run_id": None}
    by_pk = ads.c.id == bindparam("b_pk")
    seen_values = {
        "last_seen_at": bindparam("b_last_seen_at", type_=ads.c.last_seen_at.type),
        "last_run_id": bindparam("b_last_run_id"),
    }
    changed_values = seen_values | {
        "versions": bindparam("b_versions"),
        "current": json_param("b_current"),
        "advertiser_name": bindparam("b_advertiser_name"),
        "special_categories": bindparam(
            "b_special_categories", type_=ads.c.special_categories.type
        ),
    }
    # Plain columns come from the parameters' keys; only the JSON text needs its own binding.
    insert_ads = (
        insert(ads)
        .values(current=json_param("b_current"))
        .returning(ads.c.id, sort_by_parameter_order=True)
    )
    versions = AdVersion.__table__
    made = _Statements(
        insert_ads=insert_ads,
        update_changed={
            False: update(ads).where(by_pk).values(changed_values),
            True: update(ads).where(by_pk).values(changed_values | unseen),
        },
        update_seen={
            False: update(ads).where(by_pk).values(seen_values),
            True: update(ads).where(by_pk).values(seen_values | unseen),
        },
        insert_versions=insert(versions).values(fields=json_param("b_fields")),
        update_sightings=update(sightings)
        .where(sightings.c.id == bindparam("b_pk"))
        .values(
            last_seen_at=bindparam("b_last_seen_at", type_=sightings.c.last_seen_at.type),
            last_run_id=bindparam("b_last_run_id"),
        ),
    )
    _STATEMENTS[dialect] = made
    return made


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
