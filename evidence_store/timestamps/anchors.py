"""Archiving the TSA trust anchors configured when tokens are requested.

A token is checked against trust anchors: CA (or TSA unit) certificates the verifier trusts.
Kept only as PEM files on the machine that requested the tokens, they are easily lost, and a
verifier elsewhere could not check anything. So each configured anchor certificate is stored
as an object (one PEM certificate), indexed in ``trust_anchors`` with its subject and
fingerprint, and each token is linked to the anchor its chain ended at
(``timestamp_trust_anchors``).

An archived anchor comes from the archive it is meant to vouch for: whoever could rewrite the
archive could replace both. Verification therefore prefers anchors the verifier supplies and
says, per token, which kind it used.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select
from sqlalchemy.orm import Session

from evidence_store import custody
from evidence_store.archive import EvidenceStore, put_verified
from evidence_store.index.models.timestamp import TimestampAnchor, TrustAnchor
from evidence_store.objects import ObjectStore
from evidence_store.timestamps.tokens import TimestampError, load_certificates
from schemas import utc_now

ANCHOR_MEDIA_TYPE = "application/x-pem-file"


def fingerprint(der: bytes) -> str:
    """The SHA-256 of a certificate's DER, as hex (what ``openssl x509 -fingerprint
    -sha256`` prints, without the colons)."""
    return hashlib.sha256(der).hexdigest()


def archive_trust_anchors(evidence: EvidenceStore, anchors: Sequence[bytes]) -> dict[str, int]:
    """Store and index every certificate in ``anchors`` (PEM bundles or DER) not archived yet.

    Returns the archived anchors' ids by fingerprint. Each newly archived anchor gets a
    ``trust-anchor-archived`` custody entry, which records when it was first seen.
    """
    certificates: dict[str, x509.Certificate] = {}
    for data in anchors:
        for cert in load_certificates(data):
            certificates.setdefault(fingerprint(cert.public_bytes(Encoding.DER)), cert)
    if not certificates:
        return {}
    with evidence.index.session() as session:
        query = select(TrustAnchor.fingerprint, TrustAnchor.id)
        rows = session.execute(query.where(TrustAnchor.fingerprint.in_(certificates)))
        known = {fp: anchor_id for fp, anchor_id in rows}
    missing = {fp: cert for fp, cert in certificates.items() if fp not in known}
    if not missing:
        return known
    stored = {
        fp: put_verified(evidence.objects, cert.public_bytes(Encoding.PEM), ANCHOR_MEDIA_TYPE)
        for fp, cert in missing.items()
    }
    evidence.objects.flush()
    with evidence.index.writing(custody.CUSTODY_LOCK) as session:
        # Looked up again under the lock: another process may have archived them meanwhile.
        for fp, anchor_id in session.execute(
            select(TrustAnchor.fingerprint, TrustAnchor.id).where(
                TrustAnchor.fingerprint.in_(missing)
            )
        ):
            known[fp] = anchor_id
        for fp, cert in missing.items():
            if fp in known:
                continue
            row = TrustAnchor(
                fingerprint=fp,
                subject=cert.subject.rfc4514_string(),
                object_sha256=stored[fp].sha256,
                first_seen=utc_now(),
            )
            session.add(row)
            session.flush()
            known[fp] = row.id
            custody.record(
                session,
                action="trust-anchor-archived",
                actor=evidence.actor,
                details={
                    "anchor": row.id,
                    "subject": row.subject,
                    "fingerprint": fp,
                    "object_sha256": row.object_sha256,
                },
            )
    return known


def link_anchors(
    session: Session, timestamp_id: int, used: str | None, archived: dict[str, int]
) -> None:
    """Link a token to the archived anchor its chain ended at (``used``: its fingerprint);
    when that is none of them (a re-issued anchor), to every anchor configured then."""
    ids = [archived[used]] if used in archived else sorted(set(archived.values()))
    session.add_all(TimestampAnchor(timestamp_id=timestamp_id, anchor_id=i) for i in ids)


def anchor_object_digests(session: Session) -> set[str]:
    """The objects of the archived anchors (for ``store sweep``: they are referenced)."""
    return set(session.scalars(select(TrustAnchor.object_sha256)))


@dataclass(frozen=True)
class ArchivedAnchor:
    """An archived anchor as read back for verification."""

    id: int
    fingerprint: str
    subject: str
    pem: bytes | None  # None when its object is missing or altered
    problem: str | None = None


class ArchivedAnchors:
    """The archived anchors and the links of tokens to them, read once per verification."""

    def __init__(self, objects: ObjectStore, session: Session) -> None:
        self.by_id: dict[int, ArchivedAnchor] = {}
        for row in session.scalars(select(TrustAnchor).order_by(TrustAnchor.id)):
            self.by_id[row.id] = _read_anchor(objects, row)
        self.links: dict[int, list[int]] = {}
        for timestamp_id, anchor_id in session.execute(
            select(TimestampAnchor.timestamp_id, TimestampAnchor.anchor_id)
        ):
            self.links.setdefault(timestamp_id, []).append(anchor_id)

    def for_token(self, timestamp_id: int) -> tuple[list[ArchivedAnchor], list[str]]:
        """The anchors archived with a token (every archived anchor for a token from before
        anchors were archived), and problems with their objects."""
        ids = self.links.get(timestamp_id) or list(self.by_id)
        anchors = [self.by_id[i] for i in ids if i in self.by_id]
        return [a for a in anchors if a.pem is not None], [a.problem for a in anchors if a.problem]


def _read_anchor(objects: ObjectStore, row: TrustAnchor) -> ArchivedAnchor:
    def damaged(reason: str) -> ArchivedAnchor:
        problem = f"archived trust anchor {row.id} ({row.subject}) {reason}"
        return ArchivedAnchor(row.id, row.fingerprint, row.subject, None, problem)

    try:
        pem = objects.get(row.object_sha256)
    except Exception as exc:  # missing or unreadable: the anchor cannot be used
        return damaged(f"object sha256:{row.object_sha256} unreadable: {exc}")
    if hashlib.sha256(pem).hexdigest() != row.object_sha256:
        return damaged(f"object sha256:{row.object_sha256} was altered")
    try:
        [cert] = load_certificates(pem)
    except (TimestampError, ValueError):
        return damaged("is not one PEM certificate")
    if fingerprint(cert.public_bytes(Encoding.DER)) != row.fingerprint:
        return damaged("does not have its indexed fingerprint")
    return ArchivedAnchor(row.id, row.fingerprint, row.subject, pem)
