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

import hashlib
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from evidence_store import custody
from evidence_store.archive import EvidenceStore, put_verified
from evidence_store.errors import EvidenceError
from evidence_store.index import Index
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
    ArchivedAnchors,
    archive_trust_anchors,
    fingerprint,
    link_anchors,
)
from evidence_store.timestamps.client import TimestampToken, TsaAccess, request_timestamps
from evidence_store.timestamps.merkle import (
    inclusion_proofs,
    leaf_hash,
    merkle_root,
    verify_inclusion,
)
from evidence_store.timestamps.revocation import archived_crls
from evidence_store.timestamps.tokens import (
    TimestampError,
    VerifiedTimestamp,
    load_crls,
    parse_token,
    verify_token,
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


# -- verification ----------------------------------------------------------------------------
SUPPLIED = "supplied"  # anchors the verifier brought (configured trust_anchors)
ARCHIVED = "archived"  # anchors read from the archive itself: weaker, it vouches for itself
NO_ANCHORS = "no trust anchors supplied, and none archived with the token"
CHECK_TIMESTAMP = "timestamp"
CHECK_REVOCATION = "revocation"

# What could not be checked: (what: "token 12", "Merkle tree 3", "snapshot <id>"; the check;
# why; the snapshot it concerns, if one).
Gap = tuple[str, str, str, str | None]


@dataclass
class TokenCheck:
    """What the tokens of a set of snapshots showed: per snapshot, the verified times; what
    could not be checked and why; which trust anchors the tokens were checked against."""

    verified: int = 0
    problems: list[tuple[str | None, str]] = field(default_factory=list)  # snapshot, problem
    times: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # snapshot -> stamps
    unchecked: list[Gap] = field(default_factory=list)
    anchors: list[dict[str, Any]] = field(default_factory=list)  # source, fingerprint, subject


@dataclass(frozen=True)
class _Outcome:
    problem: str | None
    verified: VerifiedTimestamp | None = None
    renewed: tuple[str, ...] = ()
    source: str | None = None  # SUPPLIED or ARCHIVED: what the token was checked against
    unchecked: str | None = None  # why it could not be checked (no anchors at all)


def _stored_reply(objects: ObjectStore, record: TimestampRecord) -> tuple[str | None, bytes]:
    """(None, the reply) when the reply and chain objects hash to their names, else (why, b"").

    The token's signature does not cover its status wrapper, nor the chain file kept for
    `openssl ts -verify -untrusted`: their objects' digests do.
    """
    try:
        reply = objects.get(record.reply_sha256)
    except Exception as exc:  # missing or unreadable: reported like any other problem
        return f"timestamp reply sha256:{record.reply_sha256} unreadable: {exc}", b""
    stored = [(record.reply_sha256, reply, "timestamp reply")]
    if record.chain_sha256:
        try:
            stored.append((record.chain_sha256, objects.get(record.chain_sha256), "TSA chain"))
        except Exception as exc:
            return f"TSA chain sha256:{record.chain_sha256} unreadable: {exc}", b""
    for digest, data, what in stored:
        actual = hashlib.sha256(data).hexdigest()
        if actual != digest:
            return f"{what} object sha256:{digest} was altered (its bytes hash to {actual})", b""
    return None, reply


def _verify_reply(
    reply: bytes,
    record: TimestampRecord,
    anchors: Sequence[bytes],
    crls: Sequence[x509.CertificateRevocationList],
    existed_by: datetime | None,
) -> tuple[str | None, VerifiedTimestamp | None]:
    try:
        result = verify_token(
            reply, bytes.fromhex(record.imprint), anchors, crls=crls, existed_by=existed_by
        )
    except TimestampError as exc:
        return f"timestamp from {record.tsa_url}: {exc}", None
    if result.info.gen_time != record.gen_time:
        return "timestamp time differs between token and index", None
    return None, result


class _Checker:
    """Checks stored tokens together with the renewals that extend them (each once), against
    the supplied trust anchors or else those archived with each token, and against the given
    CRLs and the newest archived CRL of each issuer.

    A token's renewals must each cover its reply object's SHA-256 and verify themselves
    (with their own renewals); the earliest one's time is what the token is proven to have
    existed by, which a later key compromise of its TSA cannot undo. A broken renewal is a
    problem of the token it claims to renew.
    """

    def __init__(
        self,
        objects: ObjectStore,
        session: Session,
        anchors: Sequence[bytes] | None,
        crls: Sequence[bytes],
    ) -> None:
        self.objects = objects
        self.supplied = list(anchors or [])
        self.archived = None if self.supplied else ArchivedAnchors(objects, session)
        # Parsed once for all tokens: a big CA's CRL is megabytes.
        self.crls: list[x509.CertificateRevocationList] = []
        self.crl_problem: str | None = None
        for data in [*crls, *archived_crls(objects, session)]:
            try:
                self.crls += load_crls(data)
            except TimestampError as exc:  # a damaged archived CRL: no token can be cleared
                self.crl_problem = f"revocation data unreadable: {exc}"
        self.renewals: dict[int, list[TimestampRecord]] = defaultdict(list)
        query = select(TimestampRecord).where(TimestampRecord.subject == SUBJECT_RENEWAL)
        for renewal in session.scalars(query.order_by(TimestampRecord.id)):
            self.renewals[renewal.renews_id or 0].append(renewal)
        self.used: dict[tuple[str, str], dict[str, Any]] = {}
        self._done: dict[int, _Outcome] = {}

    def _anchors_for(self, record: TimestampRecord) -> tuple[list[bytes], str | None, list[str]]:
        if self.supplied:
            return self.supplied, SUPPLIED, []
        assert self.archived is not None
        found, problems = self.archived.for_token(record.id)
        return [a.pem for a in found if a.pem], ARCHIVED if found else None, problems

    def check(self, record: TimestampRecord) -> _Outcome:
        """The token's outcome: a problem, a verification, or why it could not be checked."""
        if record.id in self._done:
            return self._done[record.id]
        self._done[record.id] = _Outcome("renewals form a loop")
        renewed: list[VerifiedTimestamp] = []
        problems: list[str] = []
        for renewal in self.renewals.get(record.id, []):
            if renewal.imprint != record.reply_sha256:
                problems.append(
                    f"renewal timestamp {renewal.id} covers {renewal.imprint}, not this "
                    f"token's reply {record.reply_sha256}"
                )
                continue
            outcome = self.check(renewal)
            if outcome.problem:
                problems.append(f"renewal timestamp {renewal.id}: {outcome.problem}")
            elif outcome.verified is not None:
                renewed.append(outcome.verified)
            # An unchecked renewal proves nothing, and is not held against the token either.
        existed_by = min((v.gen_time for v in renewed), default=None)
        anchors, source, anchor_problems = self._anchors_for(record)
        problem, reply = _stored_reply(self.objects, record)
        verified: VerifiedTimestamp | None = None
        unchecked: str | None = None
        if problem is None and anchor_problems:
            problem = "; ".join(anchor_problems)
        elif problem is None and not anchors:
            unchecked = NO_ANCHORS
        elif problem is None:
            problem, verified = _verify_reply(reply, record, anchors, self.crls, existed_by)
            if problem is None and self.crl_problem:
                problem, verified = self.crl_problem, None
        if problems:  # a broken renewal is reported whatever the token's own result
            problem = "; ".join([problem, *problems] if problem else problems)
        if problem is None and verified is not None and source is not None:
            self._note_anchor(source, verified)
        times = tuple(sorted(v.gen_time.isoformat() for v in renewed))
        outcome = (
            _Outcome(problem, source=source)
            if problem
            else _Outcome(None, verified, times, source, unchecked)
        )
        self._done[record.id] = outcome
        return outcome

    def _note_anchor(self, source: str, verified: VerifiedTimestamp) -> None:
        fp = fingerprint(verified.chain[-1])
        use = self.used.setdefault(
            (source, fp),
            {
                "source": source,
                "fingerprint": fp,
                "subject": verified.trust_anchor_subject,
                "tokens": 0,
            },
        )
        use["tokens"] += 1

    def anchors_used(self) -> list[dict[str, Any]]:
        """Each anchor a token chained to: source, fingerprint, subject, number of tokens."""
        return [self.used[key] for key in sorted(self.used)]


def _stamp_entry(record: TimestampRecord, via: str, outcome: _Outcome) -> dict[str, Any]:
    verified = outcome.verified
    assert verified is not None
    entry: dict[str, Any] = {
        "token": record.id,
        "gen_time": record.gen_time.isoformat(),
        "tsa": record.tsa_url,
        "via": via,
        "qualified_claim": verified.info.qualified_claim,
        "anchor": {
            "source": outcome.source,
            "fingerprint": fingerprint(verified.chain[-1]),
            "subject": verified.trust_anchor_subject,
        },
    }
    if verified.revocation:
        entry["revocation"] = list(verified.revocation)
    if outcome.renewed:
        entry["renewed"] = list(outcome.renewed)
    return entry


def _revocation_gap(what: str, outcome: _Outcome, snapshot: str | None) -> list[Gap]:
    assert outcome.verified is not None
    unknown = outcome.verified.revocation_unknown
    return [(what, CHECK_REVOCATION, "; ".join(unknown), snapshot)] if unknown else []


def _tree_problem(objects: ObjectStore, tree: MerkleTree, proofs: list[MerkleProof]) -> str | None:
    """Check the stored leaf list against the tree's root and size."""
    try:
        listing = objects.get(tree.leaves_sha256).decode().split()
    except Exception as exc:
        return f"Merkle tree {tree.id}: leaf list sha256:{tree.leaves_sha256} unreadable: {exc}"
    if len(listing) != tree.tree_size:
        return f"Merkle tree {tree.id}: {len(listing)} leaves stored, tree size {tree.tree_size}"
    if merkle_root([leaf_hash(bytes.fromhex(s)) for s in listing]).hex() != tree.root:
        return f"Merkle tree {tree.id}: the stored leaves do not give the recorded root"
    for proof in proofs:
        if listing[proof.leaf_index] != proof.snapshot_id:
            return f"Merkle tree {tree.id}: leaf {proof.leaf_index} is not the indexed snapshot"
    return None


def proof_holds(snapshot_id: str, proof: MerkleProof, tree: MerkleTree) -> bool:
    """Whether a snapshot's stored audit path leads from its id to its tree's root."""
    try:
        path = [bytes.fromhex(h) for h in proof.path.split(",") if h]
        root = bytes.fromhex(tree.root)
    except ValueError:
        return False
    return verify_inclusion(
        leaf_hash(bytes.fromhex(snapshot_id)), proof.leaf_index, tree.tree_size, path, root
    )


def check_tokens(
    objects: ObjectStore,
    index: Index,
    snapshot_ids: Sequence[str],
    anchors: Sequence[bytes] | None,
    crls: Sequence[bytes] = (),
) -> TokenCheck:
    """Verify the tokens of these snapshots: their own, and their trees' with each proof;
    the TSA certificates' revocation status against ``crls`` and the archived CRLs too.

    Tokens are checked against ``anchors`` when given (and not empty), else against the
    anchors archived with each token. What cannot be checked is listed in ``unchecked``:
    tokens without any anchor, tokens whose revocation status no CRL shows, Merkle trees
    without a token, snapshots without any token.
    """
    result = TokenCheck()
    wanted = list(snapshot_ids)
    with index.session() as session:
        own = list(
            session.scalars(
                select(TimestampRecord)
                .where(TimestampRecord.snapshot_id.in_(wanted))
                .where(TimestampRecord.subject == SUBJECT_SNAPSHOT)
                .order_by(TimestampRecord.id)
            )
        )
        proofs = list(
            session.scalars(select(MerkleProof).where(MerkleProof.snapshot_id.in_(wanted)))
        )
        tree_ids = {p.tree_id for p in proofs}
        trees = {
            t.id: t for t in session.scalars(select(MerkleTree).where(MerkleTree.id.in_(tree_ids)))
        }
        tree_tokens = list(
            session.scalars(
                select(TimestampRecord)
                .where(TimestampRecord.tree_id.in_(tree_ids))
                .order_by(TimestampRecord.id)
            )
        )
        checker = _Checker(objects, session, anchors, crls)
    for record in own:
        outcome = checker.check(record)
        what = f"token {record.id}"
        if outcome.problem:
            result.problems.append((record.snapshot_id, outcome.problem))
            continue
        if outcome.verified is None:
            reason = outcome.unchecked or "not verified"
            result.unchecked.append((what, CHECK_TIMESTAMP, reason, record.snapshot_id))
            continue
        result.verified += 1
        result.unchecked += _revocation_gap(what, outcome, record.snapshot_id)
        result.times.setdefault(record.snapshot_id or "", []).append(
            _stamp_entry(record, "token", outcome)
        )
    tree_ok: dict[int, list[tuple[TimestampRecord, _Outcome]]] = {tid: [] for tid in tree_ids}
    by_tree: dict[int, list[MerkleProof]] = {tid: [] for tid in tree_ids}
    for proof in proofs:
        by_tree[proof.tree_id].append(proof)
    tree_problems: dict[int, str] = {}
    for tree_id in tree_ids:
        problem = _tree_problem(objects, trees[tree_id], by_tree[tree_id])
        if problem:
            tree_problems[tree_id] = problem
    stamped_trees: set[int] = set()
    for record in tree_tokens:
        assert record.tree_id is not None
        stamped_trees.add(record.tree_id)
        outcome = checker.check(record)
        what = f"token {record.id} (Merkle tree {record.tree_id})"
        if outcome.problem:
            tree_problems.setdefault(record.tree_id, f"Merkle root token: {outcome.problem}")
        elif outcome.verified is None:
            reason = outcome.unchecked or "not verified"
            result.unchecked.append((what, CHECK_TIMESTAMP, reason, None))
        else:
            result.verified += 1
            result.unchecked += _revocation_gap(what, outcome, None)
            tree_ok[record.tree_id].append((record, outcome))
    for tree_id in sorted(tree_ids - stamped_trees):
        tree = trees[tree_id]
        result.unchecked.append(
            (
                f"Merkle tree {tree_id}",
                CHECK_TIMESTAMP,
                f"the tree's root ({tree.tree_size} snapshots) has no token: no TSA stamped it "
                "yet (`evidence timestamp retry`)",
                None,
            )
        )
    for proof in proofs:
        tree = trees[proof.tree_id]
        if not proof_holds(proof.snapshot_id, proof, tree):
            result.problems.append(
                (proof.snapshot_id, f"Merkle inclusion proof does not lead to root {tree.root}")
            )
        elif proof.tree_id in tree_problems:
            result.problems.append((proof.snapshot_id, tree_problems[proof.tree_id]))
        else:
            via = f"merkle tree {tree.id} leaf {proof.leaf_index} of {tree.tree_size}"
            for record, outcome in tree_ok[proof.tree_id]:
                result.times.setdefault(proof.snapshot_id, []).append(
                    _stamp_entry(record, via, outcome)
                )
    with_token = {r.snapshot_id for r in own} | {p.snapshot_id for p in proofs}
    result.unchecked += [
        (
            f"snapshot {sid}",
            CHECK_TIMESTAMP,
            "no timestamp token: no TSA stamped it (`evidence timestamp retry`)",
            sid,
        )
        for sid in wanted
        if sid not in with_token
    ]
    result.anchors = checker.anchors_used()
    return result


@dataclass
class AnchorCheck:
    """What the timestamps of the custody log's heads showed."""

    verified: int = 0
    problems: list[str] = field(default_factory=list)
    unchecked: list[Gap] = field(default_factory=list)
    anchors: list[dict[str, Any]] = field(default_factory=list)  # as in TokenCheck


def custody_anchor_check(
    objects: ObjectStore,
    session: Session,
    anchors: Sequence[bytes] | None,
    crls: Sequence[bytes] = (),
) -> AnchorCheck:
    """Each anchored custody entry must still be in the log with the hash its token covers,
    and the token must verify (against ``anchors``, else those archived with it)."""
    result = AnchorCheck()
    records = list(
        session.scalars(
            select(TimestampRecord)
            .where(TimestampRecord.subject == SUBJECT_CUSTODY_HEAD)
            .order_by(TimestampRecord.id)
        )
    )
    checker = _Checker(objects, session, anchors, crls)
    for record in records:
        entry = session.get(CustodyEvent, record.custody_event_id)
        if entry is None:
            when = record.gen_time.isoformat()
            result.problems.append(
                f"custody entry {record.custody_event_id}, anchored by a timestamp at {when}, "
                "is gone from the log"
            )
            continue
        if entry.entry_hash != record.imprint:
            result.problems.append(
                f"custody entry {entry.id} has hash {entry.entry_hash}, but the timestamp of "
                f"{record.gen_time.isoformat()} covers {record.imprint}"
            )
            continue
        outcome = checker.check(record)
        what = f"token {record.id} (custody entry {entry.id})"
        if outcome.problem:
            result.problems.append(f"custody anchor of entry {entry.id}: {outcome.problem}")
        elif outcome.verified is None:
            reason = outcome.unchecked or "not verified"
            result.unchecked.append((what, CHECK_TIMESTAMP, reason, None))
        else:
            result.verified += 1
            result.unchecked += _revocation_gap(what, outcome, None)
    result.anchors = checker.anchors_used()
    return result


def check_custody_anchors(
    objects: ObjectStore,
    session: Session,
    anchors: Sequence[bytes] | None,
    crls: Sequence[bytes] = (),
) -> tuple[int, list[str]]:
    """(anchors verified, problems) of :func:`custody_anchor_check`, for older callers; what
    it could not check is only in :func:`custody_anchor_check`'s result."""
    result = custody_anchor_check(objects, session, anchors, crls)
    return result.verified, result.problems
