"""Appending to the custody log: every entry names the hash of the one before it.

Callers append inside ``Index.writing(CUSTODY_LOCK, ...)`` so that two writers cannot both
extend the same head.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from evidence_store.index.models import CustodyEvent
from evidence_store.manifest import canonical_json
from schemas import format_rfc3339, utc_now

CUSTODY_LOCK = "custody"


def entry_hash(
    *,
    previous_hash: str | None,
    occurred_at: datetime,
    actor: str,
    action: str,
    snapshot_id: str | None,
    collection_id: int | None,
    reason: str | None,
    details: dict[str, Any],
) -> str:
    """SHA-256 over the canonical JSON of an entry's content and its predecessor's hash."""
    body = {
        "previous_hash": previous_hash,
        "occurred_at": format_rfc3339(occurred_at),
        "actor": actor,
        "action": action,
        "snapshot_id": snapshot_id,
        "collection_id": collection_id,
        "reason": reason,
        "details": details,
    }
    return hashlib.sha256(canonical_json(body)).hexdigest()


def record(
    session: Session,
    *,
    action: str,
    actor: str,
    snapshot_id: str | None = None,
    collection_id: int | None = None,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> CustodyEvent:
    """Append one event to the custody log (in the caller's transaction)."""
    details = details or {}
    previous = session.scalars(
        select(CustodyEvent.entry_hash).order_by(CustodyEvent.id.desc()).limit(1)
    ).first()
    occurred_at = utc_now()
    event = CustodyEvent(
        occurred_at=occurred_at,
        actor=actor,
        action=action,
        snapshot_id=snapshot_id,
        collection_id=collection_id,
        reason=reason,
        details=details,
        previous_hash=previous,
        entry_hash=entry_hash(
            previous_hash=previous,
            occurred_at=occurred_at,
            actor=actor,
            action=action,
            snapshot_id=snapshot_id,
            collection_id=collection_id,
            reason=reason,
            details=details,
        ),
    )
    session.add(event)
    session.flush()
    return event
