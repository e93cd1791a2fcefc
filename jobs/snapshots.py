"""Looking at archived snapshots: listing them, and viewing one (a custody-log entry)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from evidence_store.queries import list_snapshots as query_snapshots
from evidence_store.queries import resolve_snapshot, snapshot_info
from jobs.access import record_access
from jobs.config import Settings
from jobs.context import open_evidence, open_index
from schemas import SnapshotInfo


def list_snapshots(
    settings: Settings, *, collection: str | None = None, limit: int = 50
) -> list[SnapshotInfo]:
    """Snapshots, newest first (listing is not an access to their content: not logged)."""
    index = open_index(settings)
    with index.session() as session:
        return query_snapshots(session, collection=collection, limit=limit)


@dataclass
class SnapshotView:
    info: SnapshotInfo
    manifest: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def view_snapshot(settings: Settings, ref: str) -> SnapshotView:
    """One snapshot's index data and manifest; the viewing is logged in the custody log."""
    evidence = open_evidence(settings)
    with evidence.index.session() as session:
        info = snapshot_info(resolve_snapshot(session, ref))
    manifest = json.loads(evidence.objects.get(info.id))
    warning = record_access(evidence, action="viewed", snapshot_id=info.id)
    return SnapshotView(info=info, manifest=manifest, warnings=[warning] if warning else [])
