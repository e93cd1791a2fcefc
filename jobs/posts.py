"""Platform posts: list, one post with its history (versions, counts, status), for a quick
look. Capturing is `evidence crawl tiktok|x` (``jobs.crawl``); the sources' records step
(``records.posts.parse``) indexes the posts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from evidence_store.errors import EvidenceError
from jobs.access import record_access
from jobs.config import Settings
from jobs.context import open_evidence
from records.posts.models import Post, PostCount, PostVersion


class PostNotFound(EvidenceError):
    """No such post, or an ambiguous reference."""


def _summary(row: Post) -> dict[str, Any]:
    return {
        "platform": row.platform,
        "post_id": row.post_id,
        "url": row.url,
        "author": row.author_handle,
        "status": row.status,
        "status_since": row.status_since.isoformat(),
        "first_captured_at": row.first_captured_at.isoformat(),
        "last_captured_at": row.last_captured_at.isoformat(),
        "versions": row.versions,
        "watched_by": row.watched_by,
    }


def posts_list(
    settings: Settings,
    *,
    platform: str | None = None,
    author: str | None = None,
    status: str | None = None,
    limit: int = 100,
) -> tuple[list[dict[str, Any]], int]:
    """Posts, most recently captured first, and how many match in all."""
    evidence = open_evidence(settings)
    query = select(Post)
    if platform:
        query = query.where(Post.platform == platform.lower())
    if author:
        query = query.where(Post.author_handle == author.lstrip("@"))
    if status:
        query = query.where(Post.status == status)
    with evidence.index.session() as session:
        rows = session.scalars(query.order_by(Post.last_captured_at.desc(), Post.id.desc())).all()
    return [_summary(r) for r in rows[:limit]], len(rows)


def _find(session: Any, ref: str) -> Post:
    platform, sep, post_id = ref.partition(":")
    query = select(Post).where(Post.post_id == (post_id if sep else platform).strip())
    if sep:
        query = query.where(Post.platform == platform.strip().lower())
    rows = session.scalars(query).all()
    if not rows:
        raise PostNotFound(f"no post {ref!r} in the index (list them with: evidence posts list)")
    if len(rows) > 1:
        raise PostNotFound(f"post {ref!r} is on several platforms: say which (tiktok:…, x:…)")
    return rows[0]


@dataclass
class PostDetail:
    summary: dict[str, Any]
    fields: dict[str, Any]
    versions: list[dict[str, Any]]
    counts: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return self.summary | {
            "fields": self.fields,
            "versions": self.versions,
            "counts": self.counts,
        }


def posts_show(settings: Settings, ref: str) -> PostDetail:
    """One post (``platform:id`` or the id): fields, every version with the snapshot that
    showed it and what changed, the counts over time. Logged as a view of its last capture."""
    evidence = open_evidence(settings)
    with evidence.index.session() as session:
        row = _find(session, ref)
        versions = session.scalars(
            select(PostVersion).where(PostVersion.post_pk == row.id).order_by(PostVersion.number)
        ).all()
        counts = session.scalars(
            select(PostCount).where(PostCount.post_pk == row.id).order_by(PostCount.captured_at)
        ).all()
        history = []
        previous: dict[str, Any] = {}
        for v in versions:
            changed = sorted(
                k for k, value in v.fields.items() if previous and previous.get(k) != value
            )
            history.append(
                {
                    "version": v.number,
                    "status": v.status,
                    "captured_at": v.captured_at.isoformat(),
                    "snapshot": v.snapshot_id,
                    "run": v.run_id,
                    "changed": changed,
                }
            )
            previous = v.fields
        detail = PostDetail(
            summary=_summary(row),
            fields=row.current,
            versions=history,
            counts=[
                {
                    "captured_at": c.captured_at.isoformat(),
                    "snapshot": c.snapshot_id,
                    **{
                        k: getattr(c, k)
                        for k in (
                            "views",
                            "likes",
                            "shares",
                            "comments",
                            "saves",
                            "reposts",
                            "quotes",
                        )
                    },
                }
                for c in counts
            ],
        )
        last = row.last_snapshot_id
    warning = record_access(
        evidence,
        action="viewed",
        snapshot_id=last,
        details={"post": f"{row.platform}:{row.post_id}"},
    )
    if warning:
        detail.warnings.append(warning)
    return detail
