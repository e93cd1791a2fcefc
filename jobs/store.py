"""The object store's housekeeping: objects no snapshot refers to (listed, never deleted)."""

from __future__ import annotations

from evidence_store.sweep import SweepReport, sweep
from jobs.config import Settings
from jobs.context import open_evidence


def sweep_store(settings: Settings, *, remove_temporary: bool = False) -> SweepReport:
    """List orphaned objects (each logged in the custody log) and temporary files."""
    evidence = open_evidence(settings)
    return sweep(
        evidence.objects, evidence.index, actor=evidence.actor, remove_temporary=remove_temporary
    )
