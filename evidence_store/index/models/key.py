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
