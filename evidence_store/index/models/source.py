"""Sources (what is crawled) and runs (one execution of a capture job)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from evidence_store.index.models.base import Base


class Source(Base):
    __tablename__ = "sources"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(50))
    url: Mapped[str | None] = mapped_column(Text)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime]


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    source_id: Mapped[int | None] = mapped_column(ForeignKey("sources.id"), index=True)
    collection_id: Mapped[int | None] = mapped_column(ForeignKey("collections.id"))
    trigger: Mapped[str] = mapped_column(String(20))  # manual, schedule, retry
    # running, then succeeded, partial, failed, or interrupted (its process died)
    status: Mapped[str] = mapped_column(String(20), index=True)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    stats: Mapped[dict[str, Any]] = mapped_column(default=dict)
    note: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[str | None] = mapped_column(String(50))  # capture, ingest, crawl
    # The process that ran it: a run left `running` whose process is gone was interrupted.
    host: Mapped[str | None] = mapped_column(String(255))
    pid: Mapped[int | None]
    process_started: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
