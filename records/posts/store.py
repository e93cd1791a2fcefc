"""Posts into the index: counts per capture, a new version when anything else changes, and
the status (available, removed, …) with the capture that first found it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import rfc8785
from sqlalchemy import select
from sqlalchemy.orm import Session

from records.posts.models import Post, PostCount, PostVersion
from schemas.post import PostRecord

# Fields that describe the post, not one look at it: a change makes a new version.
VOLATILE = frozenset({"counts"})


@dataclass(frozen=True)
class Provenance:
    snapshot_id: str
    run_id: str | None
    captured_at: datetime


@dataclass
class PostChange:
    """What one capture changed: a new post, a new version, a new status."""

    post_id: str
    new_post: bool = False
    new_version: bool = False
    status_from: str | None = None
    status_to: str | None = None


def _stable_fields(record: PostRecord, previous: dict[str, Any] | None) -> dict[str, Any]:
    fields = record.model_dump(mode="json", exclude=set(VOLATILE))
    if record.status != "available" and previous:
        # A capture of a removed post shows nothing of it: what it was stays in the fields,
        # and the version says it is gone.
        kept = {k: v for k, v in previous.items() if k not in ("status", "status_detail")}
        fields = kept | {"status": fields["status"], "status_detail": fields["status_detail"]}
    return fields


def record_post(
    session: Session,
    record: PostRecord,
    provenance: Provenance,
    *,
    watched_by: str | None = None,
) -> PostChange:
    """Index one capture of a post."""
    row = session.scalar(
        select(Post).where(Post.platform == record.platform, Post.post_id == record.post_id)
    )
    change = PostChange(record.post_id)
    when = provenance.captured_at
    if row is None:
        row = Post(
            platform=record.platform,
            post_id=record.post_id,
            url=record.url,
            author_handle=record.author.handle,
            status=record.status,
            status_since=when,
            first_captured_at=when,
            last_captured_at=when,
            last_snapshot_id=provenance.snapshot_id,
            versions=0,
            current={},
            watched_by=watched_by,
        )
        session.add(row)
        session.flush()
        change.new_post = True
    elif when < row.last_captured_at:
        # An older capture indexed late (a re-parse): its counts count, the current state not.
        _count(session, row, record, provenance)
        return change
    fields = _stable_fields(record, row.current or None)
    digest = hashlib.sha256(rfc8785.dumps(fields)).hexdigest()
    last = session.scalar(
        select(PostVersion.digest).where(
            PostVersion.post_pk == row.id, PostVersion.number == row.versions
        )
    )
    if digest != last:
        row.versions += 1
        session.add(
            PostVersion(
                post_pk=row.id,
                number=row.versions,
                digest=digest,
                status=record.status,
                fields=fields,
                snapshot_id=provenance.snapshot_id,
                run_id=provenance.run_id,
                captured_at=when,
            )
        )
        change.new_version = row.versions > 1
        row.current = fields
    if record.status != row.status:
        change.status_from, change.status_to = row.status, record.status
        row.status, row.status_since = record.status, when
    row.last_captured_at = when
    row.last_snapshot_id = provenance.snapshot_id
    row.url = record.url or row.url
    row.author_handle = record.author.handle or row.author_handle
    row.watched_by = row.watched_by or watched_by
    if record.status == "available":
        _count(session, row, record, provenance)
    return change


def _count(session: Session, row: Post, record: PostRecord, provenance: Provenance) -> None:
    counts = record.counts
    if all(v is None for v in counts.model_dump().values()):
        return
    session.add(
        PostCount(
            post_pk=row.id,
            snapshot_id=provenance.snapshot_id,
            captured_at=provenance.captured_at,
            **counts.model_dump(),
        )
    )
