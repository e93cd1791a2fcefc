"""Sources (what is crawled), runs (one execution of a job) and the scheduler's job store."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, LargeBinary, String, Text, Unicode
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
    # `evidence schedule pause`: scheduled runs are skipped (and say so) until resumed.
    paused_at: Mapped[datetime | None]
    paused_reason: Mapped[str | None] = mapped_column(Text)


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
    # The snapshot holding the run's report and log (scheduled runs).
    report_snapshot_id: Mapped[str | None] = mapped_column(String(64))


class ScheduledJob(Base):
    """APScheduler's job store (``SQLAlchemyJobStore``): a pickled job per scheduled source.

    Declared here so that migrations make the table; only APScheduler reads and writes it.
    """

    __tablename__ = "apscheduler_jobs"

    id: Mapped[str] = mapped_column(Unicode(191), primary_key=True)
    next_run_time: Mapped[float | None] = mapped_column(Float(25), index=True)
    job_state: Mapped[bytes] = mapped_column(LargeBinary)
