"""The run lifecycle every job that archives shares: start, finish, and what follows a run.

``run_lifecycle`` records the run (after marking runs that a killed process left ``running``
as ``interrupted``), and finishes it as succeeded, partial or failed, or as interrupted on
Ctrl-C; a job that raises leaves a failed run with the error, never a run that looks alive.
``after_run`` timestamps the run's snapshots (per snapshot or one Merkle root, as the source's
mode says), catches up on earlier runs' untimestamped snapshots, archives the TSAs' CRLs and
anchors the custody log's head: the steps the CLI, the scheduler and the API must not copy.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import select

from evidence_store.archive import EvidenceStore
from evidence_store.errors import EvidenceError
from evidence_store.index.models import Collection, Run, Source
from evidence_store.runs import InterruptedRun, finish_run, mark_interrupted, start_run
from jobs.config import Settings
from jobs.context import open_evidence
from jobs.progress import NO_PROGRESS, Progress
from schemas import format_rfc3339


@dataclass
class RunRecord:
    """A run in progress: the job sets ``status`` (default succeeded) and adds to ``stats``."""

    id: str
    kind: str
    collection: str
    source: str | None
    status: str = "succeeded"
    stats: dict[str, Any] = field(default_factory=dict)
    interrupted: list[InterruptedRun] = field(default_factory=list)  # found at its start


@contextmanager
def run_lifecycle(
    evidence: EvidenceStore,
    *,
    kind: str,
    collection: str,
    source: str | None,
    note: str | None,
    trigger: str = "manual",
    exclusive: bool = False,
) -> Iterator[RunRecord]:
    """Record a run around the ``with`` block; see the module's docstring. ``exclusive``:
    refuse to start while another run of the source is going (RunConflict)."""
    interrupted = mark_interrupted(evidence)
    run_id = start_run(
        evidence,
        kind=kind,
        collection=collection,
        source=source,
        trigger=trigger,
        note=note,
        exclusive=exclusive,
    )
    record = RunRecord(
        id=run_id, kind=kind, collection=collection, source=source, interrupted=interrupted
    )
    try:
        yield record
    except KeyboardInterrupt:
        finish_run(evidence, run_id, status="interrupted", stats=record.stats, error="interrupted")
        raise
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"
        finish_run(evidence, run_id, status="failed", stats=record.stats, error=error)
        raise
    finish_run(evidence, run_id, status=record.status, stats=record.stats)


@dataclass
class AfterRun:
    """What followed a run: its timestamps, the catch-up of earlier runs, CRLs, the anchor."""

    timestamps: dict[str, str | None] = field(default_factory=dict)  # snapshot -> genTime
    untimestamped: list[tuple[str, str]] = field(default_factory=list)  # snapshot, why
    mode: str | None = None  # snapshot or merkle; None: no TSA configured
    earlier_stamped: int = 0
    earlier_failed: int = 0
    crls_archived: int = 0
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "untimestamped": [{"snapshot": s, "reason": r} for s, r in self.untimestamped],
            "earlier_stamped": self.earlier_stamped,
            "earlier_failed": self.earlier_failed,
            "crls_archived": self.crls_archived,
            "warnings": self.warnings,
        }


def after_run(
    evidence: EvidenceStore,
    settings: Settings,
    snapshot_ids: list[str],
    *,
    source: str | None,
    run_id: str | None,
    progress: Progress = NO_PROGRESS,
) -> AfterRun:
    """Timestamp a run's new snapshots when TSAs are configured, then the follow-up steps.

    A snapshot no TSA would stamp stays archived and is reported, never dropped.
    """
    result = AfterRun()
    config = settings.timestamp_settings()
    if not config.enabled or not snapshot_ids:
        return result
    from evidence_store.timestamps.service import (
        anchor_custody_head,
        retry,
        timestamp_new,
        untimestamped,
    )

    result.mode = settings.timestamp_mode(source)
    if source is not None:  # the source's declared mode, unless the settings say otherwise
        config = replace(config, source_modes={**config.source_modes, source: result.mode})
    label = "one Merkle root over " if result.mode == "merkle" else ""
    progress.stage(f"timestamping {label}{len(snapshot_ids)} snapshot(s)")
    stamped = timestamp_new(evidence, snapshot_ids, config, source=source, run_id=run_id)
    result.timestamps = {sid: when for sid, when, _ in stamped.timestamped}
    result.untimestamped = list(stamped.failed)
    for sid, _ in stamped.failed:
        result.timestamps[sid] = None
    if stamped.failed:
        result.warnings.append(
            f"{len(stamped.failed)} snapshot(s) archived without a timestamp; "
            "`evidence timestamp retry` asks the TSAs again"
        )
    elif pending := untimestamped(evidence):
        # The TSAs answer again: earlier runs' untimestamped snapshots are stamped now, so
        # that nightly runs catch up without anyone running `timestamp retry`.
        progress.stage("timestamping earlier runs' snapshots", total=len(pending))
        earlier = retry(evidence, config, lambda n: progress.advance(n))
        result.earlier_stamped, result.earlier_failed = (
            len(earlier.timestamped),
            len(earlier.failed),
        )
    if settings.timestamps.archive_crls:
        # CRLs issued since earlier runs' tokens show the TSAs' status at their times.
        from evidence_store.timestamps.revocation import archive_crls

        progress.stage("archiving revocation lists")
        crls = archive_crls(evidence, anchors=config.anchors(), timeout=config.timeout)
        result.crls_archived = len(crls.archived)
        for url, reason in crls.failed:
            result.warnings.append(f"CRL not archived {url}: {reason}")
        if crls.stale:  # retired TSAs: one line, not one per nightly run and URL
            result.warnings.append(
                f"{len(crls.stale)} CRL distribution point(s) unreachable; "
                "their earlier CRLs stay archived"
            )
    if settings.timestamps.anchor_custody:
        from evidence_store.timestamps.service import TimestampError

        try:
            anchor_custody_head(evidence, config)
        except TimestampError as exc:
            result.warnings.append(f"custody log head not timestamped: {exc}")
    return result


@dataclass
class RunInfo:
    """A run as `evidence runs list/show` present it."""

    id: str
    source: str | None
    collection: str | None
    kind: str | None
    trigger: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    host: str | None
    pid: int | None
    stats: dict[str, Any]
    error: str | None
    note: str | None
    report_snapshot: str | None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["started_at"] = format_rfc3339(self.started_at)
        data["finished_at"] = format_rfc3339(self.finished_at) if self.finished_at else None
        return data


def _info(run: Run, source: str | None, collection: str | None) -> RunInfo:
    return RunInfo(
        id=run.id,
        source=source,
        collection=collection or run.stats.get("collection"),
        kind=run.kind or run.stats.get("kind"),
        trigger=run.trigger,
        status=run.status,
        started_at=run.started_at,
        finished_at=run.finished_at,
        host=run.host,
        pid=run.pid,
        stats=dict(run.stats),
        error=run.error,
        note=run.note,
        report_snapshot=run.report_snapshot_id,
    )


def _query() -> Any:
    return (
        select(Run, Source.name, Collection.name)
        .outerjoin(Source, Run.source_id == Source.id)
        .outerjoin(Collection, Run.collection_id == Collection.id)
    )


def list_runs(
    settings: Settings,
    *,
    source: str | None = None,
    status: str | None = None,
    limit: int = 50,
) -> list[RunInfo]:
    """Runs, newest first (runs left ``running`` by a dead process are marked first)."""
    evidence = open_evidence(settings)
    if not evidence.index.read_only:
        mark_interrupted(evidence)
    query = _query().order_by(Run.started_at.desc()).limit(limit)
    if source is not None:
        query = query.where(Source.name == source)
    if status is not None:
        query = query.where(Run.status == status)
    with evidence.index.session() as session:
        return [_info(run, name, coll) for run, name, coll in session.execute(query)]


def show_run(settings: Settings, ref: str) -> RunInfo:
    """One run by its id or a unique prefix of it (at least 4 characters)."""
    if len(ref) < 4:
        raise EvidenceError(f"run {ref!r}: give at least 4 characters of its id")
    evidence = open_evidence(settings)
    with evidence.index.session() as session:
        found = list(session.execute(_query().where(Run.id.startswith(ref)).limit(2)))
    if not found:
        raise EvidenceError(f"no run {ref!r} (see `evidence runs list`)")
    if len(found) > 1:
        raise EvidenceError(f"run {ref!r} is ambiguous: give more of its id")
    run, name, coll = found[0]
    return _info(run, name, coll)
