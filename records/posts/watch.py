"""The watchlist's memory: which captured posts are due for another capture.

A post's life is a series of snapshots: a run of a post source captures new posts and also
every watched post whose last capture is older than the source's ``recapture_hours``. The
post sources name ``prepare_tiktok`` / ``prepare_x`` as their ``prepare`` step: before the run,
it adds the due posts' URLs to the run's settings (``recapture``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from records.posts.models import Post
from schemas import CollectContext
from schemas.time import utc_now

# A post gone this long is not looked at again by every run (a removal stays proven by the
# captures that found it); `evidence crawl SOURCE -a url=…` captures it whenever asked.
STOP_AFTER_GONE = timedelta(days=30)


def due_posts(session: Any, platform: str, *, older_than: timedelta, limit: int) -> list[str]:
    """URLs of posts last captured before ``older_than`` ago, the longest waiting first."""
    now = utc_now()
    rows = session.execute(
        select(Post.url, Post.status, Post.status_since)
        .where(
            Post.platform == platform,
            Post.url.is_not(None),
            Post.last_captured_at < now - older_than,
        )
        .order_by(Post.last_captured_at)
    ).all()
    urls = [
        url for url, status, since in rows if status == "available" or now - since < STOP_AFTER_GONE
    ]
    return urls[:limit]


def known_posts(session: Any, platform: str) -> list[str]:
    """Ids of every post of the platform the archive has captured."""
    return list(session.scalars(select(Post.post_id).where(Post.platform == platform)))


def _prepare(platform: str, evidence: Any, settings: Any, context: CollectContext) -> Any:
    hours = getattr(settings, "recapture_hours", None)
    update: dict[str, Any] = {}
    with evidence.index.session() as session:
        if "known" in type(settings).model_fields:
            # Posts a listing shows that are in here already are not new: the re-capture
            # interval decides when they are captured again, not every listing that shows them.
            update["known"] = known_posts(session, platform)
        if hours is not None and "recapture" in type(settings).model_fields:
            due = due_posts(
                session,
                platform,
                older_than=timedelta(hours=hours),
                limit=getattr(settings, "max_recaptures", 500),
            )
            asked = set(getattr(settings, "urls", []) or [])
            update["recapture"] = [u for u in due if u not in asked]
    return settings.model_copy(update=update)


def prepare_tiktok(evidence: Any, settings: Any, context: CollectContext) -> Any:
    """The `tiktok` source's prepare step: its due re-captures."""
    return _prepare("tiktok", evidence, settings, context)


def prepare_x(evidence: Any, settings: Any, context: CollectContext) -> Any:
    """The `x` source's prepare step: its due re-captures."""
    return _prepare("x", evidence, settings, context)
