"""The index rows of posts: one per post, a version per change, counts per capture."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from evidence_store.index.models.base import Base


class Post(Base):
    """A post a source captured, with its current fields and status."""

    __tablename__ = "posts"
    __table_args__ = (UniqueConstraint("platform", "post_id", name="uq_posts_platform_post_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    post_id: Mapped[str] = mapped_column(String(100))
    url: Mapped[str | None] = mapped_column(Text)
    author_handle: Mapped[str | None] = mapped_column(String(200), index=True)
    # available, removed, geo_blocked, account_suspended, account_private, age_restricted
    status: Mapped[str] = mapped_column(String(32))
    status_since: Mapped[datetime]  # the first capture that found the current status
    first_captured_at: Mapped[datetime]
    last_captured_at: Mapped[datetime] = mapped_column(index=True)
    last_snapshot_id: Mapped[str] = mapped_column(String(64))
    versions: Mapped[int] = mapped_column(default=0)
    current: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Which watchlist entry found it (account, hashtag, search, url), for re-captures.
    watched_by: Mapped[str | None] = mapped_column(Text)


class PostVersion(Base):
    """The post's fields (counts aside) as one capture found them, when they changed."""

    __tablename__ = "post_versions"
    __table_args__ = (UniqueConstraint("post_pk", "number", name="uq_post_versions_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    post_pk: Mapped[int] = mapped_column(ForeignKey("posts.id"), index=True)
    number: Mapped[int]
    digest: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32))
    fields: Mapped[dict[str, Any]] = mapped_column(default=dict)
    snapshot_id: Mapped[str] = mapped_column(String(64), index=True)
    run_id: Mapped[str | None] = mapped_column(String(36))
    captured_at: Mapped[datetime]


class PostCount(Base):
    """The counts one capture read (a time series: one row per capture of the post)."""

    __tablename__ = "post_counts"

    id: Mapped[int] = mapped_column(primary_key=True)
    post_pk: Mapped[int] = mapped_column(ForeignKey("posts.id"), index=True)
    snapshot_id: Mapped[str] = mapped_column(String(64))
    captured_at: Mapped[datetime]
    views: Mapped[int | None] = mapped_column(BigInteger)
    likes: Mapped[int | None] = mapped_column(BigInteger)
    shares: Mapped[int | None] = mapped_column(BigInteger)
    comments: Mapped[int | None] = mapped_column(BigInteger)
    saves: Mapped[int | None] = mapped_column(BigInteger)
    reposts: Mapped[int | None] = mapped_column(BigInteger)
    quotes: Mapped[int | None] = mapped_column(BigInteger)
