"""Snapshots and their artifacts: the index rows that point at stored, verified bytes."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import BigInteger, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from evidence_store.index.models.base import Base

if TYPE_CHECKING:
    from evidence_store.index.models.collection import Collection


class Snapshot(Base):
    __tablename__ = "snapshots"
    __table_args__ = (
        UniqueConstraint("collection_id", "sequence", name="uq_snapshots_chain_position"),
    )

    # The SHA-256 of the canonical manifest: the manifest object's own key in the store.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id"), index=True)
    sequence: Mapped[int]
    previous_id: Mapped[str | None] = mapped_column(String(64), ForeignKey("snapshots.id"))
    kind: Mapped[str] = mapped_column(String(32))
    source_id: Mapped[int | None] = mapped_column(ForeignKey("sources.id"), index=True)
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id"), index=True)
    source_url: Mapped[str | None] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)
    captured_at: Mapped[datetime] = mapped_column(index=True)
    archived_at: Mapped[datetime]
    manifest_size: Mapped[int] = mapped_column(BigInteger)
    signature_sha256: Mapped[str] = mapped_column(String(64))
    key_fingerprint: Mapped[str] = mapped_column(ForeignKey("signing_keys.fingerprint"))
    # Set when the retention policy deleted the artifacts; the manifest and signature stay, so
    # the chain still verifies and the record of what existed (and its deletion) remains.
    deleted_at: Mapped[datetime | None] = mapped_column(index=True)

    collection: Mapped[Collection] = relationship(back_populates="snapshots")
    artifacts: Mapped[list[Artifact]] = relationship(
        back_populates="snapshot", order_by="Artifact.position", cascade="save-update, merge"
    )


class Artifact(Base):
    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("snapshot_id", "position", name="uq_artifacts_position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    snapshot_id: Mapped[str] = mapped_column(ForeignKey("snapshots.id"), index=True)
    position: Mapped[int]
    role: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(255))
    media_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64), index=True)

    snapshot: Mapped[Snapshot] = relationship(back_populates="artifacts")
