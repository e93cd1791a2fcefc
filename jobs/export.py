"""Exports of archived snapshots; each exported snapshot gets an "exported" custody entry."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from evidence_store.errors import EvidenceError
from jobs.access import record_access
from jobs.config import Settings
from jobs.context import open_evidence


@dataclass
class ExportResult:
    path: Path
    sha256: str
    size: int
    snapshots: list[str]
    warnings: list[str] = field(default_factory=list)


def export_wacz(
    settings: Settings, refs: list[str], output: Path, *, title: str | None = None
) -> ExportResult:
    """Package the snapshots' WARCs as a WACZ (replayable in pywb and ReplayWeb.page)."""
    from exhibits.export import export_snapshots_wacz
    from exhibits.wacz import WaczError

    if output.exists():
        raise EvidenceError(f"{output} exists: an export is never overwritten")
    evidence = open_evidence(settings)
    try:
        path, ids = export_snapshots_wacz(
            evidence.objects, evidence.index, refs, output, title=title
        )
    except WaczError as exc:
        raise EvidenceError(f"cannot export WACZ: {exc}") from None
    with open(path, "rb") as stream:
        digest = hashlib.file_digest(stream, "sha256").hexdigest()
    warnings = []
    for snapshot_id in ids:
        warning = record_access(
            evidence,
            action="exported",
            snapshot_id=snapshot_id,
            details={"format": "wacz", "file": str(path.absolute()), "sha256": digest},
        )
        if warning:
            warnings.append(warning)
    return ExportResult(path, digest, path.stat().st_size, ids, warnings[:1])
