"""The index rows of the statements of reasons: one per archived dump and one per part.

The statements themselves live in Parquet files (objects of the store, archived as derived
snapshots); these rows say which dump each file came from, how many rows it holds and whether
each part could be read.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from evidence_store.index.models.base import Base


class SorDump(Base):
    """One archived daily dump (the snapshot of the zip as the Commission served it)."""

    __tablename__ = "sor_dumps"
    __table_args__ = (Index("ix_sor_dumps_day_platform", "day", "platform", "variant"),)

    # The snapshot of the dump zip. Not a foreign key: retention may remove the snapshot,
    # and this row then says what was there (status "deleted").
    snapshot_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    run_id: Mapped[str | None] = mapped_column(String(36))
    day: Mapped[date]
    platform: Mapped[str] = mapped_column(String(100))  # "global" or the platform's slug
    variant: Mapped[str] = mapped_column(String(8))  # full, light
    url: Mapped[str] = mapped_column(Text)
    filename: Mapped[str] = mapped_column(String(255))
    sha1: Mapped[str] = mapped_column(String(40))  # as published beside the dump, and matched
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    # ingesting, then ingested, partial (a part is broken), failed (none could be read), or
    # duplicate (the same bytes as the dump `same_as`, whose Parquet files serve this one too)
    status: Mapped[str] = mapped_column(String(16))
    same_as: Mapped[str | None] = mapped_column(String(64))
    schema_version: Mapped[int | None]  # 1: 37 columns; 2: 38, from 1 July 2025
    rows: Mapped[int] = mapped_column(BigInteger, default=0)
    parts: Mapped[int] = mapped_column(default=0)
    broken_parts: Mapped[int] = mapped_column(default=0)
    ingested_at: Mapped[datetime | None]


class SorPart(Base):
    """One part of a dump (``sor-…-NNNNN.csv.zip``) and the Parquet file made from it."""

    __tablename__ = "sor_parts"
    __table_args__ = (UniqueConstraint("dump_id", "position", name="uq_sor_parts_position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dump_id: Mapped[str] = mapped_column(ForeignKey("sor_dumps.snapshot_id"), index=True)
    position: Mapped[int]
    name: Mapped[str] = mapped_column(String(255))
    crc32: Mapped[int | None] = mapped_column(BigInteger)  # the outer zip's record of the part
    size: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))  # ingested, broken
    error: Mapped[str | None] = mapped_column(Text)
    rows: Mapped[int] = mapped_column(BigInteger, default=0)
    csv_files: Mapped[int] = mapped_column(default=0)
    schema_version: Mapped[int | None]
    # The derived snapshot holding the part's Parquet file, and that file's object.
    parquet_snapshot: Mapped[str | None] = mapped_column(String(64), index=True)
    parquet_sha256: Mapped[str | None] = mapped_column(String(64))
    parquet_size: Mapped[int | None] = mapped_column(BigInteger)
