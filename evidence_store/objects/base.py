"""The object-store contract: write-once, content-addressed bytes.

There is no update. ``delete`` exists for one caller only, the retention policy
(``evidence_store.retention``), which decides what may go, records it in the custody log and
never deletes under a legal hold. Stores with Object Lock (S3) also carry holds and retention
dates on the objects themselves (``set_legal_hold``, ``extend_retention``); elsewhere those are
no-ops and the index alone holds them.
"""

from __future__ import annotations

import abc
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO

from evidence_store.errors import StoreError

CHUNK_SIZE = 1 << 20
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True)
class PutResult:
    """What ``put`` stored: the digest and size it computed while streaming.

    ``checked`` says that the store itself has made sure that what it keeps under ``sha256``
    is these bytes, as far as it usefully can, so that reading the object back would prove
    nothing more: S3 compares a checksum the server computed from what it received; the
    local store hashes the very buffer it writes to a file of its own (and re-reads the file
    from the disk with ``verify_on_write``). It is False for an object that was already
    stored (its bytes were not written by this put) and wherever the store could not check:
    ``archive.put_verified`` then reads the object back and re-hashes it.
    """

    sha256: str
    size: int
    created: bool  # False when the same bytes were already stored (or waiting for a flush)
    checked: bool = False


class ObjectLocked(StoreError):
    """The store refused to delete an object because Object Lock protects it."""

    def __init__(self, message: str, sha256: str) -> None:
        super().__init__(message)
        self.sha256 = sha256


@dataclass(frozen=True)
class ObjectInfo:
    """What the store says about one object, lock state included where the store has one."""

    sha256: str
    size: int
    stored_at: datetime | None = None
    read_only: bool | None = None
    retention_mode: str | None = None
    retain_until: datetime | None = None
    legal_hold: bool | None = None
    version_id: str | None = None


def object_key(sha256: str) -> str:
    """The content-addressed key of an object: ``sha256/ab/cd/<hex>``."""
    check_digest(sha256)
    return f"sha256/{sha256[:2]}/{sha256[2:4]}/{sha256}"


def check_digest(sha256: str) -> str:
    """Refuse anything that is not a lower-case SHA-256 hex digest (keys are built from it)."""
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
    return sha256


def iter_chunks(data: bytes | BinaryIO, size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Yield ``data`` in chunks, whether it is bytes or a binary stream."""
    if isinstance(data, bytes | bytearray | memoryview):
        view = memoryview(data)
        for start in range(0, len(view), size):
            yield bytes(view[start : start + size])
        return
    while chunk := data.read(size):
        yield chunk


def hash_stream(stream: BinaryIO) -> tuple[str, int]:
    """SHA-256 and size of a stream, read in large chunks into one reused buffer."""
    digest = hashlib.sha256()
    buffer = bytearray(CHUNK_SIZE)
    view = memoryview(buffer)
    size = 0
    readinto = getattr(stream, "readinto", None)
    if readinto is None:
        for chunk in iter_chunks(stream):
            digest.update(chunk)
            size += len(chunk)
        return digest.hexdigest(), size
    while n := readinto(buffer):
        digest.update(view[:n])
        size += n
    return digest.hexdigest(), size


class ObjectStore(abc.ABC):
    """Write-once, content-addressed object storage."""

    url: str

    @abc.abstractmethod
    def put(
        self,
        data: bytes | BinaryIO,
        *,
        media_type: str = "application/octet-stream",
        durable: bool = True,
    ) -> PutResult:
        """Store bytes (or a stream, hashed while it streams) under their SHA-256; idempotent.

        An object is never visible with partial content. With ``durable=False`` the store may
        defer making the object durable (the local store: its fsync and its name) until
        ``flush()``, so that many puts share one flush; callers must flush before anything
        refers to the object (reading it before then flushes, where the store defers).
        """

    @abc.abstractmethod
    def open(self, sha256: str) -> BinaryIO:
        """Open a stored object for streaming reads; raises ObjectNotFound."""

    @abc.abstractmethod
    def exists(self, sha256: str) -> bool:
        """Whether an object with this digest is stored."""

    @abc.abstractmethod
    def stat(self, sha256: str) -> ObjectInfo:
        """Size and lock state of a stored object; raises ObjectNotFound."""

    @abc.abstractmethod
    def iter_digests(self) -> Iterator[str]:
        """Every stored digest, in key order."""

    # Whether objects carry their own lock (legal hold, retention date) that the server enforces.
    supports_object_lock: bool = False
    # Re-read every new object after writing it, even where the store's own check suffices.
    verify_on_write: bool = False

    def delete(self, sha256: str, *, durable: bool = True, bypass_governance: bool = False) -> bool:
        """Remove an object for good; True if it was there, False if it was already gone.

        Only the retention policy calls this. Raises ``ObjectLocked`` when the store's own lock
        forbids it (S3 legal hold or retention; ``bypass_governance`` lifts GOVERNANCE retention
        for callers allowed to). With ``durable=False`` the removal of the name may wait for
        ``flush()``, as puts may.
        """
        raise StoreError(f"the object store {self.url} cannot delete objects")

    def set_legal_hold(self, sha256: str, on: bool) -> bool:
        """Switch the store's legal hold on an object; False where the store has none."""
        return False

    def extend_retention(self, sha256: str, until: datetime) -> datetime | None:
        """Make sure the object is retained at least ``until``; never shortens a retention.

        Returns the retention date now in force, or None where the store keeps no retention.
        """
        return None

    def flush(self) -> None:  # noqa: B027 - optional hook, stores override it
        """Make every object put so far durable (a no-op where puts are durable on return)."""

    def check(self) -> None:  # noqa: B027 - optional hook, stores override it
        """Raise StoreError naming the cause if the store cannot be read and written."""

    def get(self, sha256: str) -> bytes:
        """The whole object in memory (small objects only: manifests, signatures)."""
        with self.open(sha256) as stream:
            return stream.read()

    def hash_object(self, sha256: str) -> tuple[str, int]:
        """Re-hash a stored object from its bytes: (actual SHA-256, size)."""
        with self.open(sha256) as stream:
            return hash_stream(stream)

    def close(self) -> None:  # noqa: B027 - optional hook, stores override it
        """Release connections; the store is unusable afterwards."""


def as_stream(data: bytes | BinaryIO) -> BinaryIO:
    """A binary stream over bytes or the stream itself."""
    if isinstance(data, bytes | bytearray | memoryview):
        return io.BytesIO(bytes(data))
    return data
