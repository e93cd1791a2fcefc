"""Retention policies: the only way evidence is ever deleted (never under a legal hold)."""

from __future__ import annotations

from typing import Any

from evidence_store.retention import apply_retention, retention_status, set_retention
from jobs.config import Settings
from jobs.context import open_evidence
from jobs.progress import NO_PROGRESS, Progress


def set_policy(
    settings: Settings,
    collection: str,
    days: int | None,
    reason: str,
    *,
    progress: Progress = NO_PROGRESS,
) -> Any:
    """Set a collection's retention (None: keep for ever); S3 objects are retained as long."""
    evidence = open_evidence(settings)
    progress.stage("extending retention")
    return set_retention(
        evidence,
        collection,
        days,
        reason,
        progress=lambda n: progress.advance(n),
        on_total=progress.total,
    )


def status(settings: Settings) -> list[Any]:
    """Every collection's policy with its deleted, held and due snapshots."""
    return retention_status(open_evidence(settings))


def apply(
    settings: Settings,
    *,
    dry_run: bool = False,
    collection: str | None = None,
    snapshots: list[str] | None = None,
    bypass_governance: bool = False,
    progress: Progress = NO_PROGRESS,
) -> Any:
    """Delete the artifacts of due snapshots (manifests, signatures and tokens stay)."""
    evidence = open_evidence(settings)
    if not dry_run:
        evidence.objects.check()
    progress.stage("would delete" if dry_run else "deleting")
    return apply_retention(
        evidence,
        dry_run=dry_run,
        collection=collection,
        snapshots=snapshots or None,
        bypass_governance=bypass_governance,
        progress=lambda n: progress.advance(n),
        on_total=progress.total,
    )
