"""The index rows of ads: one per ad, one per version of it, one per query that saw it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from evidence_store.index.models.base import Base, JSONType


class Ad(Base):
    """An ad of a library, with its current normalised fields (the newest version's)."""

    __tablename__ = "ads"
    __table_args__ = (
        UniqueConstraint("platform", "ad_id", name="uq_ads_platform_ad_id"),
        Index("ix_ads_advertiser", "platform", "advertiser_name"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    ad_id: Mapped[str] = mapped_column(String(200))
    advertiser_name: Mapped[str | None] = mapped_column(Text)
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    last_run_id: Mapped[str | None] = mapped_column(String(36))
    # A query that returned the ad before stopped returning it: since when, noticed by which run.
    unseen_since: Mapped[datetime | None] = mapped_column(index=True)
    unseen_run_id: Mapped[str | None] = mapped_column(String(36))
    versions: Mapped[int] = mapped_column(default=0)
    current: Mapped[dict[str, Any]] = mapped_column(default=dict)
    special_categories: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # The snapshot of the rendered creative (the library's own page of the ad), newest first.
    creative_snapshot_id: Mapped[str | None] = mapped_column(String(64))


class AdVersion(Base):
    """The ad's normalised fields as one snapshot showed them, when they changed."""

    __tablename__ = "ad_versions"
    __table_args__ = (UniqueConstraint("ad_pk", "number", name="uq_ad_versions_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ad_pk: Mapped[int] = mapped_column(ForeignKey("ads.id"), index=True)
    number: Mapped[int]
    digest: Mapped[str] = mapped_column(String(64))  # SHA-256 of the canonical fields
    fields: Mapped[dict[str, Any]] = mapped_column(default=dict)
    snapshot_id: Mapped[str] = mapped_column(String(64), index=True)
    warc_record_id: Mapped[str | None] = mapped_column(String(100))
    run_id: Mapped[str | None] = mapped_column(String(36))
    seen_at: Mapped[datetime]


class AdSighting(Base):
    """That a query (a source's settings) returned the ad, and when last: removals are noticed
    per query, so that a narrower query never marks another query's ads as gone."""

    __tablename__ = "ad_sightings"
    __table_args__ = (UniqueConstraint("ad_pk", "query_key", name="uq_ad_sightings_query"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ad_pk: Mapped[int] = mapped_column(ForeignKey("ads.id"), index=True)
    query_key: Mapped[str] = mapped_column(String(64), index=True)
    last_run_id: Mapped[str | None] = mapped_column(String(36))
    last_seen_at: Mapped[datetime]
