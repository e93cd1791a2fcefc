"""Collections: named groups of snapshots, each with its own append-only hash chain."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from evidence_store.index.models.base import Base

if TYPE_CHECKING:
    from evidence_store.index.models.snapshot import Snapshot


class Collection(Base):
    __tablename__ = "collections"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    # The chain's head: the last manifest's digest and the number of links. Updated only in the
    # transaction that adds the snapshot, under the collection's lock.
    chain_length: Mapped[int] = mapped_column(default=0)
    chain_head: Mapped[str | None] = mapped_column(String(64))
    # Retention policy: snapshots older than this many days may be deleted (never under a legal
    # hold); None keeps them for ever.
    retention_days: Mapped[int | None]

    snapshots: Mapped[list[Snapshot]] = relationship(back_populates="collection", viewonly=True)
