"""RFC 3161 timestamp tokens, and the Merkle trees that let one token cover many snapshots.

A token's ``imprint`` is the SHA-256 it was granted over. Its ``subject`` says what that is:

- ``snapshot``: a snapshot id (the manifest's SHA-256), ``snapshot_id`` set;
- ``merkle-root``: the root of a run's Merkle tree over snapshot ids, ``tree_id`` set; each
  snapshot of the tree has a ``MerkleProof``;
- ``custody-head``: the entry hash of the custody log's head, ``custody_event_id`` set;
- ``renewal``: the SHA-256 of another token's reply object (its ``reply_sha256``),
  ``renews_id`` set: an archive timestamp that proves the older token existed by then;
- ``exhibit-bundle``: the digest of an exhibit bundle's SHA256SUMS file (no other column set;
  the custody entry names the bundle).

A snapshot is timestamped when it has a token of its own or a proof into a timestamped tree.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from evidence_store.index.models.base import Base

SUBJECT_SNAPSHOT = "snapshot"
SUBJECT_MERKLE_ROOT = "merkle-root"
SUBJECT_CUSTODY_HEAD = "custody-head"
SUBJECT_RENEWAL = "renewal"
SUBJECT_EXHIBIT = "exhibit-bundle"


class TimestampRecord(Base):
    """One token a TSA granted, stored as the whole reply (``.tsr``) in the object store."""

    __tablename__ = "timestamps"

    id: Mapped[int] = mapped_column(primary_key=True)
    subject: Mapped[str] = mapped_column(String(20), default=SUBJECT_SNAPSHOT)
    imprint: Mapped[str] = mapped_column(String(64), index=True)
    snapshot_id: Mapped[str | None] = mapped_column(ForeignKey("snapshots.id"), index=True)
    tree_id: Mapped[int | None] = mapped_column(ForeignKey("merkle_trees.id"), index=True)
    custody_event_id: Mapped[int | None] = mapped_column(ForeignKey("custody_events.id"))
    renews_id: Mapped[int | None] = mapped_column(ForeignKey("timestamps.id"), index=True)
    tsa_url: Mapped[str] = mapped_column(Text)
    gen_time: Mapped[datetime]
    serial_number: Mapped[str] = mapped_column(String(64))  # up to 160 bits: kept as text
    reply_sha256: Mapped[str] = mapped_column(String(64))  # the TimeStampResp object (.tsr)
    reply_size: Mapped[int] = mapped_column(BigInteger)
    # The certificates the token carries, as a PEM bundle object (for `openssl ts -untrusted`).
    chain_sha256: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]


class MerkleTree(Base):
    """An RFC 9162 tree over the ids of a run's snapshots, in archive order."""

    __tablename__ = "merkle_trees"

    id: Mapped[int] = mapped_column(primary_key=True)
    root: Mapped[str] = mapped_column(String(64), index=True)
    tree_size: Mapped[int]
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id"), index=True)
    # The leaves as an object: one snapshot id per line, in leaf order. Anyone holding it can
    # rebuild the tree and every proof.
    leaves_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]


class MerkleProof(Base):
    """A snapshot's place in a tree: its leaf index and audit path (hex hashes, leaf upwards)."""

    __tablename__ = "merkle_proofs"

    snapshot_id: Mapped[str] = mapped_column(ForeignKey("snapshots.id"), primary_key=True)
    tree_id: Mapped[int] = mapped_column(ForeignKey("merkle_trees.id"), index=True)
    leaf_index: Mapped[int]
    path: Mapped[str] = mapped_column(Text)  # comma-separated hex; empty for a one-leaf tree


class RevocationList(Base):
    """A CRL fetched from a TSA certificate's distribution point, archived as an object.

    Kept so that a token's revocation status can be shown years later, when the CA may have
    stopped publishing (ETSI long-term validation). ``issuer`` is the CRL issuer's RFC 4514
    name; ``this_update`` says from when the CRL speaks.
    """

    __tablename__ = "revocation_lists"

    id: Mapped[int] = mapped_column(primary_key=True)
    issuer: Mapped[str] = mapped_column(Text, index=True)
    url: Mapped[str] = mapped_column(Text)
    crl_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    this_update: Mapped[datetime]
    next_update: Mapped[datetime | None]
    fetched_at: Mapped[datetime]


class TrustAnchor(Base):
    """A TSA trust anchor (CA or TSA certificate) that was configured when tokens were
    requested, archived as an object (one PEM certificate) so that a verifier without the
    original files can still check the tokens against it.

    ``fingerprint`` is the SHA-256 of the certificate's DER; ``object_sha256`` that of the
    stored PEM object. What the archive itself holds proves less than an anchor the verifier
    brings: the report says which of the two each token was checked against.
    """

    __tablename__ = "trust_anchors"

    id: Mapped[int] = mapped_column(primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    subject: Mapped[str] = mapped_column(Text)
    object_sha256: Mapped[str] = mapped_column(String(64))
    first_seen: Mapped[datetime]


class TimestampAnchor(Base):
    """Which archived trust anchor a token chained to when it was granted."""

    __tablename__ = "timestamp_trust_anchors"

    timestamp_id: Mapped[int] = mapped_column(ForeignKey("timestamps.id"), primary_key=True)
    anchor_id: Mapped[int] = mapped_column(
        ForeignKey("trust_anchors.id"), primary_key=True, index=True
    )
