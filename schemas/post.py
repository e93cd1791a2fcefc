"""Platform posts (TikTok videos, X posts), normalised: what the platform published with the
post, at one capture.

Counts (views, likes, …) change at every look and are kept as a time series; every other
field makes a new version when it changes. ``status`` records what a capture found: the post,
or proof that it is gone (removed, geo-blocked, the account suspended or private).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

PostStatus = Literal[
    "available",
    "removed",  # deleted by the author or the platform ("video currently unavailable")
    "geo_blocked",  # withheld in the country of the capture
    "account_suspended",
    "account_private",
    "age_restricted",  # behind a login or an age gate
    "unknown",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PostAuthor(_Model):
    id: str | None = None
    handle: str | None = None  # without the @
    name: str | None = None
    verified: bool | None = None
    private: bool | None = None
    followers: int | None = None


class PostMedia(_Model):
    """One media item of a post; ``artifact`` names the snapshot artifact holding its bytes."""

    kind: Literal["video", "image", "cover", "audio", "gif"]
    url: str | None = None  # as published (tokens redacted)
    artifact: str | None = None
    sha256: str | None = None
    size: int | None = None
    duration: float | None = None  # seconds (ffprobe)
    width: int | None = None
    height: int | None = None
    codec: str | None = None
    bitrate: int | None = None


class PostCounts(_Model):
    views: int | None = None
    likes: int | None = None
    shares: int | None = None
    comments: int | None = None
    saves: int | None = None  # TikTok collects, X bookmarks
    quotes: int | None = None  # X quotes
    reposts: int | None = None  # X reposts


class PostLabels(_Model):
    """What the platform showed about the post's nature."""

    ai_generated: bool | None = None  # "AI-generated", "Made with AI"
    paid_partnership: bool | None = None  # "Paid partnership", branded content
    ad: bool | None = None  # a promoted post / ad disclosure
    content_disclosure: str | None = None  # the disclosure text as shown
    state_affiliated: str | None = None  # "China state-affiliated media"
    sensitive_interstitial: bool | None = None  # shown behind a sensitive-content warning
    community_note: str | None = None  # the note's text when shown
    other: list[str] = Field(default_factory=list)


class PostRecord(_Model):
    """One post as one capture found it."""

    platform: Literal["tiktok", "x"]
    post_id: str = Field(min_length=1, max_length=100)
    url: str | None = None
    status: PostStatus = "available"
    status_detail: str | None = None  # the platform's own words ("Video currently unavailable")
    author: PostAuthor = Field(default_factory=PostAuthor)
    created_at: datetime | None = None
    text: str | None = None
    hashtags: list[str] = Field(default_factory=list)
    mentions: list[str] = Field(default_factory=list)
    language: str | None = None
    location: str | None = None
    media: list[PostMedia] = Field(default_factory=list)
    counts: PostCounts = Field(default_factory=PostCounts)
    labels: PostLabels = Field(default_factory=PostLabels)
    music: dict[str, Any] | None = None  # TikTok: title, author, original
    reply_to: str | None = None  # X: the post it answers
    quoted: str | None = None  # X: the post it quotes
    extra: dict[str, Any] = Field(default_factory=dict)
