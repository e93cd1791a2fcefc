"""Finding bytes no snapshot refers to: left by a crash between storing and committing.

Orphans are listed and logged (custody log and Python logging), never deleted: they may be
the only copy of something an interrupted capture saw. Temporary files of interrupted writes
(local store only) are incomplete by construction; they are removed only when asked.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from evidence_store import custody
from evidence_store.index import Index
from evidence_store.index.models import (
    Artifact,
    MerkleTree,
    RevocationList,
    Snapshot,
    TimestampRecord,
)
from evidence_store.keys import key_object_digests
from evidence_store.objects import LocalStore, ObjectStore
from evidence_store.timestamps.anchors import anchor_object_digests

log = logging.getLogger(__name__)

TEMP_MIN_AGE_SECONDS = 3600  # younger temporary files may belong to a write in progress


@dataclass
class SweepReport:
    objects: int = 0
    referenced: int = 0
    orphans: list[str] = field(default_factory=list)
    temporary: list[str] = field(default_factory=list)
    removed_temporary: list[str] = field(default_factory=list)


def referenced_digests(index: Index) -> set[str]:
    """Every digest some index row points at: manifests, signatures, artifacts, tokens,
    archived trust anchors."""
    with index.session() as session:
        refs = set(session.scalars(select(Artifact.sha256)))
        refs.update(session.scalars(select(TimestampRecord.reply_sha256)))
        refs.update(
            session.scalars(
                select(TimestampRecord.chain_sha256).where(
                    TimestampRecord.chain_sha256.is_not(None)
                )
            )
        )
        refs.update(session.scalars(select(MerkleTree.leaves_sha256)))
        refs.update(key_object_digests(session))
        refs.update(session.scalars(select(RevocationList.crl_sha256)))
        refs.update(anchor_object_digests(session))
        for snap_id, sig in session.execute(select(Snapshot.id, Snapshot.signature_sha256)):
            refs.add(snap_id)
            refs.add(sig)
    return refs


def sweep(
    objects: ObjectStore, index: Index, *, actor: str, remove_temporary: bool = False
) -> SweepReport:
    """List orphaned objects and log them; optionally clear old temporary files."""
    refs = referenced_digests(index)
    report = SweepReport()
    for digest in objects.iter_digests():
        report.objects += 1
        if digest in refs:
            report.referenced += 1
        else:
            report.orphans.append(digest)
            log.warning("orphaned object sha256:%s in %s (kept)", digest, objects.url)
    if isinstance(objects, LocalStore):
        now = time.time()
        for tmp in objects.iter_temporary():
            report.temporary.append(str(tmp))
            if remove_temporary and now - _mtime(tmp) > TEMP_MIN_AGE_SECONDS:
                tmp.unlink(missing_ok=True)
                report.removed_temporary.append(str(tmp))
                log.warning("removed temporary file %s of an interrupted write", tmp)
    with index.writing(custody.CUSTODY_LOCK) as session:
        custody.record(
            session,
            action="swept",
            actor=actor,
            details={
                "store": objects.url,
                "objects": report.objects,
                "orphans": report.orphans,
                "temporary": len(report.temporary),
                "removed_temporary": report.removed_temporary,
            },
        )
    return report


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return time.time()
