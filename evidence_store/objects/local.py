"""The local object store: a folder of read-only files named by their SHA-256.

Durability: bytes go to a temporary file in the store, which is fsynced, made read-only and
hard-linked into place (a link never replaces an existing file, so nothing is ever
overwritten), then the directory is fsynced. A crash leaves at worst a temporary file, which
``evidence store sweep`` reports and clears; a stored object is either whole or absent.
Objects are removed only by the retention policy (``delete``); legal holds are kept in the
index, since a folder has no Object Lock.
"""

from __future__ import annotations

import errno
import hashlib
import mmap
import os
import tempfile
import threading
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
from evidence_store.support import fsync_dir

TMP_DIR = "tmp"


def _link_fd(fd: int, target: Path) -> None:
    # linkat(AT_SYMLINK_FOLLOW) through /proc names an O_TMPFILE file without privileges.
    # CPython only passes that flag when a dir_fd is given, hence the /proc/self/fd handle.
    proc = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.link(str(fd), target, src_dir_fd=proc, follow_symlinks=True)
    finally:
        os.close(proc)


def _write_all(fd: int, view: memoryview) -> int:
    """os.write until every byte is written (it may write less than asked)."""
    total = len(view)
    while view:
        view = view[os.write(fd, view) :]
    return total


HEX = set("0123456789abcdef")


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
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._use_tmpfile = hasattr(os, "O_TMPFILE") and Path("/proc/self/fd").is_dir()
        self._writable = False
        self._unsynced: set[Path] = set()

    # The store is created lazily so that read-only commands work on a read-only folder.
    def _ensure_writable(self) -> None:
        if self._writable or self._tmp.is_dir():
            self._writable = True
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
        # A real write, not os.access: that ignores read-only mounts and lies for root.
        try:
            fd, name = tempfile.mkstemp(dir=self._tmp, prefix="check-")
            os.close(fd)
            os.unlink(name)
        except OSError as exc:
            raise StoreError(
                describe_os_error(exc, "write to the object store", self.root)
            ) from exc

    def put(
        self,
        data: bytes | BinaryIO,
        *,
        media_type: str = "application/octet-stream",
        durable: bool = True,
    ) -> PutResult:
        self._ensure_writable()
        try:
            fd, tmp = self._open_temporary()
        except OSError as exc:
            raise StoreError(
                describe_os_error(exc, "write to the object store", self.root)
            ) from exc
        try:
            digest = hashlib.sha256()
            size = 0
            if isinstance(data, bytes | bytearray | memoryview):
                # In memory already: one hash and one write, no chunk copies.
                digest.update(data)
                size = _write_all(fd, memoryview(data))
            else:
                for chunk in iter_chunks(data):
                    digest.update(chunk)
                    size += _write_all(fd, memoryview(chunk))
            if self._fsync:
                os.fsync(fd)
            sha256 = digest.hexdigest()
            target = self.path_of(sha256)
            if target.exists():
                return PutResult(sha256, size, created=False)
            self._make_parents(target.parent)
            os.fchmod(fd, 0o444)
            try:
                # The bytes were fsynced above, so the name never points at partial content.
                if tmp is None:  # O_TMPFILE: give the unnamed file its one and only name
                    _link_fd(fd, target)
                else:
                    os.link(tmp, target)
                created = True
            except FileExistsError:  # a concurrent writer stored the same bytes first
                created = False
            if created:
                self._dir_changed(target.parent)
                if durable:
                    self.flush()
            return PutResult(sha256, size, created=created)
        except OSError as exc:
            raise StoreError(
                describe_os_error(exc, "write to the object store", self.root)
            ) from exc
        finally:
            os.close(fd)
            if tmp is not None:
                tmp.unlink(missing_ok=True)

    def _open_temporary(self) -> tuple[int, Path | None]:
        """An unnamed file (Linux O_TMPFILE: a crash leaves nothing behind), else a named one."""
        if self._use_tmpfile:
            try:
                return os.open(self._tmp, os.O_TMPFILE | os.O_WRONLY, 0o600), None
            except (OSError, AttributeError):
                self._use_tmpfile = False  # not supported by this file system
        fd, name = tempfile.mkstemp(dir=self._tmp, prefix="put-")
        return fd, Path(name)

    def _make_parents(self, directory: Path) -> None:
        # Each new directory level must be made durable in its parent, or a crash could lose
        # the path to an object whose file itself was fsynced.
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
            self._dir_changed(new.parent)

    def _dir_changed(self, directory: Path) -> None:
        with self._lock:
            self._unsynced.add(directory)

    def flush(self) -> None:
        """fsync every directory that gained an entry since the last flush.

        Deferring these to one flush per snapshot (or per group of snapshots) lets the file
        system commit them together: the first fsync commits its journal, the rest find
        little left to do.
        """
        # One flush at a time: a second caller must not return while the first is still
        # syncing directories that hold the second caller's objects.
        with self._flush_lock:
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            pending, self._unsynced = self._unsynced, set()
        if not self._fsync:
            return
        try:
            # Parents before children is not needed for correctness here: every level is
            # fsynced before flush returns, and nothing refers to the objects until then.
            for directory in sorted(pending):
                fsync_dir(directory)
        except OSError as exc:
            with self._lock:
                self._unsynced |= pending
            raise StoreError(describe_os_error(exc, "flush the object store", self.root)) from exc

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
            size = os.fstat(stream.fileno()).st_size
            if size == 0:
                return hashlib.sha256().hexdigest(), 0
            # Hash the page cache through a mapping: no copy into Python buffers.
            with mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) as view:
                return hashlib.sha256(view).hexdigest(), len(view)

    def delete(self, sha256: str, *, durable: bool = True, bypass_governance: bool = False) -> bool:
        """Unlink the object (read-only files go with their directory's write permission).

        A local folder has no Object Lock: legal holds live in the index only and are enforced
        by the retention policy, not by the file system. The directory is fsynced (now, or at
        ``flush()`` with ``durable=False``) so a removal that was reported survives a crash.
        Empty ``ab/cd`` directories are left in place: removing them would race with a
        concurrent ``put`` that has just checked its parent exists.
        """
        path = self.path_of(sha256)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise StoreError(describe_os_error(exc, "delete", path)) from exc
        self._dir_changed(path.parent)
        if durable:
            self.flush()
        return True

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
