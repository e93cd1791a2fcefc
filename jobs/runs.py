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
from dataclasses import dataclass, field, replace
from typing import Any

from evidence_store.archive import EvidenceStore
from evidence_store.runs import InterruptedRun, finish_run, mark_interrupted, start_run
from jobs.config import Settings
from jobs.progress import NO_PROGRESS, Progress


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
) -> Iterator[RunRecord]:
    """Record a run around the ``with`` block; see the module's docstring."""
    interrupted = mark_interrupted(evidence)
    run_id = start_run(
        evidence, kind=kind, collection=collection, source=source, trigger=trigger, note=note
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
