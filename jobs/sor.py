"""Statements of reasons: statistics, one statement with its provenance, exports, the dumps
ingested, and ingesting archived dumps again (after a crash, or after an upgrade).

Downloading and archiving a day's dump is `evidence crawl dsa-sor` (``jobs.crawl``); its
records step streams the dump into Parquet (``records.sor.ingest``).
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import select

from evidence_store.errors import EvidenceError, InputError
from jobs.access import record_access
from jobs.config import Settings
from jobs.context import open_evidence
from jobs.progress import NO_PROGRESS, Progress
from jobs.runs import AfterRun, after_run, run_lifecycle
from jobs.sources import configured_source
from records.sor.ingest import DumpError, DumpIngest, ingest_dump
from records.sor.models import SorDump, SorPart
from records.sor.query import (
    Filters,
    NoStatements,
    PartFile,
    export,
    find,
    ingested_parts,
    parquet_paths,
    statements,
    stats,
)

SOURCE = "dsa-sor"


class SorError(EvidenceError):
    """A statement that is not there, or a query that cannot run."""


def _cache(settings: Settings) -> Path:
    return settings.data_path / "cache" / "sor"


def _open(settings: Settings, filters: Filters, *, current: bool = True) -> tuple[Any, list[str]]:
    evidence = open_evidence(settings)
    files = ingested_parts(evidence, filters, current=current)
    return evidence, parquet_paths(evidence, files, _cache(settings))


def sor_stats(settings: Settings, filters: Filters) -> dict[str, Any]:
    """Counts of the ingested statements (one dump per day and platform), by dimension."""
    _, paths = _open(settings, filters)
    try:
        with statements(paths, spill=_cache(settings) / "spill") as con:
            result = stats(con, filters)
    except NoStatements as exc:
        raise SorError(str(exc)) from None
    result["files"] = len(paths)
    result["filters"] = {
        "platform": filters.platform,
        "from": filters.day_from.isoformat() if filters.day_from else None,
        "to": filters.day_to.isoformat() if filters.day_to else None,
        "category": filters.category,
    }
    return result


@dataclass
class Statement:
    """A statement of reasons and every place it was found: the dump snapshot, the part,
    the CSV file and the row (what an exhibit cites)."""

    uuid: str
    fields: dict[str, Any]
    found_in: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"uuid": self.uuid, "fields": self.fields, "found_in": self.found_in}


PROVENANCE_FIELDS = ("schema_version", "dump_snapshot", "part", "csv_file", "row")


def sor_show(settings: Settings, uuid: str) -> Statement:
    """One statement by its uuid, from every ingested dump that holds it (custody: viewed)."""
    uuid = uuid.strip().lower()
    evidence, paths = _open(settings, Filters(), current=False)
    try:
        with statements(paths, spill=_cache(settings) / "spill") as con:
            rows = find(con, uuid)
    except NoStatements as exc:
        raise SorError(str(exc)) from None
    if not rows:
        raise SorError(f"no statement {uuid} in the ingested dumps")
    with evidence.index.session() as session:
        dumps = {
            d.snapshot_id: d
            for d in session.scalars(
                select(SorDump).where(SorDump.snapshot_id.in_({r["dump_snapshot"] for r in rows}))
            )
        }
    found = []
    for row in rows:
        dump = dumps.get(row["dump_snapshot"])
        found.append(
            {k: row[k] for k in PROVENANCE_FIELDS}
            | (
                {"day": dump.day.isoformat(), "dump_file": dump.filename, "url": dump.url}
                if dump
                else {}
            )
        )
    fields = {k: _plain(v) for k, v in rows[0].items() if k not in PROVENANCE_FIELDS}
    warnings = []
    for snapshot in dict.fromkeys(r["dump_snapshot"] for r in rows):
        warning = record_access(
            evidence,
            action="viewed",
            snapshot_id=snapshot,
            details={"statement": uuid, "what": "statement of reasons"},
        )
        if warning:
            warnings.append(warning)
    return Statement(uuid, fields, found, warnings[:1])


def _plain(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    return value


@dataclass
class SorExport:
    path: Path
    format: str
    rows: int
    sha256: str
    dumps: list[str]
    warnings: list[str] = field(default_factory=list)


def sor_export(settings: Settings, filters: Filters, output: Path, fmt: str) -> SorExport:
    """The selected statements as one Parquet or CSV file; each dump read gets an "exported"
    custody entry naming the file and its digest."""
    if fmt not in ("parquet", "csv"):
        raise InputError(f"unknown format {fmt!r}: use parquet or csv")
    if output.exists():
        raise InputError(f"{output} exists: an export is never overwritten")
    if not output.parent.is_dir():
        raise InputError(f"no such folder: {output.parent}")
    evidence = open_evidence(settings)
    files = ingested_parts(evidence, filters)
    paths = parquet_paths(evidence, files, _cache(settings))
    try:
        with statements(paths, spill=_cache(settings) / "spill") as con:
            rows = export(con, filters, output, fmt)
    except NoStatements as exc:
        raise SorError(str(exc)) from None
    with open(output, "rb") as stream:
        digest = hashlib.file_digest(stream, "sha256").hexdigest()
    dumps = sorted({f.dump for f in files})
    warnings = []
    for snapshot in dumps:
        warning = record_access(
            evidence,
            action="exported",
            snapshot_id=snapshot,
            details={
                "format": fmt,
                "file": str(output.absolute()),
                "sha256": digest,
                "what": "statements of reasons",
                "rows": rows,
            },
        )
        if warning:
            warnings.append(warning)
    return SorExport(output, fmt, rows, digest, dumps, warnings[:1])


@dataclass
class DumpInfo:
    snapshot: str
    day: str
    platform: str
    variant: str
    filename: str
    status: str
    rows: int
    parts: int
    broken_parts: int
    schema_version: int | None
    sha1: str
    sha256: str
    size: int
    same_as: str | None
    broken: list[dict[str, str]]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def sor_dumps(
    settings: Settings, *, day_from: date | None = None, day_to: date | None = None
) -> list[DumpInfo]:
    """The dumps archived, with what their ingestion did (newest day first)."""
    evidence = open_evidence(settings)
    with evidence.index.session() as session:
        query = select(SorDump).order_by(SorDump.day.desc(), SorDump.platform, SorDump.variant)
        if day_from is not None:
            query = query.where(SorDump.day >= day_from)
        if day_to is not None:
            query = query.where(SorDump.day <= day_to)
        dumps = list(session.scalars(query))
        broken: dict[str, list[dict[str, str]]] = {}
        for part in session.scalars(select(SorPart).where(SorPart.status == "broken")):
            broken.setdefault(part.dump_id, []).append(
                {"part": part.name, "error": part.error or ""}
            )
    return [
        DumpInfo(
            d.snapshot_id,
            d.day.isoformat(),
            d.platform,
            d.variant,
            d.filename,
            d.status,
            d.rows,
            d.parts,
            d.broken_parts,
            d.schema_version,
            d.sha1,
            d.sha256,
            d.size,
            d.same_as,
            broken.get(d.snapshot_id, []),
        )
        for d in dumps
    ]


@dataclass
class IngestResult:
    run_id: str
    dumps: list[DumpIngest]
    after: AfterRun


def sor_ingest(
    settings: Settings, snapshots: list[str] | None = None, *, progress: Progress = NO_PROGRESS
) -> IngestResult:
    """Ingest archived dumps that are not (wholly) ingested: those named, or every dump
    snapshot whose ingestion did not finish. One run of the `dsa-sor` source (so never at
    the same time as a crawl of it); the Parquet snapshots are timestamped as a crawl's."""
    from evidence_store.index.models import Artifact, Snapshot
    from evidence_store.queries import resolve_snapshot

    evidence = open_evidence(settings)
    with evidence.index.session() as session:
        if snapshots:
            ids = [resolve_snapshot(session, ref).id for ref in snapshots]
        else:
            done = select(SorDump.snapshot_id).where(SorDump.status != "ingesting")
            ids = list(
                session.scalars(
                    select(Snapshot.id)
                    .join(Artifact, Artifact.snapshot_id == Snapshot.id)
                    .where(
                        Snapshot.kind == "dump",
                        Artifact.role == "dump",
                        Snapshot.deleted_at.is_(None),
                        Snapshot.id.not_in(done),
                    )
                    .order_by(Snapshot.captured_at)
                )
            )
    _, spec, configured = configured_source(settings.sources, SOURCE)
    results: list[DumpIngest] = []
    with run_lifecycle(
        evidence,
        kind="dump",
        collection=configured.get("collection") or spec.collection,
        source=SOURCE,
        note="ingest archived dumps",
        trigger="manual",
        exclusive=True,
    ) as run:
        progress.stage("ingesting dumps", total=len(ids))
        with tempfile.TemporaryDirectory(prefix="evidence-sor-") as workdir:
            for snapshot_id in ids:
                try:
                    done = ingest_dump(
                        evidence, snapshot_id, workdir=Path(workdir), source=SOURCE, run_id=run.id
                    )
                except DumpError as exc:
                    raise SorError(str(exc)) from None
                results.append(done)
                progress.advance(1, item=done.filename)
        derived = [s for r in results for s in r.derived]
        broken = sum(len(r.broken) for r in results)
        run.status = "partial" if broken else "succeeded"
        run.stats.update(
            items=len(results),
            records=sum(r.rows for r in results if r.derived),
            derived_snapshots=len(derived),
            broken_parts=broken,
        )
        after = after_run(
            evidence, settings, derived, source=SOURCE, run_id=run.id, progress=progress
        )
    return IngestResult(run.id, results, after)


__all__ = [
    "DumpInfo",
    "Filters",
    "IngestResult",
    "PartFile",
    "SorError",
    "SorExport",
    "Statement",
    "sor_dumps",
    "sor_export",
    "sor_ingest",
    "sor_show",
    "sor_stats",
]
