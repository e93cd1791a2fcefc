"""Local store specifics: layout, read-only files, atomic writes, errors from the file system."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from pathlib import Path

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
