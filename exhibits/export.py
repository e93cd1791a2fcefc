"""Exporting snapshots for people outside the archive: a WACZ of their WARCs."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from evidence_store.errors import EvidenceError
from evidence_store.index import Index
from evidence_store.objects import ObjectStore
from evidence_store.queries import resolve_snapshot, snapshot_info
from exhibits.wacz import export_wacz, output_problem
from schemas import format_rfc3339


def export_snapshots_wacz(
    objects: ObjectStore, index: Index, refs: list[str], output: Path, *, title: str | None = None
) -> tuple[Path, list[str]]:
    """Write the WARCs of the given snapshots into one WACZ; returns it and the snapshot ids.

    A missing output folder is an ``EvidenceError`` naming it, raised before anything is read.
    """
    if (problem := output_problem(output)) is not None:
        raise EvidenceError(problem)
    with index.session() as session:
        infos = [snapshot_info(resolve_snapshot(session, ref)) for ref in refs]
    work = Path(tempfile.mkdtemp(prefix="evidence-wacz-"))
    try:
        warcs: list[Path] = []
        pages = []
        for info in infos:
            if info.deleted_at is not None:
                raise EvidenceError(
                    f"snapshot {info.id} cannot be exported: its artifacts were deleted under "
                    f"the retention policy on {format_rfc3339(info.deleted_at)} (its manifest, "
                    "signature and timestamps remain: `evidence snapshots show`)"
                )
            found = [a for a in info.artifacts if a.role == "warc"]
            if not found:
                raise EvidenceError(f"snapshot {info.id} has no WARC to export (kind {info.kind})")
            for n, artifact in enumerate(found):
                path = work / f"{info.id[:16]}-{n}.warc.gz"
                with objects.open(artifact.sha256) as source, open(path, "wb") as target:
                    shutil.copyfileobj(source, target, 1 << 20)
                warcs.append(path)
            if info.source_url:
                pages.append(
                    {
                        "url": info.source_url,
                        "title": f"snapshot {info.id}",
                        "ts": info.captured_at,
                        "id": info.id,
                    }
                )
        export_wacz(
            warcs,
            pages,
            output,
            title=title or f"dsa-evidence export of {len(infos)} snapshot(s)",
            description="Snapshots: " + ", ".join(i.id for i in infos),
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return output, [i.id for i in infos]
