"""The local object store: a folder of read-only files named by their SHA-256.

Durability: bytes go to a temporary file in the store, which is fsynced, made read-only and
hard-linked into place (a link never replaces an existing file, so nothing is ever
overwritten), then the directory is fsynced. A crash leaves at worst a temporary file, which
``evidence store sweep`` reports and clears; a stored object is either whole or absent.
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from evidence_store.errors import ObjectNotFound, StoreError
from evidence_store.objects.base import (
    ObjectInfo,
    ObjectStore,
    PutResult,
    check_digest,
    iter_chunks,
    object_key,
)

TMP_DIR = "tmp"
HEX = set("0123456789abcdef")


def fsync_dir(path: Path) -> None:
    """Make a directory's entries durable (new files, links, renames)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def describe_os_error(exc: OSError, action: str, path: Path) -> str:
    """A one-line cause for an OS error, naming the path and the common cases plainly."""
    reason = {
        errno.ENOSPC: "no space left on device",
        errno.EDQUOT: "disk quota exceeded",
        errno.EROFS: "read-only file system",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.ENOENT: "no such file or directory",
    }.get(exc.errno or 0, exc.strerror or str(exc))
    return f"cannot {action} {path}: {reason}"


class LocalStore(ObjectStore):
    """Objects under ``root/sha256/ab/cd/<hex>``, written once and made read-only."""

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.root = Path(root).absolute()
        self.url = self.root.as_uri()
        self._fsync = fsync
        self._tmp = self.root / TMP_DIR

    # The store is created lazily so that read-only commands work on a read-only folder.
    def _ensure_writable(self) -> None:
        if self._tmp.is_dir():
            return
        try:
            self._tmp.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                describe_os_error(exc, "create the object store at", self.root)
            ) from exc

    def path_of(self, sha256: str) -> Path:
        """Where the object with this digest lives (or would live)."""
        return self.root / object_key(sha256)

    def check(self) -> None:
        self._ensure_writable()
        if not os.access(self._tmp, os.W_OK | os.X_OK):
            raise StoreError(f"cannot write to the object store {self.root}: permission denied")

    def put(
        self, data: bytes | BinaryIO, *, media_type: str = "application/octet-stream"
    ) -> PutResult:
        self._ensure_writable()
        try:
            fd, tmp_name = tempfile.mkstemp(dir=self._tmp, prefix="put-")
        except OSError as exc:
            raise StoreError(
                describe_os_error(exc, "write to the object store", self.root)
            ) from exc
        tmp = Path(tmp_name)
        try:
            digest = hashlib.sha256()
            size = 0
            with os.fdopen(fd, "wb") as out:
                for chunk in iter_chunks(data):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                if self._fsync:
                    os.fsync(out.fileno())
            sha256 = digest.hexdigest()
            target = self.path_of(sha256)
            if target.exists():
                return PutResult(sha256, size, created=False)
            self._make_parents(target.parent)
            os.chmod(tmp, 0o444)
            try:
                os.link(tmp, target)
                created = True
            except FileExistsError:  # a concurrent writer stored the same bytes first
                created = False
            if self._fsync and created:
                fsync_dir(target.parent)
            return PutResult(sha256, size, created=created)
        except OSError as exc:
            raise StoreError(
                describe_os_error(exc, "write to the object store", self.root)
            ) from exc
        finally:
            tmp.unlink(missing_ok=True)

    def _make_parents(self, directory: Path) -> None:
        # Each new directory level is made durable in its parent, or a crash could lose the
        # path to an object whose file itself was fsynced.
        missing = []
        level = directory
        while not level.exists():
            missing.append(level)
            level = level.parent
        for new in reversed(missing):
            try:
                new.mkdir()
            except FileExistsError:
                continue
            if self._fsync:
                fsync_dir(new.parent)

    def open(self, sha256: str) -> BinaryIO:
        path = self.path_of(sha256)
        try:
            return open(path, "rb")
        except FileNotFoundError:
            if not self.root.exists():
                raise StoreError(f"the object store {self.root} does not exist") from None
            raise ObjectNotFound(sha256, self.url) from None
        except OSError as exc:
            raise StoreError(describe_os_error(exc, "read", path)) from exc

    def exists(self, sha256: str) -> bool:
        return self.path_of(sha256).is_file()

    def stat(self, sha256: str) -> ObjectInfo:
        path = self.path_of(sha256)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise ObjectNotFound(sha256, self.url) from None
        except OSError as exc:
            raise StoreError(describe_os_error(exc, "read", path)) from exc
        return ObjectInfo(
            sha256=sha256,
            size=st.st_size,
            stored_at=datetime.fromtimestamp(st.st_mtime, UTC),
            read_only=not (st.st_mode & 0o222),
        )

    def hash_object(self, sha256: str) -> tuple[str, int]:
        with self.open(sha256) as stream:
            digest = hashlib.file_digest(stream, "sha256")  # type: ignore[arg-type]
            return digest.hexdigest(), stream.tell()

    def iter_digests(self) -> Iterator[str]:
        base = self.root / "sha256"
        if not base.is_dir():
            return
        for first in sorted(os.listdir(base)):
            for second in sorted(os.listdir(base / first)):
                for name in sorted(os.listdir(base / first / second)):
                    if len(name) == 64 and set(name) <= HEX and name.startswith(first + second):
                        yield check_digest(name)

    def iter_temporary(self) -> Iterator[Path]:
        """Temporary files left by interrupted writes (never referenced by the index)."""
        if self._tmp.is_dir():
            yield from sorted(self._tmp.iterdir())
