"""Retention policies: the only way evidence bytes ever leave the store.

A collection may have a retention policy (``Collection.retention_days``; None keeps it for
ever). ``apply_retention`` deletes the *artifacts* of its snapshots once they are due, unless a
legal hold (``evidence_store.holds``) covers the snapshot or its collection. Every decision is a
custody-log entry: ``retention-changed``, ``deleted`` (one per snapshot) and
``deletion-completed`` (objects a previous run could not remove). Reasons are mandatory.

What is deleted and what is kept
--------------------------------
Only artifact objects are removed. The manifest (its digest is the snapshot id), the signature,
timestamp replies and certificate chains, and Merkle leaf lists stay: they are small, hold no
captured content beyond the metadata in the manifest, and keep the collection's hash chain, the
signatures and the timestamps verifiable, so the record of what existed, when, and that it was
deleted, remains. The index rows (snapshot, artifacts) stay too; ``Snapshot.deleted_at`` says
the artifacts are gone and ``evidence verify`` stops expecting them. Objects are content
addressed and shared: an artifact is kept while any snapshot that is not deleted, or any
snapshot under hold, still refers to it, and never removed if it is also some snapshot's
manifest, signature or timestamp.

When a snapshot is due
----------------------
When both its ``archived_at`` and its ``captured_at`` are older than the policy's days. The
period counts from when we took the data into custody (``archived_at``, our clock); requiring
``captured_at`` too means a capture whose clock ran ahead is not deleted early, and one whose
clock is wrong the other way (a backdated ``captured_at``) is not deleted right after it was
archived.

Crash safety: mark, then delete
-------------------------------
For a batch of due snapshots, one transaction (collection lock and custody lock) re-checks the
holds, sets ``deleted_at`` and appends the ``deleted`` entries; only after it has committed are
the objects deleted. A crash in between leaves snapshots marked deleted whose bytes are still
there: never a snapshot that claims to be whole but lacks bytes. The next ``apply_retention``
finds those leftovers (deleted snapshots whose removable artifacts still exist), removes them
and records ``deletion-completed``. Deleting first and marking after would, on a crash, leave
exactly the state the invariants forbid.

Object Lock
-----------
A retention policy extends each object's S3 retention to the date its snapshot becomes due
(never shortens it). Before marking, each removable object's lock is read from the store
(HEAD); a snapshot with a locked object (legal hold, or retention not yet expired; GOVERNANCE
counts as unlocked only with ``bypass_governance``) is reported as blocked and left untouched.

Concurrent captures
-------------------
A capture whose bytes are already stored does not upload them again, so it may share an object
with a snapshot being deleted. Objects are removed under the custody lock after checking again
that no live snapshot uses them (``_remove``), and ``archive`` re-checks under the same lock
that bytes it shares with a deleted snapshot still exist before it commits. Either the capture
commits first and the object is kept, or it fails with a clear error and commits nothing: a
snapshot never names removed bytes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from evidence_store import custody
from evidence_store.archive import EvidenceStore, collection_lock
from evidence_store.errors import EvidenceError, ObjectNotFound, StoreError
from evidence_store.holds import (
    ARTIFACT,
    HoldError,
    active_holds,
    chunked,
    hold_info,
    object_owners,
    objects_of,
    require_reason,
)
from evidence_store.index.models import Artifact, Collection, CustodyEvent, LegalHold, Snapshot
from evidence_store.objects import ObjectStore
from evidence_store.objects.base import ObjectInfo
from evidence_store.queries import resolve_snapshot
from evidence_store.support import ProgressCallback
from schemas import format_rfc3339, utc_now

RETENTION_CHANGED = "retention-changed"
DELETED = "deleted"
DELETION_COMPLETED = "deletion-completed"

BATCH = 50  # snapshots marked per transaction: short lock holds, bounded custody entries
MAX_RETENTION_DAYS = 36500


def _due_at(snap: Snapshot, days: int) -> datetime:
    return max(snap.archived_at, snap.captured_at) + timedelta(days=days)


def _collection(session: Session, name: str) -> Collection:
    coll = session.scalars(select(Collection).where(Collection.name == name)).first()
    if coll is None:
        raise EvidenceError(f"no collection {name!r}")
    return coll


# -- retention policies ------------------------------------------------------------------


@dataclass
class RetentionChange:
    """What ``set_retention`` did."""

    collection: str
    previous_days: int | None
    days: int | None
    snapshots: int = 0  # snapshots whose objects' store retention was extended
    objects: int = 0
    failures: list[str] = field(default_factory=list)


def set_retention(
    evidence: EvidenceStore,
    collection: str,
    days: int | None,
    reason: str,
    *,
    progress: ProgressCallback | None = None,
    on_total: Callable[[int], None] | None = None,
) -> RetentionChange:
    """Set a collection's retention policy (``None``: keep for ever) and record why.

    On a store with Object Lock, each object of the collection's snapshots is then retained in
    the store at least until its snapshot becomes due, so no one can delete it earlier. A
    shorter policy cannot shorten a retention already set (COMPLIANCE forbids it, and the
    store never asks): such objects are reported as blocked by ``apply_retention`` until then.
    """
    reason = require_reason(reason, "change a retention policy")
    if days is not None and not 1 <= days <= MAX_RETENTION_DAYS:
        raise EvidenceError(
            f"retention days must be between 1 and {MAX_RETENTION_DAYS}, not {days} "
            "(use --forever to keep snapshots for ever)"
        )
    with evidence.index.writing(collection_lock(collection), custody.CUSTODY_LOCK) as session:
        coll = _collection(session, collection)
        change = RetentionChange(collection, coll.retention_days, days)
        coll.retention_days = days
        custody.record(
            session,
            action=RETENTION_CHANGED,
            actor=evidence.actor,
            collection_id=coll.id,
            reason=reason,
            details={"collection": collection, "previous_days": change.previous_days, "days": days},
        )
        until: dict[str, datetime] = {}
        if days is not None and evidence.objects.supports_object_lock:
            snaps = list(
                session.scalars(
                    select(Snapshot).where(
                        Snapshot.collection_id == coll.id, Snapshot.deleted_at.is_(None)
                    )
                )
            )
            change.snapshots = len(snaps)
            for snap in snaps:
                due = _due_at(snap, days)
                for digest in objects_of(session, [snap.id]):
                    until[digest] = max(due, until.get(digest, due))
    if on_total is not None:
        on_total(len(until))
    for digest, date in sorted(until.items()):
        try:
            if evidence.objects.extend_retention(digest, date) is not None:
                change.objects += 1
        except ObjectNotFound:
            pass
        except StoreError as exc:
            change.failures.append(str(exc))
        if progress is not None:
            progress(1)
    return change


@dataclass
class CollectionStatus:
    """A collection's policy and where its snapshots stand."""

    collection: str
    days: int | None
    snapshots: int
    deleted: int
    held: int  # not deleted, covered by an active hold
    due: int  # would be deleted by `apply` now
    next_due_at: str | None  # earliest date a snapshot not yet due becomes due
    holds: int  # active holds on the collection itself

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def retention_status(
    evidence: EvidenceStore, *, now: datetime | None = None
) -> list[CollectionStatus]:
    """Every collection with its policy, counts of deleted, held and due snapshots."""
    now = now or utc_now()
    result = []
    with evidence.index.session() as session:
        for coll in session.scalars(select(Collection).order_by(Collection.name)):
            snaps = list(session.scalars(select(Snapshot).where(Snapshot.collection_id == coll.id)))
            live = [s for s in snaps if s.deleted_at is None]
            held = active_holds(session, [s.id for s in live])
            due = 0
            upcoming: list[datetime] = []
            if coll.retention_days is not None:
                for snap in live:
                    if snap.id in held:
                        continue
                    when = _due_at(snap, coll.retention_days)
                    if when <= now:
                        due += 1
                    else:
                        upcoming.append(when)
            holds = session.scalars(
                select(LegalHold.id).where(
                    LegalHold.collection_id == coll.id, LegalHold.released_at.is_(None)
                )
            ).all()
            result.append(
                CollectionStatus(
                    collection=coll.name,
                    days=coll.retention_days,
                    snapshots=len(snaps),
                    deleted=len(snaps) - len(live),
                    held=len(held),
                    due=due,
                    next_due_at=format_rfc3339(min(upcoming)) if upcoming else None,
                    holds=len(holds),
                )
            )
    return result


@dataclass
class SnapshotDeletion:
    """One snapshot whose artifacts the policy deletes (or, in a dry run, would delete)."""

    snapshot: str
    collection: str
    sequence: int
    archived_at: str
    due_at: str
    removed: list[str]  # artifact objects removed from the store
    kept_shared: list[str]  # artifact objects kept: another snapshot still needs them
    bytes_removed: int


@dataclass
class RetentionReport:
    """What ``apply_retention`` did: deleted, held, blocked by the store, failed."""

    now: str
    dry_run: bool
    deleted: list[SnapshotDeletion] = field(default_factory=list)
    held: list[dict[str, Any]] = field(default_factory=list)  # snapshot, collection, holds
    blocked: list[dict[str, Any]] = field(default_factory=list)  # snapshot, reason (store lock)
    failed: list[dict[str, Any]] = field(default_factory=list)  # sha256, error
    completed: list[dict[str, Any]] = field(default_factory=list)  # leftovers of earlier runs
    objects_removed: int = 0
    bytes_removed: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ok": self.ok}


def _lockrequire_reason(info: ObjectInfo, bypass_governance: bool) -> str | None:
    """Why the store would refuse to delete this object now, or None."""
    if info.legal_hold:
        return f"object {info.sha256[:16]} has a legal hold in the store"
    # The server judges retention by its own clock, not by the policy's ``now``.
    if info.retain_until is not None and info.retain_until > datetime.now(UTC):
        if info.retention_mode == "GOVERNANCE" and bypass_governance:
            return None
        return (
            f"object {info.sha256[:16]} is under {info.retention_mode or 'store'} retention "
            f"until {format_rfc3339(info.retain_until)}"
        )
    return None


def _removability(
    session: Session, digests: Iterable[str], batch: set[str]
) -> Callable[[str], bool]:
    """A test for whether an object may go when the snapshots in ``batch`` are deleted.

    Only an artifact, and only if every snapshot referring to it is in ``batch`` or was deleted
    before and is not under a hold. ``batch`` is read at each call: callers may shrink it.
    """
    owners = object_owners(session, digests)
    owner_ids = {sid for refs in owners.values() for sid, _ in refs if sid is not None}
    held = active_holds(session, owner_ids)
    deleted = {
        sid
        for chunk in chunked(owner_ids)
        for sid in session.scalars(
            select(Snapshot.id).where(Snapshot.id.in_(chunk), Snapshot.deleted_at.is_not(None))
        )
    }

    def removable(digest: str) -> bool:
        return all(
            role == ARTIFACT
            and sid is not None
            and (sid in batch or (sid in deleted and sid not in held))
            for sid, role in owners[digest]
        )

    return removable


@dataclass
class _Plan:
    deletions: list[tuple[Snapshot, list[str], list[str], int]]  # snap, removed, kept, bytes
    blocked: list[tuple[Snapshot, str]]


def _plan(
    session: Session,
    snaps: list[Snapshot],
    objects: ObjectStore,
    bypass_governance: bool,
    lock_cache: dict[str, str | None],
) -> _Plan:
    """Which artifacts of these due snapshots can go, and which snapshots the store blocks."""
    sizes = {a.sha256: a.size for s in snaps for a in s.artifacts}
    batch = {s.id for s in snaps}
    removable = _removability(session, sizes, batch)
    blocked: list[tuple[Snapshot, str]] = []

    while True:
        newly_blocked = False
        for snap in snaps:
            if snap.id not in batch:
                continue
            for digest in {a.sha256 for a in snap.artifacts if removable(a.sha256)}:
                if digest not in lock_cache:
                    lock_cache[digest] = _store_lock(objects, digest, bypass_governance)
                if lock_cache[digest] is not None:
                    blocked.append((snap, lock_cache[digest] or ""))
                    batch.discard(snap.id)
                    newly_blocked = True
                    break
        # A blocked snapshot stays whole, so its artifacts become protected for the others:
        # decide again until nothing changes.
        if not newly_blocked:
            break
    deletions = []
    for snap in snaps:
        if snap.id not in batch:
            continue
        digests = sorted({a.sha256 for a in snap.artifacts})
        removed = [d for d in digests if removable(d)]
        kept = [d for d in digests if not removable(d)]
        deletions.append((snap, removed, kept, sum(sizes[d] for d in removed)))
    return _Plan(deletions, blocked)


def _store_lock(objects: ObjectStore, digest: str, bypass_governance: bool) -> str | None:
    if not objects.supports_object_lock:
        return None
    try:
        info = objects.stat(digest)
    except ObjectNotFound:
        return None  # already gone: nothing the store could refuse
    return _lockrequire_reason(info, bypass_governance)


def _policy_event(session: Session, collection_id: int) -> CustodyEvent | None:
    return session.scalars(
        select(CustodyEvent)
        .where(
            CustodyEvent.action == RETENTION_CHANGED, CustodyEvent.collection_id == collection_id
        )
        .order_by(CustodyEvent.id.desc())
        .limit(1)
    ).first()


def _candidates(
    session: Session,
    now: datetime,
    collection: str | None,
    refs: list[str] | None,
) -> tuple[dict[str, list[str]], list[dict[str, Any]]]:
    """Due snapshot ids per collection name, and the due snapshots holds keep."""
    plan: dict[str, list[str]] = defaultdict(list)
    if refs:
        snaps = [resolve_snapshot(session, ref) for ref in refs]
        holds = active_holds(session, [s.id for s in snaps])
        for snap in snaps:
            coll = snap.collection
            if snap.deleted_at is not None:
                raise EvidenceError(
                    f"snapshot {snap.id[:16]} was already deleted by the retention policy at "
                    f"{format_rfc3339(snap.deleted_at)}"
                )
            if snap.id in holds:
                names = "; ".join(hold_info(session, h).describe() for h in holds[snap.id])
                raise HoldError(
                    f"snapshot {snap.id[:16]} cannot be deleted: it is under {names}; "
                    "release the hold first (`evidence hold release`)"
                )
            if coll.retention_days is None:
                raise EvidenceError(
                    f"collection {coll.name!r} has no retention policy (it keeps snapshots for "
                    "ever): set one with `evidence retention set`"
                )
            due = _due_at(snap, coll.retention_days)
            if due > now:
                raise EvidenceError(
                    f"snapshot {snap.id[:16]} is not due for deletion before "
                    f"{format_rfc3339(due)} (collection {coll.name!r} keeps snapshots "
                    f"{coll.retention_days} days)"
                )
            if snap.id not in plan[coll.name]:
                plan[coll.name].append(snap.id)
        return plan, []

    query = select(Collection).where(Collection.retention_days.is_not(None))
    if collection is not None:
        coll = _collection(session, collection)
        if coll.retention_days is None:
            raise EvidenceError(
                f"collection {collection!r} has no retention policy (it keeps snapshots for ever)"
            )
        query = query.where(Collection.id == coll.id)
    held_report: list[dict[str, Any]] = []
    for coll in session.scalars(query.order_by(Collection.name)):
        assert coll.retention_days is not None
        cutoff = now - timedelta(days=coll.retention_days)
        due = list(
            session.scalars(
                select(Snapshot.id)
                .where(
                    Snapshot.collection_id == coll.id,
                    Snapshot.deleted_at.is_(None),
                    Snapshot.archived_at <= cutoff,
                    Snapshot.captured_at <= cutoff,
                )
                .order_by(Snapshot.sequence)
            )
        )
        holds = active_holds(session, due)
        for sid in due:
            if sid in holds:
                held_report.append(
                    {
                        "snapshot": sid,
                        "collection": coll.name,
                        "holds": [hold_info(session, h).describe() for h in holds[sid]],
                    }
                )
            else:
                plan[coll.name].append(sid)
    return plan, held_report


def apply_retention(
    evidence: EvidenceStore,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    collection: str | None = None,
    snapshots: list[str] | None = None,
    bypass_governance: bool = False,
    progress: ProgressCallback | None = None,
    on_total: Callable[[int], None] | None = None,
) -> RetentionReport:
    """Delete the artifacts of every due snapshot that no legal hold covers.

    ``snapshots`` limits the run to those (ids or prefixes) and turns every reason one cannot
    be deleted (hold, not due, no policy, already deleted) into an error naming it. With
    ``dry_run`` nothing is written or removed; the report says what would be. Snapshots the
    store's Object Lock protects are reported as blocked and left whole. Object deletions that
    fail after the snapshot was marked are in ``failed`` and are retried by the next run.
    """
    now = now or utc_now()
    report = RetentionReport(now=format_rfc3339(now), dry_run=dry_run)
    objects = evidence.objects
    lock_cache: dict[str, str | None] = {}
    with evidence.index.session() as session:
        plan, report.held = _candidates(session, now, collection, snapshots)
    if on_total is not None:
        on_total(sum(len(ids) for ids in plan.values()))

    done: set[str] = set()
    if dry_run:
        # One plan over every candidate, so objects shared between batches or collections are
        # counted as they would be once all of them are deleted.
        with evidence.index.session() as session:
            ids = [sid for chunk in plan.values() for sid in chunk]
            snaps = [
                snap
                for chunk in chunked(ids)
                for snap in session.scalars(select(Snapshot).where(Snapshot.id.in_(chunk)))
            ]
            _report_plan(report, _plan(session, snaps, objects, bypass_governance, lock_cache))
        if progress is not None:
            progress(len(ids))
    else:
        for name, ids in plan.items():
            for chunk in chunked(ids, BATCH):
                if objects.supports_object_lock:
                    # Read the store's locks (a HEAD each) before taking the index locks, which
                    # every capture's commit waits for; inside, only new digests are asked.
                    with evidence.index.session() as session:
                        snaps = list(
                            session.scalars(select(Snapshot).where(Snapshot.id.in_(chunk)))
                        )
                        _plan(session, snaps, objects, bypass_governance, lock_cache)
                removed = _mark_batch(
                    evidence, name, chunk, now, bypass_governance, lock_cache, report
                )
                done.update(chunk)
                _remove(evidence, removed, report, bypass_governance)
                if progress is not None:
                    progress(len(chunk))
    _complete_leftovers(evidence, report, collection, done, dry_run, bypass_governance)
    return report


def _report_plan(report: RetentionReport, result: _Plan) -> None:
    for snap, reason in result.blocked:
        report.blocked.append(
            {"snapshot": snap.id, "collection": snap.collection.name, "reason": reason}
        )
    for snap, removed, kept, size in result.deletions:
        days = snap.collection.retention_days
        assert days is not None
        report.deleted.append(
            SnapshotDeletion(
                snapshot=snap.id,
                collection=snap.collection.name,
                sequence=snap.sequence,
                archived_at=format_rfc3339(snap.archived_at),
                due_at=format_rfc3339(_due_at(snap, days)),
                removed=removed,
                kept_shared=kept,
                bytes_removed=size,
            )
        )


def _mark_batch(
    evidence: EvidenceStore,
    collection: str,
    ids: list[str],
    now: datetime,
    bypass_governance: bool,
    lock_cache: dict[str, str | None],
    report: RetentionReport,
) -> dict[str, int]:
    """Under the locks: re-check, set ``deleted_at``, append the custody entries, commit.

    Returns the objects to remove afterwards (digest -> size).
    """
    with evidence.index.writing(collection_lock(collection), custody.CUSTODY_LOCK) as session:
        coll = _collection(session, collection)
        days = coll.retention_days
        if days is None:  # the policy was lifted since the candidates were chosen
            return {}
        snaps = [
            s
            for s in session.scalars(
                select(Snapshot).where(Snapshot.id.in_(ids), Snapshot.deleted_at.is_(None))
            )
            if _due_at(s, days) <= now
        ]
        # A hold set since the candidates were chosen wins: holds are written under the
        # custody lock, which this transaction holds.
        holds = active_holds(session, [s.id for s in snaps])
        for snap in snaps:
            if snap.id in holds:
                report.held.append(
                    {
                        "snapshot": snap.id,
                        "collection": collection,
                        "holds": [hold_info(session, h).describe() for h in holds[snap.id]],
                    }
                )
        snaps = [s for s in snaps if s.id not in holds]
        result = _plan(session, snaps, evidence.objects, bypass_governance, lock_cache)
        _report_plan(report, result)
        policy = _policy_event(session, coll.id)
        reason = policy.reason if policy is not None and policy.reason else None
        deleted_at = utc_now()
        events = []
        to_remove: dict[str, int] = {}
        for snap, removed, kept, size in result.deletions:
            snap.deleted_at = deleted_at
            sizes = {a.sha256: a.size for a in snap.artifacts}
            to_remove.update((d, sizes[d]) for d in removed)
            events.append(
                custody.Event(
                    action=DELETED,
                    actor=evidence.actor,
                    snapshot_id=snap.id,
                    collection_id=coll.id,
                    reason=reason or f"retention policy of collection {collection!r}: {days} days",
                    details={
                        "policy_days": days,
                        "policy_event": policy.entry_hash if policy is not None else None,
                        "archived_at": format_rfc3339(snap.archived_at),
                        "captured_at": format_rfc3339(snap.captured_at),
                        "due_at": format_rfc3339(_due_at(snap, days)),
                        "removed": removed,
                        "kept_shared": kept,
                        "kept": "manifest, signature, timestamps",
                        "bytes_removed": size,
                        "store": evidence.objects.url,
                    },
                )
            )
        custody.append(session, events)
    return to_remove


def _remove(
    evidence: EvidenceStore, digests: dict[str, int], report: RetentionReport, bypass: bool
) -> set[str]:
    """Delete objects whose snapshots are marked deleted; failures go in the report.

    Each batch is deleted while holding the custody lock, after checking again that no live
    snapshot uses the object: a capture committing the same bytes meanwhile (it deduplicated
    against this object) either committed first, and the object is kept, or commits after, and
    ``commit_snapshots`` sees the object gone and refuses. Returns the digests no longer in the
    store (removed now or already gone).
    """
    objects = evidence.objects
    gone = set()
    for batch in chunked(sorted(digests)):
        with evidence.index.writing(custody.CUSTODY_LOCK) as session:
            live = set(
                session.scalars(
                    select(Artifact.sha256)
                    .join(Snapshot, Artifact.snapshot_id == Snapshot.id)
                    .where(Artifact.sha256.in_(batch), Snapshot.deleted_at.is_(None))
                )
            )
            for digest in batch:
                if digest in live:
                    continue
                try:
                    if objects.delete(digest, durable=False, bypass_governance=bypass):
                        report.objects_removed += 1
                        report.bytes_removed += digests[digest]
                    gone.add(digest)
                except StoreError as exc:
                    report.failed.append({"sha256": digest, "error": str(exc)})
            objects.flush()
    return gone


def _complete_leftovers(
    evidence: EvidenceStore,
    report: RetentionReport,
    collection: str | None,
    exclude: set[str],
    dry_run: bool,
    bypass: bool,
) -> None:
    """Remove what earlier runs marked deleted but could not remove (crash, store refusal)."""
    objects = evidence.objects
    with evidence.index.session() as session:
        query = select(Snapshot).where(Snapshot.deleted_at.is_not(None))
        if collection is not None:
            query = query.join(Collection).where(Collection.name == collection)
        snaps = [s for s in session.scalars(query) if s.id not in exclude]
        if not snaps:
            return
        sizes = {a.sha256: a.size for s in snaps for a in s.artifacts}
        removable = _removability(session, sizes, set())
        pending = {}
        for snap in snaps:
            left = [
                d
                for d in sorted({a.sha256 for a in snap.artifacts})
                if removable(d) and objects.exists(d)
            ]
            if left:
                pending[snap.id] = (snap.collection_id, left)
    if not pending:
        return
    if dry_run:
        report.completed = [
            {"snapshot": sid, "pending": left} for sid, (_, left) in pending.items()
        ]
        return
    digests = {d: sizes[d] for _, left in pending.values() for d in left}
    gone = _remove(evidence, digests, report, bypass)
    events = []
    for sid, (collection_id, left) in pending.items():
        removed = [d for d in left if d in gone]
        if not removed:
            continue
        report.completed.append({"snapshot": sid, "removed": removed})
        events.append(
            custody.Event(
                action=DELETION_COMPLETED,
                actor=evidence.actor,
                snapshot_id=sid,
                collection_id=collection_id,
                reason="artifacts an earlier retention run marked deleted but had not removed",
                details={"removed": removed, "store": objects.url},
            )
        )
    if events:
        with evidence.index.writing(custody.CUSTODY_LOCK) as session:
            custody.append(session, events)
