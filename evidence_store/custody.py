"""Appending to the custody log: every entry names the hash of the one before it.

Callers append inside ``Index.writing(CUSTODY_LOCK, ...)`` so that two writers cannot both
extend the same head.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
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


@dataclass(frozen=True)
class Event:
    """One custody event to append."""

    action: str
    actor: str
    snapshot_id: str | None = None
    collection_id: int | None = None
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


def append(session: Session, events: list[Event]) -> list[str]:
    """Append events in order (in the caller's transaction); returns their entry hashes."""
    previous = session.scalars(
        select(CustodyEvent.entry_hash).order_by(CustodyEvent.id.desc()).limit(1)
    ).first()
    rows, hashes = [], []
    for event in events:
        occurred_at = utc_now()
        digest = entry_hash(
            previous_hash=previous,
            occurred_at=occurred_at,
            actor=event.actor,
            action=event.action,
            snapshot_id=event.snapshot_id,
            collection_id=event.collection_id,
            reason=event.reason,
            details=event.details,
        )
        rows.append(
            {
                "occurred_at": occurred_at,
                "actor": event.actor,
                "action": event.action,
                "snapshot_id": event.snapshot_id,
                "collection_id": event.collection_id,
                "reason": event.reason,
                "details": event.details,
                "previous_hash": previous,
                "entry_hash": digest,
            }
        )
        hashes.append(digest)
        previous = digest
    if rows:
        session.execute(insert(CustodyEvent), rows)
    return hashes


def record(session: Session, **event: Any) -> str:
    """Append one event (keyword arguments of ``Event``); returns its entry hash."""
    return append(session, [Event(**event)])[0]
