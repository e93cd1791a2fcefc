"""Checking the tokens stored in the archive: each snapshot's own, its Merkle tree's with the
inclusion proof, and those anchoring the custody log's head; against the trust anchors the
verifier supplies, else those archived with each token, and the revocation data at hand.
What could not be checked is returned as a gap, never passed over. Getting tokens is in
``service``; checking one token's bytes in ``tokens``.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509
from sqlalchemy import select
from sqlalchemy.orm import Session

from evidence_store.index import Index
from evidence_store.index.models import (
    CustodyEvent,
    MerkleProof,
    MerkleTree,
    TimestampRecord,
)
from evidence_store.index.models.timestamp import (
    SUBJECT_CUSTODY_HEAD,
    SUBJECT_RENEWAL,
    SUBJECT_SNAPSHOT,
)
from evidence_store.objects import ObjectStore
from evidence_store.timestamps.anchors import (
    ArchivedAnchors,
    fingerprint,
)
from evidence_store.timestamps.merkle import (
    leaf_hash,
    merkle_root,
    verify_inclusion,
)
from evidence_store.timestamps.revocation import archived_crls
from evidence_store.timestamps.tokens import (
    TimestampError,
    VerifiedTimestamp,
    load_crls,
    verify_token,
)

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
