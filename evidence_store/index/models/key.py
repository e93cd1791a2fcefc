"""Signing keys the index trusts: a manifest signed by a key not listed here fails verification."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from evidence_store.index.models.base import Base


class SigningKey(Base):
    __tablename__ = "signing_keys"

    fingerprint: Mapped[str] = mapped_column(String(71), primary_key=True)  # sha256:<hex>
    algorithm: Mapped[str] = mapped_column(String(20))
    public_key: Mapped[str] = mapped_column(Text)  # raw key, base64
    created_at: Mapped[datetime]
    retired_at: Mapped[datetime | None]
    # On rotation the previous key signs the new key's record: a signature object and the
    # previous key's fingerprint, so the key history is itself a verifiable chain.
    endorsed_by: Mapped[str | None] = mapped_column(String(71))
    endorsement_sha256: Mapped[str | None] = mapped_column(String(64))
