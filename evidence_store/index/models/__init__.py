"""SQLAlchemy models of the index, one module per aggregate."""

from evidence_store.index.models.base import Base, UTCDateTime
from evidence_store.index.models.collection import Collection
from evidence_store.index.models.custody import CustodyEvent
from evidence_store.index.models.hold import LegalHold
from evidence_store.index.models.key import SigningKey
from evidence_store.index.models.snapshot import Artifact, Snapshot
from evidence_store.index.models.source import Run, ScheduledJob, Source
from evidence_store.index.models.timestamp import (
    MerkleProof,
    MerkleTree,
    RevocationList,
    TimestampRecord,
)

__all__ = [
    "Artifact",
    "Base",
    "Collection",
    "CustodyEvent",
    "LegalHold",
    "MerkleProof",
    "MerkleTree",
    "RevocationList",
    "Run",
    "ScheduledJob",
    "SigningKey",
    "Snapshot",
    "Source",
    "TimestampRecord",
    "UTCDateTime",
]
