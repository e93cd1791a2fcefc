"""Local store specifics: layout, read-only files, atomic writes, errors from the file system."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from evidence_store.errors import StoreError
from evidence_store.objects import LocalStore, open_store


def test_layout_is_content_addressed_and_files_are_read_only(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    digest = store.put(b"abc").sha256
    path = tmp_path / "sha256" / digest[:2] / digest[2:4] / digest
    assert path.read_bytes() == b"abc"
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert store.stat(digest).read_only
    # sha256sum on the file name is all an expert needs.
    assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name


def test_existing_object_is_never_overwritten(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    digest = store.put(b"original").sha256
    path = store.path_of(digest)
    inode = path.stat().st_ino
    store.put(b"original")
    assert path.stat().st_ino == inode
    assert not list((tmp_path / "tmp").iterdir())  # the temporary copy is gone


def test_open_store_accepts_paths_and_file_urls(tmp_path: Path) -> None:
    assert isinstance(open_store(str(tmp_path)), LocalStore)
    store = open_store(tmp_path.as_uri())
    assert isinstance(store, LocalStore) and store.root == tmp_path
    with pytest.raises(ValueError, match="unsupported object store URL"):
        open_store("ftp://example.org/bucket")


def test_store_path_that_is_a_file_gives_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    store = LocalStore(blocker)
    with pytest.raises(StoreError, match="not-a-folder"):
        store.put(b"data")


def test_full_disk_fails_cleanly_and_leaves_nothing(small_mount: Path) -> None:
    store = LocalStore(small_mount / "objects")
    kept = store.put(b"small object").sha256
    with pytest.raises(StoreError, match="no space left on device"):
        store.put(os.urandom(3 * 1024 * 1024))
    assert list(store.iter_digests()) == [kept]
    assert not list(store.iter_temporary())


def test_read_only_file_system_is_named_in_the_error(small_mount: Path) -> None:
    store = LocalStore(small_mount / "objects")
    kept = store.put(b"before").sha256
    subprocess.run(["mount", "-o", "remount,ro", str(small_mount)], check=True)
    with pytest.raises(StoreError, match="read-only file system"):
        store.put(b"after")
    assert store.get(kept) == b"before"


# -- deferred puts: fsync in the background, the name at flush -----------------------------------


def test_deferred_put_is_named_only_after_its_fsync_at_flush(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    result = store.put(b"evidence", durable=False)
    path = store.path_of(result.sha256)
    assert result.created and result.checked
    assert not path.exists()  # not named before flush: a name never points at unsynced bytes
    assert store.exists(result.sha256)  # but known, so that no caller stores it twice
    again = store.put(b"evidence", durable=False)
    assert (again.created, again.checked) == (False, True)  # the waiting copy will do
    store.flush()
    assert path.read_bytes() == b"evidence"
    # Reading an object before the flush names it then (read-your-writes).
    early = store.put(b"read at once", durable=False).sha256
    assert store.get(early) == b"read at once" and store.path_of(early).is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert sorted(store.iter_digests()) == sorted([result.sha256, early])
    assert not list(store.iter_temporary())
    store.close()


def test_bytes_already_stored_are_not_taken_as_checked(tmp_path: Path) -> None:
    from evidence_store.archive import put_verified
    from evidence_store.errors import IntegrityError

    store = LocalStore(tmp_path)
    digest = store.put(b"kept bytes").sha256
    again = store.put(b"kept bytes")
    assert (again.created, again.checked) == (False, False)
    # So archive() re-hashes them: a stored copy that rotted is not silently reused.
    path = store.path_of(digest)
    os.chmod(path, 0o644)
    path.write_bytes(b"kept bytez")
    with pytest.raises(IntegrityError, match=digest):
        put_verified(store, b"kept bytes", "text/plain")


def test_many_deferred_puts_flush_before_descriptors_run_out(tmp_path: Path) -> None:
    from evidence_store.objects.local import MAX_PENDING

    store = LocalStore(tmp_path)
    for i in range(MAX_PENDING + 5):
        store.put(f"object {i}".encode(), durable=False)
    assert len(list(store.iter_digests())) >= MAX_PENDING
    store.flush()
    assert len(list(store.iter_digests())) == MAX_PENDING + 5


class RottingStore(LocalStore):
    """A real local store whose disk changes one byte of the next file after it is written."""

    rot = True

    def _sync(self, entry: Any) -> None:
        if self.rot:
            self.rot = False
            first = os.pread(entry.fd, 1, 0)
            os.pwrite(entry.fd, bytes([first[0] ^ 1]), 0)
        super()._sync(entry)


def test_verify_on_write_rereads_and_refuses_what_the_disk_changed(tmp_path: Path) -> None:
    from evidence_store.errors import IntegrityError

    store = RottingStore(tmp_path, verify_on_write=True)
    result = store.put(b"payload that rots", durable=False)
    with pytest.raises(IntegrityError, match=result.sha256):
        store.flush()
    assert not store.path_of(result.sha256).exists()  # never named
    # Until the object is written again, no flush claims that everything put is durable.
    with pytest.raises(StoreError, match="never made durable"):
        store.flush()
    store.put(b"payload that rots")
    assert store.get(result.sha256) == b"payload that rots"
    store.flush()
    # Without verify_on_write the write is trusted (what rots later, verify finds).
    trusting = RottingStore(tmp_path / "trusting")
    digest = trusting.put(b"payload that rots").sha256
    assert hashlib.sha256(trusting.get(digest)).hexdigest() != digest


def test_verify_on_write_is_a_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from jobs.config import load_settings
    from jobs.context import open_objects

    for key in [k for k in os.environ if k.startswith("EVIDENCE_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EVIDENCE_DATA_DIR", str(tmp_path / "data"))
    assert open_objects(load_settings()).verify_on_write is False
    config = tmp_path / "evidence.toml"
    config.write_text("[store]\nverify_on_write = true\n")
    assert open_objects(load_settings(config)).verify_on_write is True
    monkeypatch.setenv("EVIDENCE_STORE__VERIFY_ON_WRITE", "false")
    assert open_objects(load_settings(config)).verify_on_write is False
