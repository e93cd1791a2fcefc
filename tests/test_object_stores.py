"""The object-store contract, run against every store (local folder and S3)."""

from __future__ import annotations

import hashlib
import io
import os

import pytest

from evidence_store.errors import ObjectNotFound
from evidence_store.objects import ObjectStore, object_key


def test_put_returns_digest_and_size_and_round_trips(store: ObjectStore) -> None:
    data = b"statement of reasons \xe2\x80\x94 Gr\xc3\xbc\xc3\x9fe"
    result = store.put(data, media_type="text/plain")
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert result.size == len(data)
    assert result.created
    assert store.exists(result.sha256)
    assert store.get(result.sha256) == data
    with store.open(result.sha256) as stream:
        assert stream.read(5) == data[:5]
        assert stream.read() == data[5:]


def test_put_streams_large_input_and_hashes_while_streaming(store: ObjectStore) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)  # several chunks, not a multiple of the chunk size
    result = store.put(io.BytesIO(data))
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert result.size == len(data)
    assert store.hash_object(result.sha256) == (result.sha256, len(data))
    assert store.stat(result.sha256).size == len(data)


def test_put_is_idempotent(store: ObjectStore) -> None:
    first = store.put(b"same bytes")
    second = store.put(io.BytesIO(b"same bytes"))
    assert first.sha256 == second.sha256
    assert first.created and not second.created
    assert list(store.iter_digests()) == [first.sha256]


def test_empty_object(store: ObjectStore) -> None:
    result = store.put(b"")
    assert result.size == 0
    assert store.get(result.sha256) == b""


def test_iterate_lists_every_digest_in_key_order(store: ObjectStore) -> None:
    digests = {store.put(f"object {i}".encode()).sha256 for i in range(20)}
    listed = list(store.iter_digests())
    assert set(listed) == digests
    assert listed == sorted(listed, key=object_key)


def test_missing_object_is_reported_by_digest(store: ObjectStore) -> None:
    store.put(b"something else")
    missing = hashlib.sha256(b"never stored").hexdigest()
    assert not store.exists(missing)
    with pytest.raises(ObjectNotFound, match=missing):
        store.open(missing)
    with pytest.raises(ObjectNotFound, match=missing):
        store.stat(missing)


def test_malformed_digest_is_refused(store: ObjectStore) -> None:
    with pytest.raises(ValueError, match="not a SHA-256"):
        store.exists("../../etc/passwd")


def test_no_update_in_the_interface(store: ObjectStore) -> None:
    # Stored bytes are never changed in place. `delete` exists for the retention policy alone
    # (evidence_store/retention.py), which records every removal in the custody log.
    for name in ("remove", "update", "overwrite", "put_at"):
        assert not hasattr(store, name)


def test_check_passes_on_a_usable_store(store: ObjectStore) -> None:
    store.check()
