"""Records as exhibits: a statement of reasons (``sor:UUID``) and an ad (``ad:PLATFORM:ID``).

A record's exhibit shows its fields and where it came from, and carries the snapshots it was
parsed from as originals, so that it is checked like any capture:

- a statement of reasons: the archived dump holding it (the smallest one, when a platform's
  own dump and the global one both do), and in the fields the part, the CSV file and the row,
  with the command that prints that row from the dump with unzip alone;
- an ad: the snapshots of each of its versions (the API answers) and of its rendered creative,
  and in the fields the current values and the version history.

The resolvers read the index and the object store that ``build_bundle`` puts into the
session's ``info`` (``"index"``, ``"objects"``): they need more than SQL (statements live in
Parquet files).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from evidence_store.queries import resolve_snapshot, snapshot_info
from exhibits.items import ExhibitError
from schemas import SnapshotInfo


@dataclass
class RecordItem:
    """A record as an exhibit: its fields, and the snapshots it was parsed from."""

    kind: str
    ref: str
    title: str
    record_fields: list[tuple[str, str]]
    record_snapshots: list[SnapshotInfo]
    record_url: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def snapshots(self) -> list[SnapshotInfo]:
        return self.record_snapshots

    @property
    def url(self) -> str | None:
        return self.record_url

    def fields(self) -> list[tuple[str, str]]:
        return self.record_fields


@dataclass(frozen=True)
class _Stores:
    index: Any
    objects: Any


def _stores(session: Session) -> _Stores:
    try:
        return _Stores(session.info["index"], session.info["objects"])
    except KeyError:
        raise ExhibitError("record exhibits are built by build_bundle (no store given)") from None


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value) if value else "-"
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return "-" if value is None or value == "" else str(value)


SOR_FIELDS = (
    "uuid",
    "platform_name",
    "platform_uid",
    "created_at",
    "application_date",
    "content_date",
    "category",
    "category_as_published",
    "category_specification",
    "decision_ground",
    "decision_visibility",
    "decision_visibility_other",
    "decision_account",
    "decision_monetary",
    "decision_provision",
    "account_type",
    "content_type",
    "content_language",
    "territorial_scope",
    "illegal_content_legal_ground",
    "illegal_content_explanation",
    "incompatible_content_ground",
    "incompatible_content_explanation",
    "decision_facts",
    "source_type",
    "automated_detection",
    "automated_decision",
)


def resolve_statement(session: Session, ref: str) -> RecordItem:
    """``sor:UUID``: the statement and the smallest archived dump that holds it."""
    from records.sor.models import SorDump
    from records.sor.query import NoStatements, find, ingested_parts, parquet_paths, statements

    stores = _stores(session)
    uuid = ref.strip().lower()
    files = ingested_parts(stores, current=False)
    cache = Path(tempfile.gettempdir()) / "evidence-sor-cache"
    try:
        with statements(parquet_paths(stores, files, cache)) as con:
            rows = find(con, uuid)
    except NoStatements:
        rows = []
    if not rows:
        raise ExhibitError(f"sor:{ref}: no statement {uuid} in the ingested dumps")
    dumps = {
        d.snapshot_id: d
        for d in session.scalars(
            select(SorDump).where(SorDump.snapshot_id.in_({r["dump_snapshot"] for r in rows}))
        )
    }
    # The smallest dump that holds the statement: a platform's own dump rather than the
    # global one, which can run to gigabytes.
    row = min(rows, key=lambda r: (dumps[r["dump_snapshot"]].size, r["row"]))
    dump = dumps[row["dump_snapshot"]]
    snap = snapshot_info(resolve_snapshot(session, dump.snapshot_id))
    fields = [(name, _text(row.get(name))) for name in SOR_FIELDS if name in row]
    fields += [
        ("dump_file", dump.filename),
        ("dump_published_sha1", dump.sha1),
        ("part", row["part"]),
        ("csv_file", row["csv_file"]),
        ("row", str(row["row"])),
        (
            "row_command",
            f"unzip -p {dump.filename} {row['part']} > part.zip && unzip -p part.zip "
            f'{row["csv_file"]} | python3 -c "import csv,sys; '
            f'print(list(csv.reader(sys.stdin))[{row["row"]}])"',
        ),
        ("found_in", f"{len(rows)} row(s) of {len({r['dump_snapshot'] for r in rows})} dump(s)"),
    ]
    return RecordItem(
        kind="sor",
        ref=f"sor:{uuid}",
        title=f"{uuid} ({row.get('platform_name') or '?'})",
        record_fields=fields,
        record_snapshots=[snap],
        record_url=dump.url,
    )


AD_FIELDS = (
    "platform",
    "ad_id",
    "advertiser_name",
    "page_name",
    "funding_entity",
    "beneficiaries",
    "payers",
    "first_shown",
    "last_shown",
    "status",
    "removal_reason",
    "spend",
    "impressions",
    "reach",
    "countries",
    "languages",
    "targeting",
    "special_categories",
    "creative",
    "snapshot_url",
)


def resolve_ad(session: Session, ref: str) -> RecordItem:
    """``ad:PLATFORM:ID`` (or ``ad:ID``): the ad, its versions' snapshots and its creative."""
    from records.ads.models import Ad, AdVersion

    platform, sep, ad_id = ref.partition(":")
    query = select(Ad).where(Ad.ad_id == (ad_id if sep else platform).strip())
    if sep:
        query = query.where(Ad.platform == platform.strip().lower())
    rows = session.scalars(query).all()
    if len(rows) != 1:
        problem = "no such ad" if not rows else "the id is on several platforms: say which"
        raise ExhibitError(f"ad:{ref}: {problem}")
    ad = rows[0]
    versions = session.scalars(
        select(AdVersion).where(AdVersion.ad_pk == ad.id).order_by(AdVersion.number)
    ).all()
    snapshot_ids = list(dict.fromkeys(v.snapshot_id for v in versions))
    if ad.creative_snapshot_id:
        snapshot_ids.append(ad.creative_snapshot_id)
    snaps = [snapshot_info(resolve_snapshot(session, sid)) for sid in snapshot_ids]
    current = ad.current or {}
    fields = [(name, _text(current.get(name))) for name in AD_FIELDS if name in current]
    for version in versions:
        fields.append(
            (
                f"version {version.number}",
                f"seen {version.seen_at.isoformat()}, snapshot {version.snapshot_id}, "
                f"WARC record {version.warc_record_id or '-'}",
            )
        )
    if ad.unseen_since:
        fields.append(("unseen_since", f"{ad.unseen_since.isoformat()} (run {ad.unseen_run_id})"))
    if not snaps:
        raise ExhibitError(f"ad:{ref}: no archived snapshot holds it")
    return RecordItem(
        kind="ad",
        ref=f"ad:{ad.platform}:{ad.ad_id}",
        title=f"{ad.platform}:{ad.ad_id} ({ad.advertiser_name or '?'})",
        record_fields=fields,
        record_snapshots=snaps,
        record_url=current.get("snapshot_url"),
    )


def present_record(item: Any, parts: list[Any], page: Any) -> Any:
    """A record's exhibit: the snapshot presenter, titled by the record."""
    from exhibits.bundle import present_snapshot
    from exhibits.texts import TEXTS

    shown = present_snapshot(item, parts, page)
    shown.title = f"{TEXTS[page.options.lang][f'record_{item.kind}']} {item.title}"
    if len(parts) > 1:
        shown.captured_until = max(p.meta["captured_at"] for p in parts)
        shown.captured_at = min(p.meta["captured_at"] for p in parts)
    return shown
