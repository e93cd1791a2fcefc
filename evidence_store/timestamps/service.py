"""Timestamping archived snapshots, and checking their tokens.

After snapshots are committed they are timestamped in one of two ways, chosen per source
(:meth:`TimestampSettings.mode_for`):

- ``snapshot``: one token per snapshot, over its id (the manifest's SHA-256);
- ``merkle``: one RFC 9162 Merkle tree over the ids of the run's snapshots, committed with an
  inclusion proof per snapshot, then one token over the tree's root. For bulk sources this
  costs one TSA request per run instead of one per snapshot.

Each TSA reply (``.tsr``) and the certificates its token carries (a PEM bundle, for
``openssl ts -verify -untrusted``) are stored as objects and indexed. When no TSA answers, the
snapshot (or tree) stays untimestamped: it is reported, logged in the custody log and listed by
`evidence timestamp retry`, which asks again later. Nothing is dropped silently.

The custody log's head is timestamped the same way (:func:`anchor_custody_head`), so that
entries removed from its end after an anchor are detected.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import insert, select

from evidence_store import custody
from evidence_store.archive import EvidenceStore, put_verified
from evidence_store.errors import EvidenceError
from evidence_store.index.models import (
    CustodyEvent,
    MerkleProof,
    MerkleTree,
    Snapshot,
    TimestampRecord,
)
from evidence_store.index.models.timestamp import (
    SUBJECT_CUSTODY_HEAD,
    SUBJECT_EXHIBIT,
    SUBJECT_MERKLE_ROOT,
    SUBJECT_RENEWAL,
    SUBJECT_SNAPSHOT,
)
from evidence_store.objects import ObjectStore
from evidence_store.support import ProgressCallback
from evidence_store.timestamps.anchors import (
    archive_trust_anchors,
    fingerprint,
    link_anchors,
)
from evidence_store.timestamps.client import TimestampToken, TsaAccess, request_timestamps
from evidence_store.timestamps.merkle import (
    inclusion_proofs,
    leaf_hash,
    merkle_root,
)
from evidence_store.timestamps.tokens import (
    TimestampError,
    parse_token,
)
from schemas import utc_now

REPLY_MEDIA_TYPE = "application/timestamp-reply"
CHAIN_MEDIA_TYPE = "application/pem-certificate-chain"
LEAVES_MEDIA_TYPE = "text/vnd.dsa-evidence.merkle-leaves"
MODES = ("snapshot", "merkle")


@dataclass(frozen=True)
class TimestampSettings:
    """Which TSAs to ask, how long to wait, which CAs to trust, and how to timestamp a source."""

    tsa_urls: tuple[str, ...] = ()
    trust_anchors: tuple[Path, ...] = ()
    timeout: float = 10.0
    mode: str = "snapshot"
    source_modes: Mapping[str, str] = field(default_factory=dict)
    tokens: int = 1  # TSAs whose tokens are kept per digest (the first that answer)
    access: Mapping[str, TsaAccess] = field(default_factory=dict)  # credentials by TSA URL
    crls: tuple[Path, ...] = ()  # CRL files checked when tokens are verified
    # After this many snapshots in a row that no TSA stamped, the rest of the pass is not
    # asked: with the TSAs down, a nightly run of thousands of snapshots would otherwise wait
    # out every time-out, one snapshot after the other.
    give_up_after: int = 3

    @property
    def enabled(self) -> bool:
        return bool(self.tsa_urls)

    def anchors(self) -> list[bytes]:
        return [path.read_bytes() for path in self.trust_anchors]

    def crl_data(self) -> list[bytes]:
        return [path.read_bytes() for path in self.crls]

    def mode_for(self, source: str | None) -> str:
        """``snapshot`` or ``merkle``: the source's own choice, else the default."""
        if source is not None and source in self.source_modes:
            return self.source_modes[source]
        return self.mode


@dataclass
class TimestampRun:
    """What one timestamping pass did."""

    timestamped: list[tuple[str, str, str]] = field(default_factory=list)  # id, time, tsa
    failed: list[tuple[str, str]] = field(default_factory=list)  # id, reason
    trees: list[int] = field(default_factory=list)  # Merkle trees built or retried


# -- storing tokens --------------------------------------------------------------------------
def _chain_pem(token: TimestampToken) -> bytes | None:
    certificates = token.info.certificates
    if not certificates:
        return None
    return b"".join(
        x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM) for der in certificates
    )


def _put_token(evidence: EvidenceStore, token: TimestampToken) -> dict[str, Any]:
    """Store the reply and its certificate chain, durably, before any row names them."""
    reply = put_verified(evidence.objects, token.response_der, REPLY_MEDIA_TYPE)
    chain = _chain_pem(token)
    chain_sha256 = put_verified(evidence.objects, chain, CHAIN_MEDIA_TYPE).sha256 if chain else None
    evidence.objects.flush()
    return {"reply_sha256": reply.sha256, "reply_size": reply.size, "chain_sha256": chain_sha256}


def _request(
    evidence: EvidenceStore, digest_hex: str, config: TimestampSettings
) -> list[TimestampToken]:
    anchors = config.anchors() or None
    return request_timestamps(
        bytes.fromhex(digest_hex),
        config.tsa_urls,
        want=config.tokens,
        timeout=config.timeout,
        trust_anchors=anchors,
        access=config.access,
    )


def _token_details(token: TimestampToken, objects: dict[str, Any]) -> dict[str, Any]:
    details = {
        "tsa": token.tsa_url,
        "gen_time": token.gen_time.isoformat(),
        "reply_sha256": objects["reply_sha256"],
    }
    if token.skipped:
        details["skipped"] = [list(s) for s in token.skipped]
    return details


def _log_failure(evidence: EvidenceStore, exc: TimestampError, **where: Any) -> None:
    with evidence.index.writing(custody.CUSTODY_LOCK) as session:
        custody.record(
            session,
            action="timestamp-failed",
            actor=evidence.actor,
            details={"failures": [list(f) for f in exc.failures], **where},
            snapshot_id=where.get("snapshot_id"),
        )


def _stamp(
    evidence: EvidenceStore,
    digest_hex: str,
    config: TimestampSettings,
    *,
    subject: dict[str, Any],
    action: str,
    snapshot_id: str | None = None,
    details: dict[str, Any] | None = None,
) -> TimestampToken:
    """Get a token over ``digest_hex`` (one per TSA, up to ``config.tokens``), store them and
    index each with its custody entry; returns the first.

    ``subject`` names what the digest is (the TimestampRecord's subject columns). When no TSA
    answers, the failure is logged in the custody log and the TimestampError raised.
    """
    try:
        tokens = _request(evidence, digest_hex, config)
    except TimestampError as exc:
        where = {"snapshot_id": snapshot_id} if snapshot_id else {"digest": digest_hex}
        _log_failure(evidence, exc, **where, **(details or {}))
        raise
    stored = [_put_token(evidence, token) for token in tokens]
    # The anchors the tokens were checked against go into the archive with them, so that a
    # verifier without the original files can still check them (docs/timestamps.md).
    archived = archive_trust_anchors(evidence, config.anchors())
    with evidence.index.writing(custody.CUSTODY_LOCK) as session:
        for token, objects in zip(tokens, stored, strict=True):
            record = TimestampRecord(
                imprint=digest_hex,
                tsa_url=token.tsa_url,
                gen_time=token.gen_time,
                serial_number=str(token.serial_number),
                created_at=utc_now(),
                **subject,
                **objects,
            )
            session.add(record)
            session.flush()
            if archived:
                used = fingerprint(token.verified.chain[-1]) if token.verified else None
                link_anchors(session, record.id, used, archived)
            custody.record(
                session,
                action=action,
                actor=evidence.actor,
                snapshot_id=snapshot_id,
                details=(details or {}) | _token_details(token, objects),
            )
    return tokens[0]


# -- per snapshot ----------------------------------------------------------------------------
def timestamp_snapshots(
    evidence: EvidenceStore,
    snapshot_ids: Sequence[str],
    config: TimestampSettings,
    progress: ProgressCallback | None = None,
) -> TimestampRun:
    """Ask the TSAs for a token over each snapshot id; store and index every token granted.

    After ``config.give_up_after`` failures in a row the remaining snapshots are not asked;
    they are failed with that reason (and logged), for a later retry.
    """
    run = TimestampRun()
    in_a_row = 0
    for position, snapshot_id in enumerate(snapshot_ids):
        if in_a_row >= config.give_up_after:
            rest = list(snapshot_ids[position:])
            reason = (
                f"not asked: the TSAs failed {in_a_row} times in a row just before "
                f"({run.failed[-1][1]})"
            )
            _log_skipped(evidence, rest, reason)
            run.failed.extend((sid, reason) for sid in rest)
            if progress:
                progress(len(rest))
            break
        try:
            token = _stamp(
                evidence,
                snapshot_id,
                config,
                subject={"subject": SUBJECT_SNAPSHOT, "snapshot_id": snapshot_id},
                action="timestamped",
                snapshot_id=snapshot_id,
            )
        except TimestampError as exc:
            run.failed.append((snapshot_id, str(exc)))
            in_a_row += 1
        else:
            in_a_row = 0
            run.timestamped.append((snapshot_id, token.gen_time.isoformat(), token.tsa_url))
        if progress:
            progress(1)
    return run


def _log_skipped(evidence: EvidenceStore, snapshot_ids: list[str], reason: str) -> None:
    """One ``timestamp-failed`` entry per snapshot not asked, in one transaction."""
    with evidence.index.writing(custody.CUSTODY_LOCK) as session:
        custody.append(
            session,
            [
                custody.Event(
                    action="timestamp-failed",
                    actor=evidence.actor,
                    snapshot_id=sid,
                    details={"snapshot_id": sid, "not_asked": reason},
                )
                for sid in snapshot_ids
            ],
        )


# -- per run: Merkle trees -------------------------------------------------------------------
def build_tree(
    evidence: EvidenceStore, snapshot_ids: Sequence[str], *, run_id: str | None = None
) -> int:
    """Commit a Merkle tree over these snapshot ids (in this order) with a proof for each.

    The leaves are stored as an object first (one id per line), so that anyone holding it can
    rebuild the tree and every proof; returns the tree's id.
    """
    if not snapshot_ids:
        raise EvidenceError("a Merkle tree needs at least one snapshot")
    if len(set(snapshot_ids)) != len(snapshot_ids):
        raise EvidenceError("a snapshot may appear only once in a Merkle tree")
    leaves = [leaf_hash(bytes.fromhex(sid)) for sid in snapshot_ids]
    root = merkle_root(leaves).hex()
    proofs = inclusion_proofs(leaves)
    listing = "".join(f"{sid}\n" for sid in snapshot_ids).encode()
    stored = put_verified(evidence.objects, listing, LEAVES_MEDIA_TYPE)
    evidence.objects.flush()
    with evidence.index.writing(custody.CUSTODY_LOCK) as session:
        already = session.scalars(
            select(MerkleProof.snapshot_id).where(MerkleProof.snapshot_id.in_(snapshot_ids))
        ).first()
        if already is not None:
            raise EvidenceError(f"snapshot {already} is already in a Merkle tree")
        tree = MerkleTree(
            root=root,
            tree_size=len(snapshot_ids),
            run_id=run_id,
            leaves_sha256=stored.sha256,
            created_at=utc_now(),
        )
        session.add(tree)
        session.flush()
        session.execute(
            insert(MerkleProof),
            [
                {
                    "snapshot_id": sid,
                    "tree_id": tree.id,
                    "leaf_index": position,
                    "path": ",".join(h.hex() for h in proof),
                }
                for position, (sid, proof) in enumerate(zip(snapshot_ids, proofs, strict=True))
            ],
        )
        custody.record(
            session,
            action="merkle-tree",
            actor=evidence.actor,
            details={
                "tree": tree.id,
                "root": root,
                "tree_size": len(snapshot_ids),
                "leaves_sha256": stored.sha256,
                "run": run_id,
            },
        )
        return tree.id


def timestamp_tree(
    evidence: EvidenceStore,
    tree_id: int,
    config: TimestampSettings,
    progress: ProgressCallback | None = None,
) -> TimestampRun:
    """Ask the TSAs for a token over a tree's root; on success every leaf is timestamped."""
    run = TimestampRun(trees=[tree_id])
    with evidence.index.session() as session:
        tree = session.get(MerkleTree, tree_id)
        if tree is None:
            raise EvidenceError(f"no Merkle tree {tree_id}")
        root = tree.root
        leaves = list(
            session.scalars(
                select(MerkleProof.snapshot_id)
                .where(MerkleProof.tree_id == tree_id)
                .order_by(MerkleProof.leaf_index)
            )
        )
    try:
        token = _stamp(
            evidence,
            root,
            config,
            subject={"subject": SUBJECT_MERKLE_ROOT, "tree_id": tree_id},
            action="timestamped",
            details={"tree": tree_id, "root": root, "tree_size": len(leaves)},
        )
    except TimestampError as exc:
        run.failed.extend((sid, str(exc)) for sid in leaves)
    else:
        when = token.gen_time.isoformat()
        run.timestamped.extend((sid, when, token.tsa_url) for sid in leaves)
    if progress:
        progress(len(leaves))
    return run


def timestamp_new(
    evidence: EvidenceStore,
    snapshot_ids: Sequence[str],
    config: TimestampSettings,
    *,
    source: str | None = None,
    run_id: str | None = None,
) -> TimestampRun:
    """Timestamp a run's new snapshots the way their source asks: per snapshot or per run."""
    if not snapshot_ids:
        return TimestampRun()
    if config.mode_for(source) == "merkle":
        return timestamp_tree(evidence, build_tree(evidence, snapshot_ids, run_id=run_id), config)
    return timestamp_snapshots(evidence, snapshot_ids, config)


# -- what is still open ----------------------------------------------------------------------
def untimestamped(evidence: EvidenceStore) -> list[str]:
    """Ids of snapshots no token covers (directly or through a tree), oldest first."""
    with evidence.index.session() as session:
        stamped = select(TimestampRecord.snapshot_id).where(
            TimestampRecord.snapshot_id.is_not(None)
        )
        stamped_trees = select(TimestampRecord.tree_id).where(TimestampRecord.tree_id.is_not(None))
        in_stamped_tree = select(MerkleProof.snapshot_id).where(
            MerkleProof.tree_id.in_(stamped_trees)
        )
        query = (
            select(Snapshot.id)
            .where(Snapshot.id.not_in(stamped), Snapshot.id.not_in(in_stamped_tree))
            .order_by(Snapshot.archived_at, Snapshot.id)
        )
        return list(session.scalars(query))


def untimestamped_trees(evidence: EvidenceStore) -> list[int]:
    """Merkle trees whose root no token covers yet."""
    with evidence.index.session() as session:
        stamped = select(TimestampRecord.tree_id).where(TimestampRecord.tree_id.is_not(None))
        return list(
            session.scalars(
                select(MerkleTree.id).where(MerkleTree.id.not_in(stamped)).order_by(MerkleTree.id)
            )
        )


def retry(
    evidence: EvidenceStore,
    config: TimestampSettings,
    progress: ProgressCallback | None = None,
) -> TimestampRun:
    """Ask again for every untimestamped tree root, then for every loose snapshot.

    ``progress`` is called with the number of snapshots each step settled (stamped or not);
    they add up to ``len(untimestamped(evidence))``.
    """
    run = TimestampRun()
    for tree_id in untimestamped_trees(evidence):
        part = timestamp_tree(evidence, tree_id, config, progress)
        run.timestamped += part.timestamped
        run.failed += part.failed
        run.trees += part.trees
    with evidence.index.session() as session:
        in_trees = set(session.scalars(select(MerkleProof.snapshot_id)))
    loose = [sid for sid in untimestamped(evidence) if sid not in in_trees]
    part = timestamp_snapshots(evidence, loose, config, progress)
    run.timestamped += part.timestamped
    run.failed += part.failed
    return run


# -- renewal (archive timestamps) ------------------------------------------------------------
@dataclass
class RenewalRun:
    """What one renewal pass did: (renewed record id, new genTime) and failures."""

    renewed: list[tuple[int, str]] = field(default_factory=list)
    failed: list[tuple[int, str]] = field(default_factory=list)
    not_due: int = 0


def renew_timestamps(
    evidence: EvidenceStore,
    config: TimestampSettings,
    *,
    expiring_within: timedelta | None = timedelta(days=365),
    progress: ProgressCallback | None = None,
    on_total: Callable[[int], None] | None = None,
) -> RenewalRun:
    """Timestamp the reply of every current token (one no renewal covers yet) whose TSA
    certificate expires within ``expiring_within`` (every current token with None).

    The new token's imprint is the SHA-256 of the old reply object, so
    ``openssl ts -verify -data old.tsr -in renewal.tsr`` checks it. It proves the old token
    existed at its time: algorithms may weaken and keys may leak later, the proof stands.
    The pass stops at the first digest no TSA stamps (the TSAs are down: ask again later).
    """
    run = RenewalRun()
    renewed = select(TimestampRecord.renews_id).where(TimestampRecord.renews_id.is_not(None))
    with evidence.index.session() as session:
        current = list(
            session.scalars(
                select(TimestampRecord)
                .where(TimestampRecord.id.not_in(renewed))
                .order_by(TimestampRecord.id)
            )
        )
    if on_total:
        on_total(len(current))
    now = utc_now()
    for record in current:
        if progress:
            progress(1)
        if expiring_within is not None and not _expires_within(
            evidence.objects, record, now + expiring_within
        ):
            run.not_due += 1
            continue
        try:
            token = _stamp(
                evidence,
                record.reply_sha256,
                config,
                subject={"subject": SUBJECT_RENEWAL, "renews_id": record.id},
                action="timestamp-renewed",
                snapshot_id=record.snapshot_id,
                details={"renews": record.id, "renewed_reply_sha256": record.reply_sha256},
            )
        except TimestampError as exc:
            run.failed.append((record.id, str(exc)))
            break
        run.renewed.append((record.id, token.gen_time.isoformat()))
    return run


def _expires_within(objects: ObjectStore, record: TimestampRecord, deadline: datetime) -> bool:
    """Whether the certificate that signed this token ends before ``deadline`` (or is unknown)."""
    try:
        der = parse_token(objects.get(record.reply_sha256)).tsa_certificate
    except Exception:  # unreadable: renewing it cannot hurt, and verify reports it anyway
        return True
    if der is None:
        return True
    return x509.load_der_x509_certificate(der).not_valid_after_utc <= deadline


# -- exhibit bundles -------------------------------------------------------------------------
def timestamp_exhibit(
    evidence: EvidenceStore, digest_hex: str, config: TimestampSettings, details: dict[str, Any]
) -> TimestampToken:
    """Timestamp an exhibit bundle's digest; the token is stored, indexed (subject
    ``exhibit-bundle``) and logged (``timestamped``, with ``details`` naming the bundle).

    Raises TimestampError when no TSA answers (the failure is logged too).
    """
    return _stamp(
        evidence,
        digest_hex,
        config,
        subject={"subject": SUBJECT_EXHIBIT},
        action="timestamped",
        details={"exhibit_bundle": digest_hex, **details},
    )


# -- the custody log's head ------------------------------------------------------------------
def anchor_custody_head(evidence: EvidenceStore, config: TimestampSettings) -> dict[str, Any]:
    """Timestamp the custody log's current head entry; then log that it was anchored.

    A later removal of entries from the end of the log cannot hide behind a consistent chain:
    the anchored entry must still be there with the same hash. Raises TimestampError when no
    TSA answers (the failure is logged too).
    """
    with evidence.index.session() as session:
        head = session.scalars(
            select(CustodyEvent).order_by(CustodyEvent.id.desc()).limit(1)
        ).first()
        if head is None:
            raise EvidenceError("the custody log is empty: nothing to anchor")
        head_id, head_hash = head.id, head.entry_hash
    token = _stamp(
        evidence,
        head_hash,
        config,
        subject={"subject": SUBJECT_CUSTODY_HEAD, "custody_event_id": head_id},
        action="custody-anchored",
        details={"entry": head_id, "entry_hash": head_hash},
    )
    return {
        "entry": head_id,
        "entry_hash": head_hash,
        "gen_time": token.gen_time.isoformat(),
        "tsa": token.tsa_url,
    }
