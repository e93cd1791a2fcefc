"""The local object store: a folder of read-only files named by their SHA-256.

Durability (the order is the crash-safety argument):

1. ``put`` writes the bytes to an unnamed ``O_TMPFILE`` file in the store (a named temporary
   file where the file system lacks it), hashing them as they are written, makes it read-only
   and hands its fsync to a small thread pool; it returns without waiting.
2. ``flush`` waits for those fsyncs, only then links each file under its digest (a link never
   replaces an existing file, so nothing is ever overwritten), and fsyncs every directory that
   gained an entry, again in parallel.

Many fsyncs in flight at once share the file system's journal commits, which is what makes a
group of snapshots cheap; callers flush before anything refers to the objects (``archive``
flushes before its index commit). A name therefore never points at bytes that were not
fsynced, and a crash leaves at worst an unnamed file (freed by the file system) or, without
``O_TMPFILE``, a temporary file that ``evidence store sweep`` reports and clears.

The digest is computed once, over the buffer being written. Reading the file back at once
would read the page cache, which holds exactly that buffer: it proves little for what it
costs. With ``verify_on_write`` the file is re-read after its fsync with its cached pages
dropped first (so from the disk, where the kernel can), re-hashed, and not linked if it
differs. Objects are removed only by the retention policy (``delete``); legal holds are kept
in the index, since a folder has no Object Lock.
"""

from __future__ import annotations

import errno
import hashlib
import mmap
import os
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from evidence_store.errors import IntegrityError, ObjectNotFound, StoreError
from evidence_store.objects.base import (
    CHUNK_SIZE,
    ObjectInfo,
    ObjectStore,
    PutResult,
    check_digest,
    iter_chunks,
    object_key,
)
from evidence_store.support import fsync_dir

TMP_DIR = "tmp"
# Open files waiting for a flush; beyond this a put flushes, so no caller runs out of
# descriptors however long it defers (the crawl pipeline groups up to 64 captures).
MAX_PENDING = 256
SYNC_THREADS = 8  # fsyncs in flight at once: enough for the journal to batch them


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


def _hash_fd(fd: int) -> tuple[str, int]:
    """SHA-256 and size of an open file, read from its start with pread."""
    digest = hashlib.sha256()
    size = 0
    while chunk := os.pread(fd, CHUNK_SIZE, size):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


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


@dataclass
class _Pending:
    """A written object waiting for ``flush``: its open file and the fsync in flight."""

    fd: int
    tmp: Path | None  # None for an unnamed O_TMPFILE file
    sha256: str
    size: int
    synced: Future[None] | None = field(default=None, compare=False)


class LocalStore(ObjectStore):
    """Objects under ``root/sha256/ab/cd/<hex>``, written once and made read-only.

    ``fsync=False`` skips every fsync (benchmarks of other parts only: nothing is durable).
    ``verify_on_write=True`` re-reads and re-hashes each new object after its fsync.
    """

    def __init__(
        self, root: str | os.PathLike[str], *, fsync: bool = True, verify_on_write: bool = False
    ) -> None:
        self.root = Path(root).absolute()
        self.url = self.root.as_uri()
        self.verify_on_write = verify_on_write
        self._fsync = fsync
        self._tmp = self.root / TMP_DIR
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._use_tmpfile = hasattr(os, "O_TMPFILE") and Path("/proc/self/fd").is_dir()
        self._writable = False
        self._unsynced: set[Path] = set()
        self._pending: dict[str, _Pending] = {}
        # Objects a flush could not make durable: every later flush fails until they are
        # put again, so that no caller whose object was among them commits a row naming it.
        self._failed: dict[str, str] = {}
        self._pool: ThreadPoolExecutor | None = None

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

    def _sync_pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(SYNC_THREADS, thread_name_prefix="store-fsync")
            return self._pool

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
        """Write the bytes, hashing them as they go; with ``durable=False`` the fsync runs in
        the background and the object gets its name at the next ``flush()``.

        ``checked`` is True for bytes this put wrote: their digest was computed over the very
        buffer written (and, with ``verify_on_write``, is compared with the file re-read after
        its fsync before the file is named). An object that was already stored is not: the
        caller may re-hash it (``archive`` does).
        """
        self._ensure_writable()
        try:
            fd, tmp = self._open_temporary()
        except OSError as exc:
            raise StoreError(
                describe_os_error(exc, "write to the object store", self.root)
            ) from exc
        entry: _Pending | None = None
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
            sha256 = digest.hexdigest()
            target = self.path_of(sha256)
            with self._lock:
                self._failed.pop(sha256, None)  # written again: the flush decides anew
                waiting = sha256 in self._pending
            if waiting:  # the same bytes wait for the next flush: that copy will do
                return self._done(PutResult(sha256, size, created=False, checked=True), durable)
            if target.exists():
                # Its name may not be durable yet (another process may have died between
                # its link and its directory fsync): ours must be before a row names it.
                self._dir_changed(target.parent)
                return self._done(PutResult(sha256, size, created=False), durable)
            # Parents now, so that a full disk fails this put rather than a later flush.
            self._make_parents(target.parent)
            os.fchmod(fd, 0o444)
            entry = _Pending(fd, tmp, sha256, size)
        except OSError as exc:
            raise StoreError(
                describe_os_error(exc, "write to the object store", self.root)
            ) from exc
        finally:
            if entry is None:
                self._discard(fd, tmp)
        crowded = False
        with self._lock:
            duplicate = sha256 in self._pending
            if not duplicate:
                self._pending[sha256] = entry
                crowded = len(self._pending) >= MAX_PENDING
        if duplicate:  # a concurrent put of the same bytes got there first
            self._discard(fd, tmp)
            return self._done(PutResult(sha256, size, created=False, checked=True), durable)
        if self._fsync or self.verify_on_write:
            entry.synced = self._sync_pool().submit(self._sync, entry)
        return self._done(PutResult(sha256, size, created=True, checked=True), durable or crowded)

    def _done(self, result: PutResult, flush: bool) -> PutResult:
        if flush:
            self.flush()
        return result

    def _sync(self, entry: _Pending) -> None:
        """fsync one written file; with verify_on_write, re-read it from the disk and compare."""
        if self._fsync:
            os.fsync(entry.fd)
        if not self.verify_on_write:
            return
        if self._fsync and hasattr(os, "posix_fadvise"):
            # Clean pages can be dropped now: the read below then comes from the disk.
            os.posix_fadvise(entry.fd, 0, 0, os.POSIX_FADV_DONTNEED)
        actual, size = _hash_fd(entry.fd)
        if (actual, size) != (entry.sha256, entry.size):
            raise IntegrityError(
                f"object sha256:{entry.sha256} read back from {self.url} as sha256:{actual} "
                f"({size} bytes, expected {entry.size}): the store did not keep the bytes"
            )

    def _open_temporary(self) -> tuple[int, Path | None]:
        """An unnamed file (Linux O_TMPFILE: a crash leaves nothing behind), else a named one."""
        if self._use_tmpfile:
            try:
                # O_RDWR: verify_on_write reads the file back through the same descriptor.
                return os.open(self._tmp, os.O_TMPFILE | os.O_RDWR, 0o600), None
            except (OSError, AttributeError):
                self._use_tmpfile = False  # not supported by this file system
        fd, name = tempfile.mkstemp(dir=self._tmp, prefix="put-")
        return fd, Path(name)

    @staticmethod
    def _discard(fd: int, tmp: Path | None) -> None:
        os.close(fd)
        if tmp is not None:
            tmp.unlink(missing_ok=True)

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
        """Make every object put so far durable: wait for its fsync, link it under its
        digest, then fsync every directory that gained an entry.

        The directory fsyncs run in parallel, as the file fsyncs did: the file system commits
        what is in flight together, so a group's many fsyncs cost a few journal commits.
        Raises StoreError (IntegrityError for a read-back that differs) if any object put
        since the last successful flush could not be made durable.
        """
        # One flush at a time: a second caller must not return while the first is still
        # syncing files and directories that hold the second caller's objects.
        with self._flush_lock:
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            batch = list(self._pending.values())
        failures: list[tuple[str, Exception]] = []
        for entry in batch:
            try:
                if entry.synced is not None:
                    entry.synced.result()
                self._link(entry)
            except (OSError, IntegrityError) as exc:
                failures.append((entry.sha256, exc))
            finally:
                self._discard(entry.fd, entry.tmp)
                # Pending until named, so that exists() never has a gap in between.
                with self._lock:
                    self._pending.pop(entry.sha256, None)
        with self._lock:
            dirs, self._unsynced = self._unsynced, set()
        if self._fsync and dirs:
            try:
                self._sync_directories(dirs)
            except OSError as exc:
                with self._lock:
                    self._unsynced |= dirs
                failures.append(("", exc))
        with self._lock:
            for sha256, exc in failures:
                if sha256:
                    self._failed[sha256] = str(exc)
            failed = dict(self._failed)
        if failures:
            _, first = failures[0]
            if isinstance(first, IntegrityError):
                raise first
            assert isinstance(first, OSError)
            raise StoreError(
                describe_os_error(first, "flush the object store", self.root)
            ) from first
        if failed:
            digest, reason = next(iter(failed.items()))
            raise StoreError(
                f"{len(failed)} object(s) written to {self.root} were never made durable "
                f"(sha256:{digest}: {reason}); write them again"
            )

    def _sync_directories(self, dirs: set[Path]) -> None:
        # Parents before children is not needed for correctness here: every level is fsynced
        # before flush returns, and nothing refers to the objects until then.
        if len(dirs) == 1:
            fsync_dir(next(iter(dirs)))
        else:
            list(self._sync_pool().map(fsync_dir, sorted(dirs)))

    def _link(self, entry: _Pending) -> None:
        """Give a synced file its name; a name that exists already holds the same bytes."""
        target = self.path_of(entry.sha256)
        try:
            if entry.tmp is None:  # O_TMPFILE: give the unnamed file its one and only name
                _link_fd(entry.fd, target)
            else:
                os.link(entry.tmp, target)
        except FileExistsError:  # another process stored the same bytes first
            pass
        self._dir_changed(target.parent)

    def _settle(self, sha256: str) -> None:
        # Reading what was put but not yet flushed: name it now (read-your-writes; a flush
        # early is only durability sooner), rather than answering "not found".
        with self._lock:
            waiting = sha256 in self._pending
        if waiting:
            self.flush()

    def open(self, sha256: str) -> BinaryIO:
        path = self.path_of(sha256)
        self._settle(sha256)
        try:
            return open(path, "rb")
        except FileNotFoundError:
            if not self.root.exists():
                raise StoreError(f"the object store {self.root} does not exist") from None
            raise ObjectNotFound(sha256, self.url) from None
        except OSError as exc:
            raise StoreError(describe_os_error(exc, "read", path)) from exc

    def exists(self, sha256: str) -> bool:
        """Stored, or written and waiting for the next ``flush()`` to be named."""
        with self._lock:
            if sha256 in self._pending:
                return True
        return self.path_of(sha256).is_file()

    def stat(self, sha256: str) -> ObjectInfo:
        path = self.path_of(sha256)
        self._settle(sha256)
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

    def close(self) -> None:
        """Stop the fsync threads; objects put but never flushed are dropped, never named."""
        with self._lock:
            pending, self._pending = self._pending, {}
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        for entry in pending.values():
            self._discard(entry.fd, entry.tmp)

    def iter_temporary(self) -> Iterator[Path]:
        """Temporary files left by interrupted writes (never referenced by the index)."""
        if self._tmp.is_dir():
            yield from sorted(self._tmp.iterdir())
