"""Appending to the custody log: every entry names the hash of the one before it.

Callers append inside ``Index.writing(CUSTODY_LOCK, ...)`` so that two writers cannot both
extend the same head.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, insert, or_, select
from sqlalchemy.orm import Session

from evidence_store.index.models import CustodyEvent
from evidence_store.manifest import canonical_json
from schemas import format_rfc3339, utc_now

CUSTODY_LOCK = "custody"
# Events about a Merkle tree name it in their details (tree id), not in snapshot_id.
TREE_ACTIONS = ("merkle-tree", "timestamped", "timestamp-failed")


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


def _recomputed(entry: CustodyEvent) -> str:
    return entry_hash(
        previous_hash=entry.previous_hash,
        occurred_at=entry.occurred_at,
        actor=entry.actor,
        action=entry.action,
        snapshot_id=entry.snapshot_id,
        collection_id=entry.collection_id,
        reason=entry.reason,
        details=entry.details,
    )


@dataclass
class LogCheck:
    """What walking the custody log found."""

    entries: int = 0
    head: str | None = None
    problems: list[str] = field(default_factory=list)


def verify_log(session: Session, *, batch: int = 10_000) -> LogCheck:
    """Walk the whole log in order and check every link and every entry's hash.

    An edited entry no longer matches its hash; a deleted or moved entry breaks the link of the
    entry after it. Entries cut from the end leave a consistent but shorter chain: that is what
    the timestamps of the head (`evidence custody anchor`) expose.
    """
    check = LogCheck()
    previous: str | None = None
    last_id = 0
    while True:
        entries = list(
            session.scalars(
                select(CustodyEvent)
                .where(CustodyEvent.id > last_id)
                .order_by(CustodyEvent.id)
                .limit(batch)
            )
        )
        if not entries:
            break
        for entry in entries:
            check.entries += 1
            if entry.previous_hash != previous:
                check.problems.append(
                    f"custody entry {entry.id} ({entry.action}) names previous entry hash "
                    f"{entry.previous_hash}, but the entry before it has {previous}: an entry "
                    "was removed, inserted or moved"
                )
            actual = _recomputed(entry)
            if actual != entry.entry_hash:
                check.problems.append(
                    f"custody entry {entry.id} ({entry.action}) was altered: its content hashes "
                    f"to {actual}, the log records {entry.entry_hash}"
                )
            previous = entry.entry_hash
            last_id = entry.id
        session.expunge_all()  # a long log is walked in batches, not held in memory
    check.head = previous
    return check


def events_of(
    session: Session,
    snapshot_id: str,
    *,
    collection_id: int | None = None,
    tree_id: int | None = None,
) -> list[CustodyEvent]:
    """The custody entries about a snapshot, oldest first: those naming it, those about its
    whole collection (holds, retention), and those about the Merkle tree that covers it."""
    about = CustodyEvent.snapshot_id == snapshot_id
    if collection_id is not None:
        about = or_(
            about,
            and_(CustodyEvent.collection_id == collection_id, CustodyEvent.snapshot_id.is_(None)),
        )
    if tree_id is not None:
        # Filtered in the database (json_extract / jsonb ->>), not by loading every run's
        # tree entries: a log of nightly runs holds thousands of them.
        about = or_(
            about,
            and_(
                CustodyEvent.action.in_(TREE_ACTIONS),
                CustodyEvent.details["tree"].as_integer() == tree_id,
            ),
        )
    return list(session.scalars(select(CustodyEvent).where(about).order_by(CustodyEvent.id)))
