"""Archived dump → Parquet: statements of reasons streamed from the dump's bytes in the store.

The outer zip (stored, not compressed) is read member by member; each part (a deflated zip of
CSV files) is streamed through pyarrow's CSV reader in blocks, normalised into one schema
(``records.sor.schema``) and written to one Parquet file per part: memory stays flat whatever
the dump's size, and nothing is unzipped to disk. Each Parquet file is archived as a derived
snapshot (kind ``derived``, naming the dump snapshot and the part it came from) and indexed in
``sor_parts``, one committed row per part, so that an ingestion killed half way resumes at the
first part it had not finished. A part that cannot be read (a CRC error, a broken CSV) is
reported and the other parts go on.
"""

from __future__ import annotations

import logging
import re
import shutil
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from sqlalchemy import delete, select

from evidence_store.archive import EvidenceStore, archive
from evidence_store.index.models import Artifact, Snapshot
from evidence_store.manifest import parse_manifest
from records.sor.models import SorDump, SorPart
from records.sor.schema import (
    BOOL_COLUMNS,
    CATEGORY_RENAMES,
    DATE_COLUMNS,
    LIST_COLUMNS,
    PARQUET_FORMAT,
    SCHEMA,
    check_columns,
    schema_version,
)
from schemas import Capture, CaptureArtifact, CaptureOutcome, CollectContext, ParseResult
from schemas.time import utc_now

log = logging.getLogger(__name__)
# Bytes of CSV per batch (a few thousand rows). The streaming reader keeps several blocks in
# flight outside Arrow's pool: 16 MiB blocks peaked at about 1 GiB, 4 MiB at about 500 MiB,
# at the same speed (benchmarks/bench_sor.py).
BLOCK_SIZE = 4 << 20
PARQUET_MEDIA_TYPE = "application/vnd.apache.parquet"
# Every column but the unique ones repeats a few values: dictionary pages shrink them.
DICTIONARY_COLUMNS = [n for n in SCHEMA.names if n not in ("uuid", "platform_uid", "row")]
PART_NAME = re.compile(r"\.csv\.zip$")
CSV_NAME = re.compile(r"\.csv$")
# A JSON array of plain enum values: ["A","B"]. Anything else is parsed as JSON, slowly.
SIMPLE_ARRAY = r'^\[\s*("[A-Za-z0-9_.-]*"(\s*,\s*"[A-Za-z0-9_.-]*")*)?\s*\]$'
PartCallback = Callable[[str, int], None]


class DumpError(ValueError):
    """A snapshot that is not an archived dump, or a dump that cannot be opened at all."""


@dataclass
class DumpIngest:
    """What ingesting one dump snapshot did."""

    snapshot: str
    filename: str
    status: str  # ingested, partial, failed, duplicate, unchanged (ingested before)
    rows: int = 0
    parts: int = 0
    broken: list[tuple[str, str]] = field(default_factory=list)  # (part, error)
    derived: list[str] = field(default_factory=list)  # Parquet snapshots archived now
    schema_version: int | None = None
    same_as: str | None = None


@dataclass(frozen=True)
class DumpRef:
    """An archived dump: its snapshot, the zip's object, and what its manifest says."""

    snapshot: str
    sha256: str
    size: int
    collection: str
    url: str
    day: date
    platform: str
    variant: str
    filename: str
    sha1: str


def dump_ref(evidence: EvidenceStore, snapshot_id: str) -> DumpRef:
    """The dump archived as ``snapshot_id`` (DumpError if it is not a dump snapshot)."""
    with evidence.index.session() as session:
        snap = session.get(Snapshot, snapshot_id)
        if snap is None:
            raise DumpError(f"no snapshot {snapshot_id}")
        artifact = session.scalar(
            select(Artifact).where(Artifact.snapshot_id == snapshot_id, Artifact.role == "dump")
        )
        collection = snap.collection.name
        deleted = snap.deleted_at is not None
    if artifact is None or deleted:
        raise DumpError(f"snapshot {snapshot_id} holds no dump (or its bytes were deleted)")
    manifest = parse_manifest(evidence.objects.get(snapshot_id))
    meta = manifest.capture.get("dsa_sor") or {}
    try:
        return DumpRef(
            snapshot=snapshot_id,
            sha256=artifact.sha256,
            size=artifact.size,
            collection=collection,
            url=manifest.source_url or "",
            day=date.fromisoformat(meta["day"]),
            platform=meta["platform"],
            variant=meta["variant"],
            filename=meta["filename"],
            sha1=meta["sha1"],
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DumpError(f"snapshot {snapshot_id}: its manifest does not describe a dump") from exc


def parse_run(
    evidence: EvidenceStore,
    settings: Any,
    context: CollectContext,
    snapshot_ids: list[str],
) -> ParseResult:
    """The `dsa-sor` source's records step: ingest each dump the run archived."""
    result = ParseResult()
    rows = 0
    for snapshot_id in snapshot_ids:
        done = ingest_dump(
            evidence,
            snapshot_id,
            workdir=context.workdir,
            source=context.source,
            run_id=context.run_id,
        )
        rows += done.rows if done.status not in ("duplicate", "unchanged") else 0
        result.snapshots.extend(done.derived)
        result.outcomes.extend(
            CaptureOutcome(
                url=f"{done.filename}!{part}", outcome="broken-part", mode="parse", error=error
            )
            for part, error in done.broken
        )
        result.stats.setdefault("dumps", []).append(
            {
                "snapshot": done.snapshot,
                "file": done.filename,
                "status": done.status,
                "rows": done.rows,
                "broken_parts": len(done.broken),
            }
        )
    result.records = rows
    return result


def ingest_dump(
    evidence: EvidenceStore,
    snapshot_id: str,
    *,
    workdir: Path,
    source: str | None = None,
    run_id: str | None = None,
    on_part: PartCallback | None = None,
) -> DumpIngest:
    """Stream the dump archived as ``snapshot_id`` into Parquet (idempotent: a dump ingested
    before is left as it is; the same bytes archived again point at the first one's files;
    a dump ingested half way resumes after its last finished part)."""
    ref = dump_ref(evidence, snapshot_id)
    with evidence.index.writing(f"sor-dump:{ref.sha256}") as session:
        row = session.get(SorDump, snapshot_id)
        if row is not None and row.status in ("ingested", "partial", "duplicate", "failed"):
            return DumpIngest(
                snapshot_id,
                ref.filename,
                "unchanged",
                rows=row.rows,
                parts=row.parts,
                schema_version=row.schema_version,
                same_as=row.same_as,
            )
        twin = session.scalar(
            select(SorDump).where(
                SorDump.sha256 == ref.sha256,
                SorDump.status.in_(("ingested", "partial")),
                SorDump.snapshot_id != snapshot_id,
            )
        )
        if row is None:
            row = SorDump(
                snapshot_id=snapshot_id,
                run_id=run_id,
                day=ref.day,
                platform=ref.platform,
                variant=ref.variant,
                url=ref.url,
                filename=ref.filename,
                sha1=ref.sha1,
                sha256=ref.sha256,
                size=ref.size,
                status="ingesting",
                rows=0,
                parts=0,
                broken_parts=0,
            )
            session.add(row)
        if twin is not None:
            # The same bytes again (a second capture of an unchanged day): the capture is
            # evidence of its own, the statements are not new.
            row.status, row.same_as = "duplicate", twin.snapshot_id
            row.rows, row.parts, row.schema_version = twin.rows, twin.parts, twin.schema_version
            row.ingested_at = utc_now()
            return DumpIngest(
                snapshot_id,
                ref.filename,
                "duplicate",
                rows=twin.rows,
                parts=twin.parts,
                schema_version=twin.schema_version,
                same_as=twin.snapshot_id,
            )
    with evidence.index.session() as session:
        finished = {
            p.position: p
            for p in session.scalars(select(SorPart).where(SorPart.dump_id == snapshot_id))
            if p.status == "ingested"
        }
    # Local stores hand out a seekable file; other stores are copied to the run's folder
    # first (zipfile needs to seek to the central directory).
    scratch = workdir / f"sor-{snapshot_id[:16]}"
    scratch.mkdir(parents=True, exist_ok=True)
    result = DumpIngest(snapshot_id, ref.filename, "ingesting")
    try:
        with _open_seekable(evidence, ref.sha256, scratch) as stream:
            try:
                outer = zipfile.ZipFile(stream)
            except (zipfile.BadZipFile, OSError) as exc:
                _finish(evidence, snapshot_id, "failed", 0, 0, 0, None)
                result.status = "failed"
                result.broken.append(("(the zip itself)", f"not a readable zip: {exc}"))
                return result
            parts = sorted(
                (i for i in outer.infolist() if PART_NAME.search(i.filename)),
                key=lambda i: i.filename,
            )
            versions: set[int] = set()
            for position, info in enumerate(parts):
                if position in finished:
                    result.rows += finished[position].rows
                    if finished[position].schema_version:
                        versions.add(finished[position].schema_version)
                    continue
                part = _ingest_part(evidence, ref, outer, info, position, scratch, source, run_id)
                if part.error is None:
                    result.rows += part.rows
                    versions.add(part.version or 0)
                    if part.snapshot:
                        result.derived.append(part.snapshot)
                else:
                    result.broken.append((info.filename, part.error))
                if on_part is not None:
                    on_part(info.filename, part.rows)
            result.parts = len(parts)
            broken = len(result.broken)
            if not parts:
                result.broken.append(("(the zip itself)", "holds no parts (*.csv.zip)"))
            result.status = (
                "ingested"
                if parts and not broken
                else "failed"
                if broken == len(parts)
                else "partial"
            )
            result.schema_version = max(versions) if versions else None
            _finish(
                evidence,
                snapshot_id,
                result.status,
                result.rows,
                len(parts),
                broken,
                result.schema_version,
            )
            return result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _finish(
    evidence: EvidenceStore,
    snapshot_id: str,
    status: str,
    rows: int,
    parts: int,
    broken: int,
    version: int | None,
) -> None:
    with evidence.index.writing() as session:
        row = session.get(SorDump, snapshot_id)
        assert row is not None
        row.status, row.rows, row.parts, row.broken_parts = status, rows, parts, broken
        row.schema_version, row.ingested_at = version, utc_now()


@dataclass
class _Part:
    rows: int = 0
    version: int | None = None
    snapshot: str | None = None
    error: str | None = None


def _ingest_part(
    evidence: EvidenceStore,
    ref: DumpRef,
    outer: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    position: int,
    scratch: Path,
    source: str | None,
    run_id: str | None,
) -> _Part:
    part = _Part()
    target = scratch / (PART_NAME.sub("", Path(info.filename).name) + ".parquet")
    csv_files = 0
    try:
        with outer.open(info) as member, zipfile.ZipFile(member) as inner:
            writer = pq.ParquetWriter(
                target, SCHEMA, compression="zstd", use_dictionary=DICTIONARY_COLUMNS
            )
            try:
                for csv_info in sorted(inner.infolist(), key=lambda i: i.filename):
                    if not CSV_NAME.search(csv_info.filename):
                        continue
                    csv_files += 1
                    with inner.open(csv_info) as csv_stream:
                        for batch, version in read_statements(
                            csv_stream,
                            dump_snapshot=ref.snapshot,
                            part=info.filename,
                            csv_file=csv_info.filename,
                        ):
                            writer.write_batch(batch)
                            part.rows += batch.num_rows
                            part.version = version
            finally:
                writer.close()
        if csv_files == 0:
            raise ValueError("holds no CSV file")
    except Exception as exc:
        part.error = f"{type(exc).__name__}: {exc}"
        log.warning("%s: part %s is broken: %s", ref.filename, info.filename, part.error)
        target.unlink(missing_ok=True)
        _record_part(evidence, ref, info, position, part, csv_files, None)
        return part
    capture = Capture(
        collection=ref.collection,
        kind="derived",
        source=source,
        source_url=ref.url,
        run_id=run_id,
        metadata={
            "derived_from": ref.snapshot,
            "format": PARQUET_FORMAT,
            "dsa_sor": {
                "day": ref.day.isoformat(),
                "platform": ref.platform,
                "variant": ref.variant,
                "part": info.filename,
                "part_crc32": info.CRC,
                "csv_files": csv_files,
                "rows": part.rows,
                "schema_version": part.version,
            },
        },
        artifacts=[
            CaptureArtifact(
                role="parquet", name=target.name, media_type=PARQUET_MEDIA_TYPE, path=target
            )
        ],
    )
    archived = archive(evidence, capture)
    target.unlink(missing_ok=True)
    part.snapshot = archived.id
    _record_part(evidence, ref, info, position, part, csv_files, archived.manifest.artifacts[0])
    return part


def _record_part(
    evidence: EvidenceStore,
    ref: DumpRef,
    info: zipfile.ZipInfo,
    position: int,
    part: _Part,
    csv_files: int,
    parquet: Any,
) -> None:
    with evidence.index.writing() as session:
        session.execute(
            delete(SorPart).where(SorPart.dump_id == ref.snapshot, SorPart.position == position)
        )
        session.add(
            SorPart(
                dump_id=ref.snapshot,
                position=position,
                name=info.filename,
                crc32=info.CRC,
                size=info.file_size,
                status="broken" if part.error else "ingested",
                error=part.error,
                rows=part.rows,
                csv_files=csv_files,
                schema_version=part.version,
                parquet_snapshot=part.snapshot,
                parquet_sha256=parquet.sha256 if parquet is not None else None,
                parquet_size=parquet.size if parquet is not None else None,
            )
        )


class _open_seekable:
    def __init__(self, evidence: EvidenceStore, sha256: str, scratch: Path) -> None:
        self.evidence, self.sha256, self.scratch = evidence, sha256, scratch
        self.stream: IO[bytes] | None = None

    def __enter__(self) -> IO[bytes]:
        stream = self.evidence.objects.open(self.sha256)
        if not stream.seekable():
            copy = self.scratch / "dump.zip"
            with stream, open(copy, "wb") as out:
                shutil.copyfileobj(stream, out, 1 << 20)
            stream = open(copy, "rb")
        self.stream = stream
        return stream

    def __exit__(self, *exc: object) -> None:
        if self.stream is not None:
            self.stream.close()


def read_statements(
    stream: IO[bytes],
    *,
    dump_snapshot: str | None = None,
    part: str | None = None,
    csv_file: str | None = None,
    block_size: int = BLOCK_SIZE,
) -> Iterator[tuple[pa.RecordBatch, int]]:
    """Batches of normalised statements (``records.sor.schema.SCHEMA``) from one CSV file of
    a dump, with each row's provenance, and the schema version of the file."""
    reader = pacsv.open_csv(
        stream,
        read_options=pacsv.ReadOptions(block_size=block_size, use_threads=True),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            # Every column as text first: the conversions below are ours, explicit and strict.
            column_types={c: pa.string() for c in SCHEMA.names},
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
            null_values=[""],
        ),
    )
    columns = reader.schema.names
    check_columns(columns)
    version = schema_version(columns)
    first_row = 1
    for batch in reader:
        yield normalise(batch, version, dump_snapshot, part, csv_file, first_row), version
        first_row += batch.num_rows


def normalise(
    batch: pa.RecordBatch,
    version: int,
    dump_snapshot: str | None,
    part: str | None,
    csv_file: str | None,
    first_row: int,
) -> pa.RecordBatch:
    """One batch of CSV text columns as a batch of ``SCHEMA``: a value that does not convert
    raises ValueError naming the column (the part is then reported broken)."""
    n = batch.num_rows
    out: list[pa.Array] = []
    names = batch.schema.names
    for schema_field in SCHEMA:
        name = schema_field.name
        if name == "category_as_published":
            out.append(_column(batch, names, "category", n))
        elif name == "schema_version":
            out.append(pa.array([version] * n, pa.int8()) if n else pa.array([], pa.int8()))
        elif name in ("dump_snapshot", "part", "csv_file"):
            value = {"dump_snapshot": dump_snapshot, "part": part, "csv_file": csv_file}[name]
            out.append(pa.repeat(pa.scalar(value, pa.string()), n))
        elif name == "row":
            out.append(pa.array(range(first_row, first_row + n), pa.int64()))
        else:
            text = _column(batch, names, name, n)
            try:
                out.append(_convert(name, text))
            except (pa.ArrowInvalid, ValueError) as exc:
                raise ValueError(f"column {name}: {exc}") from None
    return pa.RecordBatch.from_arrays(out, schema=SCHEMA)


def _column(batch: pa.RecordBatch, names: list[str], name: str, n: int) -> pa.Array:
    if name in names:
        return batch.column(names.index(name))
    return pa.nulls(n, pa.string())  # an older schema, or a light dump


def _convert(name: str, text: pa.Array) -> pa.Array:
    if name in DATE_COLUMNS:
        return pc.strptime(text, format="%Y-%m-%d %H:%M:%S", unit="s")
    if name in BOOL_COLUMNS:
        lowered = pc.utf8_lower(text)
        bad = pc.and_(pc.is_valid(lowered), pc.invert(pc.is_in(lowered, pa.array(["yes", "no"]))))
        if pc.any(bad).as_py():
            example = pc.filter(text, bad)[0].as_py()
            raise ValueError(f"expected Yes or No, found {example!r}")
        return pc.equal(lowered, "yes")
    if name in LIST_COLUMNS:
        return _json_arrays(text)
    if name == "category":
        return _rename_categories(text)
    return text


def _rename_categories(text: pa.Array) -> pa.Array:
    for old, new in CATEGORY_RENAMES.items():
        text = pc.if_else(pc.equal(text, old), new, text)
    return text


def _json_arrays(text: pa.Array) -> pa.Array:
    # A column of arrays holds few distinct values (territorial scopes, visibility
    # decisions): parse each once and map the rows onto them.
    encoded = pc.dictionary_encode(text)
    return pc.take(_parse_json_arrays(encoded.dictionary), encoded.indices)


def _parse_json_arrays(text: pa.Array) -> pa.Array:
    simple = pc.match_substring_regex(text, SIMPLE_ARRAY)
    if pc.all(pc.or_kleene(simple, pc.is_null(text))).as_py():
        inner = pc.replace_substring_regex(
            pc.utf8_slice_codeunits(text, 1, -1), pattern=r'"|\s', replacement=""
        )
        split = pc.split_pattern(inner, ",")
        # "[]" splits into [""]: an empty list.
        empty = pc.equal(inner, "")
        return pc.if_else(empty, pa.scalar([], pa.list_(pa.string())), split)
    import json

    values = []
    for value in text.to_pylist():
        if value is None:
            values.append(None)
            continue
        parsed = json.loads(value)
        if not isinstance(parsed, list):
            raise ValueError(f"expected a JSON array, found {value[:60]!r}")
        values.append([None if v is None else str(v) for v in parsed])
    return pa.array(values, pa.list_(pa.string()))
