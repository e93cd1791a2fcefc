"""Statements of reasons queried with DuckDB over the Parquet files of the ingested dumps.

Which files a query reads: per day, the newest ingested ``global`` dump if there is one (it
holds every platform), otherwise the newest dump of each platform; a full dump is preferred
to a light one of the same day. A dump captured twice with the same bytes is read once.
Looking a statement up by its uuid reads every ingested file, so that each place the
statement was published in is named.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Protocol

import duckdb
from sqlalchemy import select

from evidence_store.index import Index
from evidence_store.index.models import Snapshot
from evidence_store.objects.base import ObjectStore
from evidence_store.objects.local import LocalStore
from records.sor.models import SorDump, SorPart

STAT_DIMENSIONS = (
    "platform_name",
    "category",
    "decision_ground",
    "decision_visibility",
    "decision_account",
    "decision_monetary",
    "decision_provision",
    "automated_detection",
    "automated_decision",
    "content_type",
    "territorial_scope_de",
)
SLUG_SQL = "trim(regexp_replace(lower(platform_name), '[^a-z0-9]+', '-', 'g'), '-')"


class Stores(Protocol):
    """What the queries read: the index and the object store (an ``EvidenceStore`` is one)."""

    index: Index
    objects: ObjectStore


class NoStatements(LookupError):
    """No ingested statement matches (none ingested yet, or none in the range asked for)."""


@dataclass(frozen=True)
class PartFile:
    """An ingested part: its Parquet object and the dump it came from."""

    dump: str
    day: date
    platform: str
    variant: str
    part: str
    sha256: str
    rows: int
    url: str


@dataclass(frozen=True)
class Filters:
    """A selection of statements: platform (name or slug), days of the dumps, category."""

    platform: str | None = None
    day_from: date | None = None
    day_to: date | None = None
    category: str | None = None

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if self.platform is not None:
            clauses.append(f"{SLUG_SQL} = ?")
            params.append(_slug(self.platform))
        if self.category is not None:
            clauses.append("(category = ? OR category_as_published = ?)")
            name = self.category.upper()
            if not name.startswith("STATEMENT_CATEGORY_"):
                name = f"STATEMENT_CATEGORY_{name}"
            params += [name, name]
        return (" AND ".join(clauses) or "true"), params


def _slug(name: str) -> str:
    import re

    return re.sub(r"[^a-z0-9]+", "-", name.strip().lower()).strip("-")


def ingested_parts(
    evidence: Stores, filters: Filters = Filters(), *, current: bool = True
) -> list[PartFile]:
    """The Parquet files a query reads (``current``: one dump per day and platform, as the
    module says; otherwise every ingested file)."""
    with evidence.index.session() as session:
        query = (
            select(SorDump, SorPart, Snapshot.captured_at)
            .join(SorPart, SorPart.dump_id == SorDump.snapshot_id)
            .join(Snapshot, Snapshot.id == SorDump.snapshot_id)
            .where(
                SorDump.status.in_(("ingested", "partial")),
                SorPart.status == "ingested",
                SorPart.parquet_sha256.is_not(None),
                Snapshot.deleted_at.is_(None),
            )
        )
        if filters.day_from is not None:
            query = query.where(SorDump.day >= filters.day_from)
        if filters.day_to is not None:
            query = query.where(SorDump.day <= filters.day_to)
        rows = session.execute(query).all()
    by_dump: dict[str, list[PartFile]] = {}
    dumps: dict[str, tuple[SorDump, Any]] = {}
    for dump, part, captured in rows:
        dumps[dump.snapshot_id] = (dump, captured)
        by_dump.setdefault(dump.snapshot_id, []).append(
            PartFile(
                dump=dump.snapshot_id,
                day=dump.day,
                platform=dump.platform,
                variant=dump.variant,
                part=part.name,
                sha256=part.parquet_sha256 or "",
                rows=part.rows,
                url=dump.url,
            )
        )
    chosen = _current(dumps, filters) if current else list(dumps)
    return [f for dump in sorted(chosen) for f in sorted(by_dump[dump], key=lambda f: f.part)]


def _current(dumps: dict[str, tuple[SorDump, Any]], filters: Filters) -> list[str]:
    newest: dict[tuple[date, str], tuple[tuple[int, Any], str]] = {}
    for snapshot, (dump, captured) in dumps.items():
        # Full before light, then the newest capture: a day the Commission re-issued is read
        # as it was last published.
        rank = (1 if dump.variant == "full" else 0, captured)
        key = (dump.day, dump.platform)
        if key not in newest or rank > newest[key][0]:
            newest[key] = (rank, snapshot)
    wanted = _slug(filters.platform) if filters.platform else None
    chosen = []
    days_with_global = {day for day, platform in newest if platform == "global"}
    for (day, platform), (_, snapshot) in newest.items():
        if day in days_with_global and platform != "global":
            continue  # the global dump of the day holds this platform's statements already
        if wanted and platform not in ("global", wanted):
            continue
        chosen.append(snapshot)
    return chosen


def parquet_paths(evidence: Stores, files: Sequence[PartFile], cache: Path) -> list[str]:
    """Local paths DuckDB can read: the local store's own files, or copies of S3 objects in
    ``cache`` (named by digest and checked when copied, so a cached file is never stale)."""
    objects = evidence.objects
    if isinstance(objects, LocalStore):
        return [str(objects.path_of(f.sha256)) for f in files]
    cache.mkdir(parents=True, exist_ok=True)
    paths = []
    for f in files:
        path = cache / f"{f.sha256}.parquet"
        if not path.exists():
            partial = path.with_suffix(f".{os.getpid()}.tmp")
            digest = hashlib.sha256()
            with objects.open(f.sha256) as stream, open(partial, "wb") as out:
                while chunk := stream.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != f.sha256:
                partial.unlink(missing_ok=True)
                raise ValueError(f"object {f.sha256} does not have its digest: not read")
            os.replace(partial, path)
        paths.append(str(path))
    return paths


@contextmanager
def statements(
    paths: Sequence[str], *, memory_limit: str = "1GB", spill: Path | None = None
) -> Iterator[Any]:
    """A DuckDB connection with the view ``statements`` over ``paths``; a query larger than
    ``memory_limit`` spills to ``spill`` (default: the system's temporary folder, never the
    current directory, where DuckDB would put it)."""
    if not paths:
        raise NoStatements("no statements of reasons ingested (run: evidence crawl dsa-sor)")
    spill = spill or Path(tempfile.gettempdir()) / "evidence-duckdb"
    spill.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(config={"memory_limit": memory_limit, "temp_directory": str(spill)})
    try:
        listed = ", ".join("'" + p.replace("'", "''") + "'" for p in paths)
        con.execute(f"CREATE VIEW statements AS SELECT * FROM read_parquet([{listed}])")
        yield con
    finally:
        con.close()


_DIMENSION_SQL = {
    "platform_name": "platform_name",
    "category": "category",
    "decision_ground": "decision_ground",
    "decision_account": "decision_account",
    "decision_monetary": "decision_monetary",
    "decision_provision": "decision_provision",
    "automated_detection": "CASE automated_detection WHEN true THEN 'Yes' WHEN false THEN 'No' END",
    "automated_decision": "automated_decision",
    "content_type": "array_to_string(list_sort(content_type), '+')",
    "territorial_scope_de": "CASE WHEN list_contains(territorial_scope, 'DE') "
    "THEN 'DE included' ELSE 'DE not included' END",
}


def stats(con: Any, filters: Filters) -> dict[str, Any]:
    """Counts of the selected statements, in total and by each of ``STAT_DIMENSIONS``.

    A statement published twice (in the same dump, or in a global and a platform dump) is
    counted once: when the selection holds such duplicates, it is reduced to one row per uuid
    first; otherwise every count is a plain count(*), which is several times cheaper than
    count(DISTINCT uuid) in every grouping set.
    """
    where, params = filters.where()
    total, rows_read, first, last = con.execute(
        "SELECT count(DISTINCT uuid), count(*), min(created_at), max(created_at) "
        f"FROM statements WHERE {where}",
        params,
    ).fetchone()
    columns = sorted(
        {
            "platform_name",
            "category",
            "decision_ground",
            "decision_visibility",
            "decision_account",
            "decision_monetary",
            "decision_provision",
            "automated_detection",
            "automated_decision",
            "content_type",
            "territorial_scope",
        }
    )
    if total == rows_read:
        source = f"SELECT {', '.join(columns)} FROM statements WHERE {where}"
    else:
        picked = ", ".join(f"any_value({c}) AS {c}" for c in columns)
        source = f"SELECT {picked} FROM statements WHERE {where} GROUP BY uuid"
    scalar = [d for d in STAT_DIMENSIONS if d in _DIMENSION_SQL]
    rows = con.execute(
        f"""
        WITH selected AS ({source}),
        dims AS (SELECT {", ".join(f"{_DIMENSION_SQL[d]} AS {d}" for d in scalar)} FROM selected)
        SELECT {", ".join(f"GROUPING({d})" for d in scalar)}, {", ".join(scalar)}, count(*)
        FROM dims GROUP BY GROUPING SETS ({", ".join(f"({d})" for d in scalar)})
        """,
        params,
    ).fetchall()
    n = len(scalar)
    result: dict[str, dict[str, int]] = {d: {} for d in STAT_DIMENSIONS}
    for row in rows:
        grouping, values, count = row[:n], row[n : 2 * n], row[-1]
        index = list(grouping).index(0)
        key = values[index]
        result[scalar[index]]["(none)" if key is None else str(key)] = count
    # A statement may restrict visibility in several ways: counted once under each.
    for value, count in con.execute(
        f"""
        WITH selected AS ({source})
        SELECT v, count(*) FROM (
            SELECT unnest(coalesce(nullif(decision_visibility, []), [NULL])) AS v FROM selected
        ) GROUP BY v
        """,
        params,
    ).fetchall():
        result["decision_visibility"]["(none)" if value is None else str(value)] = count
    return {
        "statements": total,
        "rows": rows_read,
        "created_from": first.isoformat() if first else None,
        "created_to": last.isoformat() if last else None,
        "by": {
            d: dict(sorted(v.items(), key=lambda kv: (-kv[1], kv[0]))) for d, v in result.items()
        },
    }


def find(con: Any, uuid: str) -> list[dict[str, Any]]:
    """Every row with this uuid (a statement can be in a global and a platform dump)."""
    cursor = con.execute("SELECT * FROM statements WHERE uuid = ?", [uuid])
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def export(con: Any, filters: Filters, target: Path, fmt: str) -> int:
    """Write the selected statements to ``target`` (parquet or csv); the number of rows."""
    where, params = filters.where()
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    options = "FORMAT parquet, COMPRESSION zstd" if fmt == "parquet" else "FORMAT csv, HEADER"
    quoted = str(partial).replace("'", "''")
    con.execute(
        f"COPY (SELECT * FROM statements WHERE {where} ORDER BY created_at, uuid) "
        f"TO '{quoted}' ({options})",
        params,
    )
    count = con.execute(f"SELECT count(*) FROM statements WHERE {where}", params).fetchone()[0]
    shutil.move(partial, target)
    return count
