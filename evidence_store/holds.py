"""Legal holds: while one is active, the retention policy deletes nothing it covers.

A hold covers one snapshot or a whole collection, including snapshots archived into it later.
Setting and releasing one are custody-log entries (``hold-set``, ``hold-released``) with a
mandatory reason, written under the custody lock, which ``apply_retention`` also holds while it
marks snapshots deleted: a hold set a moment ago wins.

The index is the authority: a hold row blocks deletion by the policy whatever the store can do.
Stores with Object Lock (S3) mirror it so that the server refuses deletion by anyone: a hold
switches the S3 legal hold on for every object of the snapshots it covers (artifacts, manifest,
signature, timestamp replies and chains, Merkle leaf lists); a release switches it off only for
objects no other active hold covers, and never where the store puts a legal hold on every object
by configuration. The index is written first and the store follows; if the store fails
part-way, the hold is in force in the index and ``sync_holds`` repairs the objects. The local
folder store has no Object Lock: there the holds live in the index only.

This module also answers, for ``retention``, which index rows own an object (``object_owners``)
and which holds cover a snapshot (``active_holds``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from evidence_store import custody
from evidence_store.archive import EvidenceStore
from evidence_store.errors import EvidenceError, ObjectNotFound, SnapshotNotFound, StoreError
from evidence_store.index.models import (
    Artifact,
    Collection,
    LegalHold,
    MerkleProof,
    MerkleTree,
    RevocationList,
    Snapshot,
    TimestampRecord,
)
from evidence_store.keys import key_object_digests
from evidence_store.objects import ObjectStore
from evidence_store.queries import resolve_snapshot
from evidence_store.support import ProgressCallback
from schemas import format_rfc3339, utc_now

HOLD_SET = "hold-set"
HOLD_RELEASED = "hold-released"

IN_CHUNK = 500  # digests per IN (...) list
ARTIFACT = "artifact"  # the role of an artifact row in ``object_owners``


class HoldError(EvidenceError):
    """Deletion refused: a legal hold covers the snapshot."""


# -- small helpers shared with retention --------------------------------------------------


def require_reason(reason: str | None, what: str) -> str:
    """The stripped reason, or an error saying that one is needed to ``what``."""
    text = (reason or "").strip()
    if not text:
        raise EvidenceError(f"a reason is required to {what} (--reason TEXT): it goes on record")
    return text


def chunked(items: Iterable[Any], size: int = IN_CHUNK) -> Iterator[list[Any]]:
    """``items`` in lists of at most ``size``: IN (...) lists stay within database limits."""
    batch = list(items)
    for start in range(0, len(batch), size):
        yield batch[start : start + size]


def _time(value: datetime | None) -> str | None:
    return format_rfc3339(value) if value is not None else None


# -- holds -------------------------------------------------------------------------------


@dataclass(frozen=True)
class HoldInfo:
    """One legal hold, as reported."""

    id: int
    snapshot: str | None
    collection: str
    reason: str
    set_by: str
    set_at: str
    released_at: str | None = None
    released_by: str | None = None
    release_reason: str | None = None

    @property
    def active(self) -> bool:
        return self.released_at is None

    @property
    def target(self) -> str:
        if self.snapshot is not None:
            return f"snapshot {self.snapshot[:16]}"
        return f"collection {self.collection!r}"

    def describe(self) -> str:
        """One line naming the hold: id, target, reason, who and when."""
        return (
            f"legal hold #{self.id} on {self.target} ({self.reason!r}, set by {self.set_by} "
            f"at {self.set_at})"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"active": self.active}


@dataclass
class HoldOutcome:
    """What ``set_hold`` or ``release_hold`` did: the hold, and the store's part of it."""

    hold: HoldInfo
    objects: int = 0  # objects whose store-side legal hold was switched
    kept_on: int = 0  # release: objects left on because another hold covers them
    failures: list[str] = field(default_factory=list)  # store errors (the index hold stands)
    snapshot_deleted_at: str | None = None  # a hold on a snapshot whose artifacts are gone


def hold_info(session: Session, hold: LegalHold) -> HoldInfo:
    """A hold row as reported, with the name of the collection it (or its snapshot) is in."""
    if hold.snapshot_id is not None:
        snap = session.get(Snapshot, hold.snapshot_id)
        collection = snap.collection.name if snap is not None else "?"
    else:
        coll = session.get(Collection, hold.collection_id)
        collection = coll.name if coll is not None else "?"
    return HoldInfo(
        id=hold.id,
        snapshot=hold.snapshot_id,
        collection=collection,
        reason=hold.reason,
        set_by=hold.set_by,
        set_at=format_rfc3339(hold.set_at),
        released_at=_time(hold.released_at),
        released_by=hold.released_by,
        release_reason=hold.release_reason,
    )


def resolve_target(
    session: Session, ref: str, kind: str | None = None
) -> tuple[Snapshot | None, Collection | None]:
    """A snapshot (id or unique prefix) or a collection (name); ``kind`` forces one of them.

    A reference that names both is refused rather than guessed.
    """
    if kind not in (None, "snapshot", "collection"):
        raise EvidenceError(f"unknown hold target kind {kind!r}: snapshot or collection")
    coll = None
    if kind != "snapshot":
        coll = session.scalars(select(Collection).where(Collection.name == ref)).first()
    snap = None
    snap_error: SnapshotNotFound | None = None
    if kind != "collection":
        try:
            snap = resolve_snapshot(session, ref)
        except SnapshotNotFound as exc:
            snap_error = exc
    if snap is not None and coll is not None:
        raise EvidenceError(
            f"{ref!r} names both a collection and a snapshot: say which with "
            "--collection or --snapshot"
        )
    if snap is None and coll is None:
        if kind == "collection":
            raise EvidenceError(f"no collection {ref!r}")
        if kind == "snapshot":
            assert snap_error is not None
            raise snap_error
        raise EvidenceError(f"no collection {ref!r}, and {snap_error}")
    return snap, coll


def _snapshot_ids(session: Session, snap: Snapshot | None, coll: Collection | None) -> list[str]:
    if snap is not None:
        return [snap.id]
    assert coll is not None
    return list(session.scalars(select(Snapshot.id).where(Snapshot.collection_id == coll.id)))


def objects_of(session: Session, snapshot_ids: Iterable[str]) -> set[str]:
    """Every object that belongs to these snapshots or proves them.

    Artifacts, manifests (= snapshot ids), signatures, the snapshots' own timestamp replies and
    certificate chains, and those of the Merkle trees they are in, with the trees' leaf lists.
    """
    digests: set[str] = set()
    tree_ids: set[int] = set()
    for chunk in chunked(snapshot_ids):
        digests.update(chunk)
        digests.update(
            session.scalars(select(Artifact.sha256).where(Artifact.snapshot_id.in_(chunk)))
        )
        digests.update(
            session.scalars(select(Snapshot.signature_sha256).where(Snapshot.id.in_(chunk)))
        )
        for reply, chain in session.execute(
            select(TimestampRecord.reply_sha256, TimestampRecord.chain_sha256).where(
                TimestampRecord.snapshot_id.in_(chunk)
            )
        ):
            digests.add(reply)
            if chain:
                digests.add(chain)
        tree_ids.update(
            session.scalars(select(MerkleProof.tree_id).where(MerkleProof.snapshot_id.in_(chunk)))
        )
    for chunk in chunked(tree_ids):
        for reply, chain in session.execute(
            select(TimestampRecord.reply_sha256, TimestampRecord.chain_sha256).where(
                TimestampRecord.tree_id.in_(chunk)
            )
        ):
            digests.add(reply)
            if chain:
                digests.add(chain)
        digests.update(
            session.scalars(select(MerkleTree.leaves_sha256).where(MerkleTree.id.in_(chunk)))
        )
    return digests


def object_owners(
    session: Session, digests: Iterable[str]
) -> dict[str, set[tuple[str | None, str]]]:
    """For each digest: (snapshot id or None, role) of every index row that refers to it.

    Roles: artifact, manifest, signature, timestamp, merkle-leaves, revocation-list,
    signing-key. ``None`` stands for a referrer that is not one snapshot (a Merkle tree, a
    custody-head token, a CRL, a key record).
    """
    owners: dict[str, set[tuple[str | None, str]]] = defaultdict(set)
    tree_refs: dict[int, set[tuple[str, str]]] = defaultdict(set)  # tree id -> (digest, role)
    key_digests = set(key_object_digests(session))
    for chunk in chunked(digests):
        for sha, sid in session.execute(
            select(Artifact.sha256, Artifact.snapshot_id).where(Artifact.sha256.in_(chunk))
        ):
            owners[sha].add((sid, ARTIFACT))
        for sid in session.scalars(select(Snapshot.id).where(Snapshot.id.in_(chunk))):
            owners[sid].add((sid, "manifest"))
        for sig, sid in session.execute(
            select(Snapshot.signature_sha256, Snapshot.id).where(
                Snapshot.signature_sha256.in_(chunk)
            )
        ):
            owners[sig].add((sid, "signature"))
        for column in (TimestampRecord.reply_sha256, TimestampRecord.chain_sha256):
            for digest, sid, tree_id in session.execute(
                select(column, TimestampRecord.snapshot_id, TimestampRecord.tree_id).where(
                    column.in_(chunk)
                )
            ):
                owners[digest].add((sid, "timestamp"))
                if tree_id is not None:
                    tree_refs[tree_id].add((digest, "timestamp"))
        for leaves, tree_id in session.execute(
            select(MerkleTree.leaves_sha256, MerkleTree.id).where(
                MerkleTree.leaves_sha256.in_(chunk)
            )
        ):
            owners[leaves].add((None, "merkle-leaves"))
            tree_refs[tree_id].add((leaves, "merkle-leaves"))
        # Archived CRLs and public-key records belong to no snapshot, and stay whatever
        # bytes they share with an artifact.
        for digest in session.scalars(
            select(RevocationList.crl_sha256).where(RevocationList.crl_sha256.in_(chunk))
        ):
            owners[digest].add((None, "revocation-list"))
        for digest in key_digests.intersection(chunk):
            owners[digest].add((None, "signing-key"))
    for chunk in chunked(tree_refs):
        for tree_id, sid in session.execute(
            select(MerkleProof.tree_id, MerkleProof.snapshot_id).where(
                MerkleProof.tree_id.in_(chunk)
            )
        ):
            for digest, role in tree_refs[tree_id]:
                owners[digest].add((sid, role))
    return owners


def active_holds(session: Session, snapshot_ids: Iterable[str]) -> dict[str, list[LegalHold]]:
    """The active holds covering each of these snapshots (its own and its collection's)."""
    found: dict[str, list[LegalHold]] = defaultdict(list)
    collection_of: dict[str, int] = {}
    for chunk in chunked(snapshot_ids):
        for sid, coll_id in session.execute(
            select(Snapshot.id, Snapshot.collection_id).where(Snapshot.id.in_(chunk))
        ):
            collection_of[sid] = coll_id
        for hold in session.scalars(
            select(LegalHold).where(
                LegalHold.snapshot_id.in_(chunk), LegalHold.released_at.is_(None)
            )
        ):
            assert hold.snapshot_id is not None
            found[hold.snapshot_id].append(hold)
    by_collection: dict[int, list[LegalHold]] = defaultdict(list)
    for chunk in chunked(set(collection_of.values())):
        for hold in session.scalars(
            select(LegalHold).where(
                LegalHold.collection_id.in_(chunk), LegalHold.released_at.is_(None)
            )
        ):
            assert hold.collection_id is not None
            by_collection[hold.collection_id].append(hold)
    for sid, coll_id in collection_of.items():
        found[sid].extend(by_collection.get(coll_id, []))
    return {sid: sorted(holds, key=lambda h: h.id) for sid, holds in found.items() if holds}


def _switch_holds(
    objects: ObjectStore,
    digests: Iterable[str],
    on: bool,
    progress: ProgressCallback | None = None,
) -> tuple[int, list[str]]:
    """Switch the store's legal hold on each object; (objects switched, error messages).

    Objects already deleted by the policy are skipped: there is nothing left to hold.
    """
    switched, failures = 0, []
    for digest in sorted(digests):
        try:
            if objects.set_legal_hold(digest, on):
                switched += 1
        except ObjectNotFound:
            pass
        except StoreError as exc:
            failures.append(str(exc))
        if progress is not None:
            progress(1)
    return switched, failures


def _still_held(session: Session, digests: Iterable[str]) -> set[str]:
    """Those of ``digests`` that some snapshot under an active hold refers to."""
    owners = object_owners(session, digests)
    snapshot_ids = {sid for refs in owners.values() for sid, _ in refs if sid is not None}
    held = active_holds(session, snapshot_ids)
    return {d for d, refs in owners.items() if any(sid in held for sid, _ in refs)}


def _store_holds_everything(objects: ObjectStore) -> bool:
    # An S3 store configured with legal_hold=True puts a hold on every object it writes: that
    # standing hold is the operator's, and releasing one of ours must not lift it.
    return bool(getattr(objects, "legal_hold", False))


def set_hold(
    evidence: EvidenceStore,
    ref: str,
    reason: str,
    *,
    kind: str | None = None,
    progress: ProgressCallback | None = None,
    on_total: Callable[[int], None] | None = None,
) -> HoldOutcome:
    """Put a legal hold on a snapshot or a whole collection, record it, lock the objects.

    The hold is committed to the index (with its custody entry) first; then, on a store with
    Object Lock, every object of the covered snapshots gets the store's legal hold. Store
    failures are reported in the outcome; the index hold is in force regardless.
    """
    reason = require_reason(reason, "set a legal hold")
    with evidence.index.writing(custody.CUSTODY_LOCK) as session:
        snap, coll = resolve_target(session, ref, kind)
        hold = LegalHold(
            snapshot_id=snap.id if snap is not None else None,
            collection_id=coll.id if coll is not None else None,
            reason=reason,
            set_by=evidence.actor,
            set_at=utc_now(),
        )
        session.add(hold)
        session.flush()
        info = hold_info(session, hold)
        snapshot_ids = _snapshot_ids(session, snap, coll)
        custody.record(
            session,
            action=HOLD_SET,
            actor=evidence.actor,
            snapshot_id=info.snapshot,
            collection_id=snap.collection_id if snap is not None else hold.collection_id,
            reason=reason,
            details={
                "hold": info.id,
                "target": "snapshot" if snap is not None else "collection",
                "collection": info.collection,
                "snapshots": len(snapshot_ids),
            },
        )
        digests = (
            objects_of(session, snapshot_ids) if evidence.objects.supports_object_lock else set()
        )
        deleted_at = _time(snap.deleted_at) if snap is not None else None
    outcome = HoldOutcome(hold=info, snapshot_deleted_at=deleted_at)
    if digests:
        if on_total is not None:
            on_total(len(digests))
        outcome.objects, outcome.failures = _switch_holds(evidence.objects, digests, True, progress)
    return outcome


def release_hold(
    evidence: EvidenceStore,
    ref: str | None,
    reason: str,
    *,
    hold_id: int | None = None,
    kind: str | None = None,
    progress: ProgressCallback | None = None,
    on_total: Callable[[int], None] | None = None,
) -> HoldOutcome:
    """Release a legal hold (by id, or the one active hold on a snapshot or collection).

    The release is committed with its custody entry first; then the store's legal hold is
    switched off on the objects no other active hold covers (read after the commit, so a hold
    set meanwhile is seen).
    """
    reason = require_reason(reason, "release a legal hold")
    with evidence.index.writing(custody.CUSTODY_LOCK) as session:
        if hold_id is not None:
            hold = session.get(LegalHold, hold_id)
            if hold is None:
                raise EvidenceError(f"no legal hold #{hold_id}")
            if ref is not None:
                snap, coll = resolve_target(session, ref, kind)
                if (snap is not None and hold.snapshot_id != snap.id) or (
                    coll is not None and hold.collection_id != coll.id
                ):
                    raise EvidenceError(f"legal hold #{hold_id} is not on {ref!r}")
        else:
            if ref is None:
                raise EvidenceError("name the snapshot or collection, or give the hold's --id")
            snap, coll = resolve_target(session, ref, kind)
            query = select(LegalHold).where(LegalHold.released_at.is_(None))
            if snap is not None:
                query = query.where(LegalHold.snapshot_id == snap.id)
            else:
                assert coll is not None
                query = query.where(LegalHold.collection_id == coll.id)
            active = list(session.scalars(query.order_by(LegalHold.id)))
            if not active:
                what = f"snapshot {snap.id[:16]}" if snap is not None else f"collection {ref!r}"
                raise EvidenceError(f"no active legal hold on {what}")
            if len(active) > 1:
                ids = ", ".join(f"#{h.id}" for h in active)
                raise EvidenceError(
                    f"{len(active)} active legal holds on {ref!r} ({ids}): say which with --id"
                )
            hold = active[0]
        if hold.released_at is not None:
            raise EvidenceError(
                f"legal hold #{hold.id} was already released at "
                f"{format_rfc3339(hold.released_at)} by {hold.released_by}"
            )
        hold.released_at = utc_now()
        hold.released_by = evidence.actor
        hold.release_reason = reason
        session.flush()
        info = hold_info(session, hold)
        target_snap = session.get(Snapshot, hold.snapshot_id) if hold.snapshot_id else None
        target_coll = session.get(Collection, hold.collection_id) if hold.collection_id else None
        snapshot_ids = _snapshot_ids(session, target_snap, target_coll)
        custody.record(
            session,
            action=HOLD_RELEASED,
            actor=evidence.actor,
            snapshot_id=info.snapshot,
            collection_id=target_snap.collection_id if target_snap else hold.collection_id,
            reason=reason,
            details={
                "hold": info.id,
                "target": "snapshot" if target_snap is not None else "collection",
                "collection": info.collection,
                "set_at": info.set_at,
                "set_by": info.set_by,
                "set_reason": info.reason,
            },
        )
    outcome = HoldOutcome(hold=info)
    objects = evidence.objects
    if not objects.supports_object_lock or _store_holds_everything(objects):
        return outcome
    with evidence.index.session() as session:
        digests = objects_of(session, snapshot_ids)
        keep = _still_held(session, digests)
    outcome.kept_on = len(keep)
    if on_total is not None:
        on_total(len(digests) - len(keep))
    outcome.objects, outcome.failures = _switch_holds(objects, digests - keep, False, progress)
    return outcome


def list_holds(evidence: EvidenceStore, *, include_released: bool = False) -> list[HoldInfo]:
    """Legal holds, oldest first; only the active ones unless ``include_released``."""
    with evidence.index.session() as session:
        query = select(LegalHold).order_by(LegalHold.id)
        if not include_released:
            query = query.where(LegalHold.released_at.is_(None))
        return [hold_info(session, hold) for hold in session.scalars(query)]


@dataclass
class SyncOutcome:
    """What ``sync_holds`` switched on and off in the store."""

    switched_on: int = 0
    switched_off: int = 0
    failures: list[str] = field(default_factory=list)


def sync_holds(evidence: EvidenceStore, *, progress: ProgressCallback | None = None) -> SyncOutcome:
    """Make the store's legal holds agree with the index again.

    On: every object of every snapshot an active hold covers (snapshots archived into a held
    collection after the hold was set, objects a failed ``set_hold`` missed). Off: objects of
    released holds that no active hold covers. A no-op on stores without Object Lock.
    """
    result = SyncOutcome()
    objects = evidence.objects
    if not objects.supports_object_lock:
        return result
    with evidence.index.session() as session:
        on: set[str] = set()
        released: set[str] = set()
        for hold in session.scalars(select(LegalHold)):
            snap = session.get(Snapshot, hold.snapshot_id) if hold.snapshot_id else None
            coll = session.get(Collection, hold.collection_id) if hold.collection_id else None
            digests = objects_of(session, _snapshot_ids(session, snap, coll))
            (on if hold.released_at is None else released).update(digests)
        off = (
            set() if _store_holds_everything(objects) else released - _still_held(session, released)
        )
    result.switched_on, failures_on = _switch_holds(objects, on, True, progress)
    result.switched_off, failures_off = _switch_holds(objects, off - on, False, progress)
    result.failures = failures_on + failures_off
    return result
