"""The custody log: an append-only, hash-chained record of who did what to which evidence."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from evidence_store.index.models.base import Base


class CustodyEvent(Base):
    __tablename__ = "custody_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(40), index=True)
    snapshot_id: Mapped[str | None] = mapped_column(ForeignKey("snapshots.id"), index=True)
    collection_id: Mapped[int | None] = mapped_column(ForeignKey("collections.id"))
    reason: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # entry_hash = SHA-256 over the canonical JSON of this entry including previous_hash.
    previous_hash: Mapped[str | None] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64), unique=True)
