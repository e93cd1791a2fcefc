"""Appending to the custody log: every entry names the hash of the one before it.

Callers append inside ``Index.writing(CUSTODY_LOCK, ...)`` so that two writers cannot both
extend the same head.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, func, insert, or_, select
from sqlalchemy.orm import Session

from evidence_store.index.models import Collection, CustodyEvent, Snapshot
from evidence_store.manifest import canonical_json
from evidence_store.support import CheckResult
from schemas import format_rfc3339, utc_now

CUSTODY_LOCK = "custody"
ARCHIVED = "archived"
# Findings of one kind listed one by one before the rest is counted: a wholesale removal
# would otherwise bury the report under thousands of lines saying the same.
MAX_LISTED = 20
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


def verify_log(session: Session, *, batch: int = 10_000, index_check: bool = True) -> LogCheck:
    """Walk the whole log in order and check every link and every entry's hash; with
    ``index_check``, also that the index holds what the log says was archived
    (:func:`check_index`).

    An edited entry no longer matches its hash; a deleted or moved entry breaks the link of the
    entry after it. Entries cut from the end leave a consistent but shorter chain: that is what
    the timestamps of the head (`evidence custody anchor`) expose.
    """
    check = LogCheck()
    if index_check:
        check.problems += check_index(session)
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


def _listed(problems: list[str], what: str) -> list[str]:
    if len(problems) <= MAX_LISTED:
        return problems
    return [*problems[:MAX_LISTED], f"... and {len(problems) - MAX_LISTED} more {what}"]


def check_index(session: Session) -> list[str]:
    """Cross-check the index against the ``archived`` entries of the custody log.

    Every archived entry's snapshot must be in the index and every snapshot must have its
    entry; each collection must be in the index with as many links as the log archived
    snapshots into it, and with the last of them as its head. Removing the last snapshots of a
    chain (moving its head back), a whole collection, or the whole log leaves both the chains
    and the log consistent on their own; only the two together show it. Old logs need nothing
    new: archived entries have always named their snapshot and collection, and chain order is
    log order, since both are written in the same transaction under the collection's lock.
    """
    problems: list[str] = []
    archived = and_(CustodyEvent.action == ARCHIVED, CustodyEvent.snapshot_id.is_not(None))
    entries = session.scalar(select(func.count()).select_from(CustodyEvent)) or 0
    snapshots = session.scalar(select(func.count()).select_from(Snapshot)) or 0
    if entries == 0:
        if snapshots:
            problems.append(
                f"the custody log is empty, but the index holds {snapshots} snapshot(s): the "
                "log was removed"
            )
        return problems
    gone = [
        f"custody entry {entry_id} records snapshot {sid} as archived, but it is not in the "
        "index: it was removed"
        for entry_id, sid in session.execute(
            select(CustodyEvent.id, CustodyEvent.snapshot_id)
            .where(archived)
            .where(~exists().where(Snapshot.id == CustodyEvent.snapshot_id))
            .order_by(CustodyEvent.id)
        )
    ]
    problems += _listed(gone, "archived snapshots missing from the index")
    unlogged = [
        f"snapshot {sid} has no archived entry in the custody log: it entered the index "
        "outside the archive, or its entry was removed"
        for sid in session.scalars(
            select(Snapshot.id)
            .where(
                ~exists().where(
                    CustodyEvent.action == ARCHIVED, CustodyEvent.snapshot_id == Snapshot.id
                )
            )
            .order_by(Snapshot.archived_at, Snapshot.id)
        )
    ]
    problems += _listed(unlogged, "snapshots without an archived entry")
    logged = session.execute(
        select(CustodyEvent.collection_id, func.count(), func.max(CustodyEvent.id))
        .where(archived, CustodyEvent.collection_id.is_not(None))
        .group_by(CustodyEvent.collection_id)
    )
    collections = {c.id: c for c in session.scalars(select(Collection))}
    for collection_id, count, last_entry in sorted(logged, key=lambda row: row[0] or 0):
        head = session.scalar(select(CustodyEvent.snapshot_id).where(CustodyEvent.id == last_entry))
        coll = collections.get(collection_id)
        if coll is None:
            problems.append(
                f"collection {collection_id}, into which the custody log archived {count} "
                f"snapshot(s) (the last in entry {last_entry}), is not in the index: it was "
                "removed"
            )
        elif coll.chain_length != count or coll.chain_head != head:
            problems.append(
                f"collection {coll.name!r} records {coll.chain_length} link(s) with head "
                f"{coll.chain_head}, but the custody log archived {count} snapshot(s) into it, "
                f"the last {head} (entry {last_entry}): snapshots were removed or added "
                "outside the archive"
            )
    return problems


@dataclass
class CustodyCheck(CheckResult):
    """What ``evidence custody verify`` found: the log, its anchored heads, what was left
    unchecked (``verify.Unchecked`` items) and the trust anchors the head tokens used."""

    entries: int = 0
    head: str | None = None
    anchors_verified: int = 0
    problems: list[str] = field(default_factory=list)
    unchecked: list[Any] = field(default_factory=list)
    anchors: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every field, and ok, complete and verdict."""
        return {
            "entries": self.entries,
            "head": self.head,
            "anchors_verified": self.anchors_verified,
            "problems": list(self.problems),
            "unchecked": [vars(u) for u in self.unchecked],
            "anchors": self.anchors,
            "ok": self.ok,
            "complete": self.complete,
            "verdict": self.verdict,
        }


def verify_custody(
    objects: Any,
    session: Session,
    *,
    timestamp_anchors: Sequence[bytes] | None = None,
    timestamp_crls: Sequence[bytes] = (),
    require: frozenset[str] = frozenset(),
) -> CustodyCheck:
    """Check the whole log (:func:`verify_log`, with the index cross-check) and the tokens of
    its anchored heads, against ``timestamp_anchors`` when given, else the anchors archived
    with each token. With "timestamps" in ``require``, a head token that could not be
    checked is a problem, not an unchecked item; with "revocation", so is an unknown
    revocation status.
    """
    from evidence_store.timestamps.checks import custody_anchor_check
    from evidence_store.verify import Unchecked, check_requirements

    check_requirements(require)
    log = verify_log(session)
    anchors = custody_anchor_check(objects, session, timestamp_anchors, timestamp_crls)
    result = CustodyCheck(
        entries=log.entries,
        head=log.head,
        anchors_verified=anchors.verified,
        problems=log.problems + anchors.problems,
        anchors=anchors.anchors,
    )
    for what, check, reason, _ in anchors.unchecked:
        if (check == "timestamp" and "timestamps" in require) or (
            check == "revocation" and "revocation" in require
        ):
            result.problems.append(f"{what}: {check} not checked: {reason}")
        else:
            result.unchecked.append(Unchecked(what=what, check=check, reason=reason))
    return result
