"""Reading snapshots back from the index: by id or unique prefix, and in listings."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from evidence_store.errors import SnapshotNotFound
from evidence_store.index.models import Collection, Snapshot
from schemas import ArtifactEntry, SnapshotInfo

MIN_PREFIX = 6
_HEX = re.compile(r"^[0-9a-f]+$")


def resolve_snapshot(session: Session, ref: str) -> Snapshot:
    """The snapshot whose id is ``ref`` or starts with it (at least 6 hex digits, unique)."""
    ref = ref.strip().lower().removeprefix("sha256:")
    if not _HEX.match(ref) or len(ref) > 64:
        raise SnapshotNotFound(f"{ref!r} is not a snapshot id (hex digits of a manifest SHA-256)")
    if len(ref) < MIN_PREFIX:
        raise SnapshotNotFound(
            f"snapshot id prefix {ref!r} is too short: give at least {MIN_PREFIX} digits"
        )
    query = select(Snapshot).options(
        selectinload(Snapshot.artifacts), selectinload(Snapshot.collection)
    )
    matches = list(
        session.scalars(query.where(Snapshot.id.startswith(ref, autoescape=True)).limit(2))
    )
    if not matches:
        raise SnapshotNotFound(f"no snapshot {ref}")
    if len(matches) > 1:
        raise SnapshotNotFound(f"snapshot id prefix {ref} is ambiguous: give more digits")
    return matches[0]


def snapshot_info(snap: Snapshot) -> SnapshotInfo:
    """The schema form of a snapshot row and its artifacts."""
    return SnapshotInfo(
        id=snap.id,
        collection=snap.collection.name,
        sequence=snap.sequence,
        previous=snap.previous_id,
        kind=snap.kind,
        captured_at=snap.captured_at,
        archived_at=snap.archived_at,
        source_url=snap.source_url,
        note=snap.note,
        key_fingerprint=snap.key_fingerprint,
        artifacts=[
            ArtifactEntry(
                role=a.role, name=a.name, media_type=a.media_type, size=a.size, sha256=a.sha256
            )
            for a in snap.artifacts
        ],
        deleted_at=snap.deleted_at,
    )


def list_snapshots(
    session: Session, *, collection: str | None = None, limit: int | None = 50
) -> list[SnapshotInfo]:
    """Newest first, optionally of one collection."""
    query = (
        select(Snapshot)
        .options(selectinload(Snapshot.artifacts), selectinload(Snapshot.collection))
        .order_by(Snapshot.archived_at.desc(), Snapshot.sequence.desc())
    )
    if collection is not None:
        query = query.join(Collection).where(Collection.name == collection)
    if limit is not None:
        query = query.limit(limit)
    return [snapshot_info(s) for s in session.scalars(query)]
