"""S3-specific behaviour of S3Store, against a real server over HTTP (moto, or MinIO).

The contract every store shares is tested in test_object_stores.py; here: Object Lock,
versions, multipart uploads with checksums, corrupted and failed uploads, errors, URLs.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from evidence_store.errors import IntegrityError, ObjectNotFound, StoreError
from evidence_store.objects import open_store
from evidence_store.objects.base import object_key
from evidence_store.objects.s3 import S3Store
from tests.s3support import (
    Action,
    TamperingProxy,
    auth_checking_server,
    free_port,
    make_s3_store,
    s3_server,
    unique_bucket,
)

MiB = 1 << 20
s3 = pytest.mark.s3


@pytest.fixture
def s3_store(request: pytest.FixtureRequest) -> Iterator[S3Store]:
    store = make_s3_store(request)
    try:
        yield store
    finally:
        store.close()


def versions(store: S3Store, sha256: str) -> list[str | None]:
    """Every version of an object's key, read from the bucket directly."""
    key = object_key(sha256)
    listed = store._client.list_objects(store.bucket, prefix=key, include_version=True)
    return [obj.version_id for obj in listed if obj.object_name == key]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Trickle(io.RawIOBase):
    """A non-seekable stream that hands out small, uneven chunks (like a network response)."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), 65_521, len(self._data) - self._pos)
        buffer[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


# -- bucket and lock ---------------------------------------------------------------------------


@s3
def test_bucket_is_created_with_object_lock_and_versioning(s3_store: S3Store) -> None:
    client = s3_store._client
    client.get_object_lock_config(s3_store.bucket)  # raises if the bucket has no lock
    assert client.get_bucket_versioning(s3_store.bucket).status == "Enabled"


@s3
@pytest.mark.parametrize("mode", ["COMPLIANCE", "GOVERNANCE"])
def test_put_sets_retention_and_legal_hold(request: pytest.FixtureRequest, mode: str) -> None:
    store = make_s3_store(request, retention_mode=mode, retention_days=2, legal_hold=True)
    before = datetime.now(UTC)
    result = store.put(b"exhibit A", media_type="text/plain")
    info = store.stat(result.sha256)
    store.close()

    assert result.created and result.size == 9
    assert info.retention_mode == mode
    assert info.retain_until is not None
    expected = before + timedelta(days=2)
    assert expected - timedelta(seconds=5) <= info.retain_until <= expected + timedelta(minutes=1)
    assert info.legal_hold is True
    assert info.read_only is True
    assert info.version_id
    assert info.size == 9
    assert info.stored_at is not None and abs(info.stored_at - before) < timedelta(minutes=5)


@s3
def test_put_without_lock_settings_stores_unlocked_objects(request: pytest.FixtureRequest) -> None:
    store = make_s3_store(request, retention_mode=None, legal_hold=False)
    info = store.stat(store.put(b"not locked").sha256)
    store.close()
    assert info.retention_mode is None and info.retain_until is None
    assert not info.legal_hold
    assert info.read_only is False


@s3
def test_existing_bucket_without_object_lock_is_refused(request: pytest.FixtureRequest) -> None:
    server = s3_server()
    plain = make_s3_store(request, retention_mode=None)
    bucket = unique_bucket(request)
    plain._client.make_bucket(bucket)  # no object lock
    plain.close()

    locking = S3Store(
        server.endpoint,
        bucket,
        access_key=server.access_key,
        secret_key=server.secret_key,
        secure=server.secure,
        retention_mode="GOVERNANCE",
    )
    with pytest.raises(StoreError, match="no object lock configuration"):
        locking.check()
    with pytest.raises(StoreError, match="no object lock configuration"):
        locking.put(b"x")
    locking.close()

    # Without retention or legal hold the same bucket is usable.
    unlocked = S3Store(
        server.endpoint,
        bucket,
        access_key=server.access_key,
        secret_key=server.secret_key,
        secure=server.secure,
        retention_mode=None,
    )
    unlocked.check()
    assert unlocked.get(unlocked.put(b"x").sha256) == b"x"
    unlocked.close()


@s3
def test_missing_bucket_is_an_error_when_not_created(request: pytest.FixtureRequest) -> None:
    server = s3_server()
    store = S3Store(
        server.endpoint,
        unique_bucket(request),
        access_key=server.access_key,
        secret_key=server.secret_key,
        secure=server.secure,
        create_bucket=False,
    )
    digest = sha(b"anything")
    for call in (
        store.check,
        lambda: store.exists(digest),
        lambda: store.open(digest),
        lambda: list(store.iter_digests()),
    ):
        with pytest.raises(StoreError, match="does not exist") as caught:
            call()
        assert not isinstance(caught.value, ObjectNotFound)
        assert store.bucket in str(caught.value) and server.endpoint in str(caught.value)
    store.close()


# -- writes ------------------------------------------------------------------------------------


@s3
def test_idempotent_put_creates_no_second_version(s3_store: S3Store) -> None:
    data = b"the same bytes, twice"
    first = s3_store.put(data)
    second = s3_store.put(io.BytesIO(data))
    third = s3_store.put(data)
    assert first.created and not second.created and not third.created
    assert first.sha256 == second.sha256 == sha(data)
    assert len(versions(s3_store, first.sha256)) == 1


@s3
def test_put_refuses_to_race_a_second_version(s3_store: S3Store) -> None:
    # Another writer stores the key between our HEAD and our PUT: If-None-Match answers 412
    # and the store reports "already there" instead of adding a version.
    data = b"raced"
    first = s3_store.put(data)
    outcome = s3_store._put_single(
        object_key(first.sha256),
        data,
        bytes.fromhex(first.sha256),
        "application/octet-stream",
        s3_store._retain_until(),
    )
    assert outcome is None
    assert len(versions(s3_store, first.sha256)) == 1


@s3
@pytest.mark.parametrize("as_stream", [False, True], ids=["bytes", "stream"])
def test_multipart_upload_round_trips(s3_store: S3Store, as_stream: bool) -> None:
    data = os.urandom(12 * MiB + 12_345)  # 3 parts of 5, 5 and ~2 MiB
    digest = sha(data)
    result = s3_store.put(Trickle(data) if as_stream else data, media_type="video/mp4")
    assert (result.sha256, result.size, result.created) == (digest, len(data), True)

    assert s3_store.hash_object(digest) == (digest, len(data))
    info = s3_store.stat(digest)
    assert info.size == len(data)
    assert info.retention_mode == "COMPLIANCE" or not s3_server().is_moto
    assert info.retention_mode is not None and info.read_only
    # The server keeps the composite checksum: SHA-256 of the parts' SHA-256s, "-3" parts.
    head = s3_store._client.stat_object(
        s3_store.bucket, object_key(digest), extra_headers={"x-amz-checksum-mode": "ENABLED"}
    )
    parts = [data[i : i + 5 * MiB] for i in range(0, len(data), 5 * MiB)]
    assert len(parts) == 3
    composite = hashlib.sha256(b"".join(hashlib.sha256(p).digest() for p in parts)).digest()
    echoed = head.metadata.get("x-amz-checksum-sha256")
    assert echoed is None or echoed.split("-")[0] == s3_b64(composite)

    again = s3_store.put(io.BytesIO(data))
    assert not again.created
    assert len(versions(s3_store, digest)) == 1
    assert not s3_store._client._list_multipart_uploads(s3_store.bucket).uploads


@s3
def test_multipart_upload_is_locked_like_a_single_put(request: pytest.FixtureRequest) -> None:
    # Lock headers go on CreateMultipartUpload; a server that ignores them there (moto does)
    # gets retention and legal hold applied to the new version explicitly.
    store = make_s3_store(request, retention_mode="GOVERNANCE", legal_hold=True)
    data = os.urandom(6 * MiB)
    info = store.stat(store.put(data).sha256)
    store.close()
    assert info.retention_mode == "GOVERNANCE" and info.retain_until is not None
    assert info.legal_hold is True and info.read_only is True


@s3
def test_legal_hold_without_retention(request: pytest.FixtureRequest) -> None:
    store = make_s3_store(request, retention_mode=None, legal_hold=True)
    small = store.stat(store.put(b"held").sha256)
    large = store.stat(store.put(os.urandom(6 * MiB)).sha256)
    store.close()
    for info in (small, large):
        assert info.legal_hold is True and info.read_only is True
        assert info.retention_mode is None


def s3_b64(digest: bytes) -> str:
    import base64

    return base64.b64encode(digest).decode()


@s3
def test_streaming_put_spools_large_streams_to_disk(request: pytest.FixtureRequest) -> None:
    # 9 MiB: more than the 8 MiB kept in memory, less than one 16 MiB part (single PUT).
    store = make_s3_store(request, part_size=16 * MiB)
    data = os.urandom(9 * MiB)
    result = store.put(Trickle(data))
    assert (result.sha256, result.size, result.created) == (sha(data), len(data), True)
    with store.open(result.sha256) as stream:
        assert stream.read() == data
    store.close()


@s3
def test_small_and_empty_objects_round_trip(s3_store: S3Store) -> None:
    for data in (b"", b"x", b"{}\n" * 1000):
        result = s3_store.put(io.BytesIO(data), media_type="application/json")
        assert result.sha256 == sha(data) and result.size == len(data)
        assert s3_store.get(result.sha256) == data
        assert s3_store.stat(result.sha256).size == len(data)


@s3
def test_a_failing_input_stream_is_a_store_error(s3_store: S3Store) -> None:
    class Broken(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            raise OSError(5, "Input/output error")

    with pytest.raises(StoreError, match="reading or spooling the data failed: Input/output"):
        s3_store.put(Broken())
    assert list(s3_store.iter_digests()) == []


# -- reads -------------------------------------------------------------------------------------


@s3
def test_open_streams_in_chunks_and_releases_the_connection(s3_store: S3Store) -> None:
    data = os.urandom(3 * MiB)
    digest = s3_store.put(data).sha256
    with s3_store.open(digest) as stream:
        assert stream.read(10) == data[:10]
        buffer = bytearray(MiB)
        n = stream.readinto(buffer)
        assert bytes(buffer[:n]) == data[10 : 10 + n]
    assert stream.closed
    # Many partial reads in a row must not exhaust the pool (each close releases its socket).
    for _ in range(25):
        with s3_store.open(digest) as stream:
            stream.read(1)
    assert s3_store.get(digest) == data


@s3
def test_missing_objects(s3_store: S3Store) -> None:
    digest = sha(b"never stored")
    assert not s3_store.exists(digest)
    with pytest.raises(ObjectNotFound, match=digest):
        s3_store.open(digest)
    with pytest.raises(ObjectNotFound, match=digest):
        s3_store.stat(digest)


@s3
def test_iter_digests_in_key_order_skipping_foreign_keys(s3_store: S3Store) -> None:
    digests = sorted(s3_store.put(f"object {i}".encode()).sha256 for i in range(12))
    strays = [
        "sha256/zz/yy/not-a-digest",
        f"sha256/00/00/{digests[0]}",  # a real digest under the wrong prefix
        f"{object_key(digests[1])}.tmp",
        "manifests/readme.txt",
    ]
    for key in strays:
        body = b"stray"
        headers = {"Content-MD5": s3_b64(hashlib.md5(body).digest())}
        s3_store._client._put_object(s3_store.bucket, key, body, headers)
    assert list(s3_store.iter_digests()) == digests


# -- corrupted and failed uploads --------------------------------------------------------------


def proxy_or_skip() -> TamperingProxy:
    server = s3_server()
    if server.secure:
        pytest.skip("the tampering proxy needs a plain-HTTP server")
    return TamperingProxy(server.host, server.port)


@s3
def test_corrupted_upload_is_refused_or_detected(request: pytest.FixtureRequest) -> None:
    direct = make_s3_store(request)
    data = os.urandom(256 * 1024)
    digest = sha(data)
    proxy = proxy_or_skip()
    with proxy:
        store = make_s3_store(request, bucket=direct.bucket, endpoint=proxy.endpoint)
        with pytest.raises((StoreError, IntegrityError)):
            store.put(data)
        assert proxy.tampered
        if s3_server().is_moto:
            # moto stores what arrives without checking x-amz-checksum-sha256 (and echoes the
            # header back); the ETag, its MD5 of what it received, is what gives it away.
            actual, size = direct.hash_object(digest)
            assert actual != digest and size == len(data)
        else:
            # A server that verifies x-amz-checksum-sha256 (MinIO, AWS) refuses the bytes.
            assert not direct.exists(digest)
        store.close()
    direct.close()


@s3
def test_corrupted_multipart_upload_is_refused_or_detected(
    request: pytest.FixtureRequest,
) -> None:
    direct = make_s3_store(request)
    data = os.urandom(11 * MiB)
    digest = sha(data)
    proxy = proxy_or_skip()
    with proxy:
        store = make_s3_store(request, bucket=direct.bucket, endpoint=proxy.endpoint)
        # MinIO/AWS refuse the part (its checksum); moto keeps it, but reports the composite
        # checksum of what it received, which the store compares after the upload.
        with pytest.raises((StoreError, IntegrityError), match=object_key(digest)):
            store.put(data)
        store.close()
    assert proxy.tampered
    assert not direct._client._list_multipart_uploads(direct.bucket).uploads
    if direct.exists(digest):
        assert direct.hash_object(digest)[0] != digest
    direct.close()


@s3
def test_failed_multipart_upload_is_aborted(request: pytest.FixtureRequest) -> None:
    def drop_second_part(method: str, target: str) -> Action:
        return "drop" if method == "PUT" and "partNumber=2&" in target + "&" else "pass"

    direct = make_s3_store(request)
    server = s3_server()
    if server.secure:
        pytest.skip("the tampering proxy needs a plain-HTTP server")
    data = os.urandom(11 * MiB)
    with TamperingProxy(server.host, server.port, drop_second_part) as proxy:
        store = make_s3_store(request, bucket=direct.bucket, endpoint=proxy.endpoint)
        started = time.monotonic()
        with pytest.raises(StoreError, match="connection") as caught:
            store.put(data)
        assert time.monotonic() - started < 30
        store.close()
    message = str(caught.value)
    assert object_key(sha(data)) in message and proxy.endpoint in message
    assert "\n" not in message
    assert not direct.exists(sha(data))
    assert not direct._client._list_multipart_uploads(direct.bucket).uploads
    direct.close()


# -- errors and credentials --------------------------------------------------------------------


@s3
def test_wrong_credentials_give_a_store_error_naming_the_endpoint(
    request: pytest.FixtureRequest,
) -> None:
    server = auth_checking_server()
    secret = "wrong-secret-key-do-not-print-0123456789"
    access = "AKIAWRONGACCESSKEY42"
    store = S3Store(
        server.endpoint,
        unique_bucket(request),
        access_key=access,
        secret_key=secret,
        secure=server.secure,
    )
    with pytest.raises(StoreError) as caught:
        store.check()
    message = str(caught.value)
    assert server.endpoint in message and store.bucket in message
    assert "access denied" in message.lower()
    assert "\n" not in message and "Traceback" not in message
    for text in (message, store.url, repr(caught.value.args)):
        assert secret not in text and access not in text
    with pytest.raises(StoreError) as caught:
        store.exists(sha(b"x"))
    assert secret not in str(caught.value)
    store.close()


@s3
def test_unreachable_endpoint_fails_quickly() -> None:
    port = free_port()  # nothing listens there
    store = S3Store(
        f"127.0.0.1:{port}",
        "evidence",
        access_key="access-key-1",
        secret_key="secret-key-1234",
        secure=False,
    )
    started = time.monotonic()
    with pytest.raises(StoreError) as caught:
        store.check()
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message and "connection refused" in message
    assert "\n" not in message and "secret-key-1234" not in message
    with pytest.raises(StoreError, match="connection refused"):
        store.put(b"x")
    store.close()


@s3
def test_open_store_opens_an_s3_url(request: pytest.FixtureRequest) -> None:
    server = s3_server()
    scheme = "https" if server.secure else "http"
    bucket = unique_bucket(request)
    store = open_store(
        f"{scheme}://{server.endpoint}/{bucket}",
        access_key=server.access_key,
        secret_key=server.secret_key,
        retention_mode="GOVERNANCE",
        retention_days=1,
    )
    assert isinstance(store, S3Store)
    digest = store.put(b"via open_store").sha256
    assert store.get(digest) == b"via open_store"
    assert store.stat(digest).retention_mode == "GOVERNANCE"
    assert server.access_key not in store.url and server.secret_key not in store.url
    store.close()


@s3
def test_close_releases_the_pool(s3_store: S3Store) -> None:
    s3_store.put(b"pooled")
    assert s3_store._http.pools
    s3_store.close()
    assert not s3_store._http.pools


# -- URLs (no server needed) -------------------------------------------------------------------


@pytest.fixture
def no_s3_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in (
        "MINIO_ACCESS_KEY",
        "MINIO_SECRET_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    ("url", "endpoint", "secure", "region", "canonical"),
    [
        (
            "s3://minio.local:9000/evidence",
            "minio.local:9000",
            True,
            None,
            "s3://minio.local:9000/evidence",
        ),
        (
            "s3://127.0.0.1:9000/evidence?secure=false&region=eu-central-1",
            "127.0.0.1:9000",
            False,
            "eu-central-1",
            "s3://127.0.0.1:9000/evidence?secure=false&region=eu-central-1",
        ),
        (
            "http://127.0.0.1:9000/evidence/",
            "127.0.0.1:9000",
            False,
            None,
            "s3://127.0.0.1:9000/evidence?secure=false",
        ),
        (
            "https://s3.eu-central-1.amazonaws.com/evidence",
            "s3.eu-central-1.amazonaws.com",
            True,
            None,
            "s3://s3.eu-central-1.amazonaws.com/evidence",
        ),
        (
            "minio://[::1]:9000/evidence?secure=no",
            "[::1]:9000",
            False,
            None,
            "s3://[::1]:9000/evidence?secure=false",
        ),
    ],
)
def test_from_url(
    no_s3_env: pytest.MonkeyPatch,
    url: str,
    endpoint: str,
    secure: bool,
    region: str | None,
    canonical: str,
) -> None:
    store = S3Store.from_url(url, access_key="access-key-1", secret_key="secret-key-1234")
    assert (store.endpoint, store.bucket, store.secure, store.region) == (
        endpoint,
        "evidence",
        secure,
        region,
    )
    assert store.url == canonical
    again = S3Store.from_url(store.url, access_key="access-key-1", secret_key="secret-key-1234")
    assert (again.endpoint, again.secure, again.region) == (endpoint, secure, region)


def test_from_url_takes_credentials_from_the_environment(no_s3_env: pytest.MonkeyPatch) -> None:
    no_s3_env.setenv("AWS_ACCESS_KEY_ID", "aws-access-key")
    no_s3_env.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-key-123")
    store = S3Store.from_url("s3://host:9000/bucket1?secure=false")
    assert store._client._provider.retrieve().access_key == "aws-access-key"

    no_s3_env.setenv("MINIO_ACCESS_KEY", "minio-access-key")
    no_s3_env.setenv("MINIO_SECRET_KEY", "minio-secret-key-123")
    creds = S3Store.from_url("s3://host:9000/bucket1")._client._provider.retrieve()
    assert (creds.access_key, creds.secret_key) == ("minio-access-key", "minio-secret-key-123")

    creds = S3Store.from_url(
        "s3://host:9000/bucket1", access_key="option-key", secret_key="option-secret"
    )._client._provider.retrieve()
    assert (creds.access_key, creds.secret_key) == ("option-key", "option-secret")


def test_from_url_names_missing_credentials(no_s3_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(StoreError, match=r"access key .* and no secret key") as caught:
        S3Store.from_url("s3://host:9000/bucket")
    assert "s3://host:9000/bucket" in str(caught.value)
    no_s3_env.setenv("MINIO_ACCESS_KEY", "minio-access-key")
    with pytest.raises(StoreError, match=r"no S3 secret key .*MINIO_SECRET_KEY"):
        S3Store.from_url("s3://host:9000/bucket")


def test_credentials_in_the_url_never_reach_url_or_messages(
    no_s3_env: pytest.MonkeyPatch,
) -> None:
    store = S3Store.from_url("s3://url-access-key:url-secret-key-1@host:9000/bucket?secure=0")
    assert store.url == "s3://host:9000/bucket?secure=false"
    assert store._client._provider.retrieve().secret_key == "url-secret-key-1"
    store = S3Store.from_url("http://host:9000/bucket?access_key=qkey-1234&secret_key=qsecret-99")
    assert "qsecret-99" not in store.url and "qkey-1234" not in store.url
    with pytest.raises(StoreError) as caught:
        S3Store.from_url("s3://ak-123456:sk-123456789@host:9000/bucket?bogus=1")
    assert "sk-123456789" not in str(caught.value) and "ak-123456" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "options", "match"),
    [
        ("s3://host:9000/", {}, "must name a host and a bucket"),
        ("s3://host:9000/Evidence_2024", {}, "invalid bucket name Evidence_2024"),
        ("s3://host:9000/a/b", {}, "must name a host and a bucket"),
        ("s3://host:9000/bucket?secrue=false", {}, "unknown parameter 'secrue'"),
        ("http://host:9000/bucket?secure=true", {}, "says both http and secure=true"),
        ("s3://host:9000/bucket", {"retention_mode": "forever"}, "unknown S3 retention mode"),
        ("s3://host:9000/bucket", {"part_size": 1 << 20}, "part_size must be between"),
    ],
)
def test_bad_urls_and_options(
    no_s3_env: pytest.MonkeyPatch, url: str, options: dict[str, object], match: str
) -> None:
    with pytest.raises(StoreError, match=match):
        S3Store.from_url(url, access_key="access-key-1", secret_key="secret-key-1234", **options)


# -- what put checks, so that archive() need not download what it uploaded --------------------


class ReadCountingStore(S3Store):
    """A real S3 store that counts the objects read back from the server."""

    reads = 0

    def open(self, sha256: str):  # type: ignore[no-untyped-def]
        self.reads += 1
        return super().open(sha256)


def counting_store(request: pytest.FixtureRequest, **options: object) -> ReadCountingStore:
    bucket = make_s3_store(request).bucket
    server = s3_server()
    return ReadCountingStore(
        server.endpoint,
        bucket,
        access_key=server.access_key,
        secret_key=server.secret_key,
        secure=server.secure,
        retention_mode=None,
        part_size=5 * MiB,
        **options,  # type: ignore[arg-type]
    )


@s3
def test_put_is_checked_by_the_servers_checksum(request: pytest.FixtureRequest) -> None:
    store = counting_store(request)
    single = store.put(os.urandom(100_000))  # the ETag: the server's MD5 of what it received
    multipart = store.put(os.urandom(6 * MiB))  # the server's composite SHA-256 of the parts
    assert single.checked and multipart.checked
    # Bytes that were already stored were not sent: nothing of the server's checks them.
    again = store.put(io.BytesIO(store.get(single.sha256)))
    assert not again.created and not again.checked
    store.close()


@s3
def test_put_verified_downloads_only_what_the_server_did_not_check(
    request: pytest.FixtureRequest,
) -> None:
    from evidence_store.archive import put_verified

    store = counting_store(request)
    data = os.urandom(50_000)
    put_verified(store, data, "application/octet-stream")
    assert store.reads == 0
    put_verified(store, data, "application/octet-stream")  # already stored: read back
    assert store.reads == 1
    store.close()
    careful = counting_store(request, verify_on_write=True)
    assert not careful.put(os.urandom(1000)).checked
    put_verified(careful, os.urandom(1000), "application/octet-stream")
    assert careful.reads == 1
    careful.close()
