"""Legal holds: while one is active, nothing of its snapshot or collection is deleted."""

from __future__ import annotations

from evidence_store.holds import (
    HoldInfo,
    HoldOutcome,
    SyncOutcome,
    list_holds,
    release_hold,
    set_hold,
    sync_holds,
)
from jobs.config import Settings
from jobs.context import open_evidence
from jobs.progress import NO_PROGRESS, Progress


def hold(
    settings: Settings,
    target: str,
    reason: str,
    *,
    kind: str | None = None,
    progress: Progress = NO_PROGRESS,
) -> HoldOutcome:
    """Put a legal hold on a snapshot or collection (S3: a legal hold on each object)."""
    evidence = open_evidence(settings)
    progress.stage("locking objects")
    return set_hold(
        evidence,
        target,
        reason,
        kind=kind,
        progress=lambda n: progress.advance(n),
        on_total=progress.total,
    )


def release(
    settings: Settings,
    target: str | None,
    reason: str,
    *,
    hold_id: int | None = None,
    kind: str | None = None,
    progress: Progress = NO_PROGRESS,
) -> HoldOutcome:
    """Release a hold; the store's hold is lifted where no other hold covers an object."""
    evidence = open_evidence(settings)
    progress.stage("unlocking objects")
    return release_hold(
        evidence,
        target,
        reason,
        hold_id=hold_id,
        kind=kind,
        progress=lambda n: progress.advance(n),
        on_total=progress.total,
    )


def holds(settings: Settings, *, include_released: bool = False) -> list[HoldInfo]:
    """The active holds (and with ``include_released`` the released ones)."""
    return list_holds(open_evidence(settings), include_released=include_released)


def sync(settings: Settings, *, progress: Progress = NO_PROGRESS) -> SyncOutcome:
    """Make the store's legal holds agree with the index."""
    evidence = open_evidence(settings)
    progress.stage("syncing holds")
    return sync_holds(evidence, progress=lambda n: progress.advance(n))
