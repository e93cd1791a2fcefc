"""RFC 3161 timestamp tokens over snapshot ids (the SHA-256 of each manifest)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from evidence_store.index.models.base import Base


class TimestampRecord(Base):
    """One token a TSA granted; a snapshot without any is untimestamped (and retried)."""

    __tablename__ = "timestamps"

    id: Mapped[int] = mapped_column(primary_key=True)
    snapshot_id: Mapped[str] = mapped_column(ForeignKey("snapshots.id"), index=True)
    tsa_url: Mapped[str] = mapped_column(Text)
    gen_time: Mapped[datetime]
    serial_number: Mapped[str] = mapped_column(String(64))  # up to 160 bits: kept as text
    reply_sha256: Mapped[str] = mapped_column(String(64))  # the TimeStampResp object (.tsr)
    reply_size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime]
