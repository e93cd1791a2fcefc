"""The S3 object store: content-addressed objects in an S3 bucket with Object Lock.

Any S3-compatible server that implements Object Lock should work (AWS S3, MinIO, ...); the
client is the ``minio`` SDK. Every object is written once under ``sha256/ab/cd/<hex>`` with:

* ``x-amz-checksum-sha256`` (the digest we computed, base64) so that a server which verifies
  checksums (AWS, MinIO) refuses bytes corrupted on the way rather than storing them;
* ``If-None-Match: *`` so that two writers racing on the same bytes cannot create a second
  version of the object;
* Object Lock retention (GOVERNANCE or COMPLIANCE until now + ``retention_days``) and,
  when configured, a legal hold, so the bytes cannot be deleted or overwritten.

After each upload the store asks the server (HEAD, no bytes re-read) for the object's size,
checksum and lock state, and fails when any of them is not what was sent. A checksum the
server computed from the bytes it received stands in for reading them back
(``PutResult.checked``): the ETag of a single PUT (the MD5 of what arrived, where the object
is not encrypted with KMS or a customer key), the composite SHA-256 of a multipart upload.
Where neither can be compared, or with ``verify_on_write``, ``archive()`` downloads the object
and re-hashes it.

There is no update. ``delete`` removes every version of a key, and is called only by the
retention policy (``evidence_store.retention``); a version under legal hold or unexpired
retention is refused by the server, and that refusal is raised as ``ObjectLocked`` naming the
lock. ``set_legal_hold`` and ``extend_retention`` carry the index's legal holds and retention
policies onto the objects, so the server enforces them against any client, not only ours.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import IO, Any, BinaryIO, cast
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import certifi
import urllib3
from minio import Minio
from minio.commonconfig import COMPLIANCE, GOVERNANCE
from minio.datatypes import Object
from minio.error import InvalidResponseError, MinioException, S3Error, ServerError
from minio.helpers import check_bucket_name
from minio.retention import Retention
from minio.time import to_iso8601utc
from minio.xml import Element, SubElement, getbytes

from evidence_store.errors import IntegrityError, ObjectNotFound, StoreError
from evidence_store.objects.base import (
    CHUNK_SIZE,
    ObjectInfo,
    ObjectLocked,
    ObjectStore,
    PutResult,
    object_key,
)

MiB = 1 << 20
DEFAULT_PART_SIZE = 16 * MiB
MIN_PART_SIZE = 5 * MiB  # the S3 minimum for every part but the last
MAX_PART_SIZE = 5 * 1024 * MiB
MAX_PARTS = 10_000
SPOOL_IN_MEMORY = 8 * MiB  # streams up to this size are spooled in memory, larger ones on disk
KEY_PREFIX = "sha256/"
HEX_DIGITS = frozenset("0123456789abcdef")
RETENTION_MODES = (COMPLIANCE, GOVERNANCE)
SCHEMES = ("s3", "minio", "http", "https")
URL_QUERY_KEYS = {"secure", "region", "access_key", "secret_key", "session_token"}
# Servers answer these codes for wrong or unknown credentials and clock skew.
AUTH_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "RequestTimeTooSkewed",
}
HEX = set("0123456789abcdef")
# If-None-Match: * failed: the key exists (412), or a concurrent conditional write of the same
# key is in flight (409 on AWS).
CONDITIONAL_WRITE_LOST = {"PreconditionFailed", "ConditionalRequestConflict"}


class S3Store(ObjectStore):
    """Write-once, content-addressed objects in one S3 bucket, locked on upload.

    ``endpoint`` is ``host[:port]`` (a leading ``http://`` or ``https://`` sets ``secure``).
    ``retention_mode`` is ``"GOVERNANCE"``, ``"COMPLIANCE"`` or None (no retention);
    ``legal_hold`` adds a legal hold to every new object. Objects up to ``part_size`` go up
    in one PUT, larger ones as a multipart upload of ``part_size`` parts. Nothing is sent
    until the first operation; the bucket is created (with Object Lock) on the first
    ``put()`` or ``check()`` when ``create_bucket`` is true.
    """

    def __init__(
        self,
        endpoint: str,
        bucket: str,
        *,
        access_key: str,
        secret_key: str,
        session_token: str | None = None,
        secure: bool = True,
        region: str | None = None,
        retention_mode: str | None = GOVERNANCE,
        retention_days: int = 3650,
        legal_hold: bool = False,
        part_size: int = DEFAULT_PART_SIZE,
        create_bucket: bool = True,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        retries: int = 2,
        max_connections: int = 32,
        verify_on_write: bool = False,
    ) -> None:
        if "://" in endpoint:
            scheme, _, endpoint = endpoint.partition("://")
            if scheme.lower() not in ("http", "https"):
                raise StoreError(f"S3 endpoint {scheme}://{endpoint} must be host:port")
            secure = scheme.lower() == "https"
        endpoint = endpoint.rstrip("/")
        try:
            # The strict S3 rules (3-63 lower-case letters, digits, dots, hyphens): a name that
            # only some servers accept would make the store hard to move.
            check_bucket_name(bucket, strict=True)
        except ValueError as exc:
            rule = "3 to 63 lower-case letters, digits, dots and hyphens"
            raise StoreError(f"{exc} (S3 bucket names have {rule})") from None
        self.endpoint = endpoint
        self.bucket = bucket
        self.secure = secure
        self.region = region or None
        query = {} if secure else {"secure": "false"}
        if self.region:
            query["region"] = self.region
        # Only what identifies the store: never credentials (those stay in the client).
        self.url = f"s3://{endpoint}/{bucket}" + (f"?{urlencode(query)}" if query else "")
        self._secrets = [s for s in (secret_key, access_key, session_token) if s and len(s) >= 8]

        if not access_key or not secret_key:
            missing = "access key" if not access_key else "secret key"
            raise StoreError(f"no S3 {missing} for {self.url}")
        mode = retention_mode.upper() if retention_mode else None
        if mode is not None and mode not in RETENTION_MODES:
            raise StoreError(
                f"unknown S3 retention mode {retention_mode!r}: use COMPLIANCE, GOVERNANCE or none"
            )
        if mode is not None and retention_days < 1:
            raise StoreError(f"S3 retention_days must be at least 1, not {retention_days}")
        if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
            raise StoreError(f"S3 part_size must be between 5 MiB and 5 GiB, not {part_size} bytes")
        self.retention_mode = mode
        self.retention_days = retention_days
        self.legal_hold = legal_hold
        self.part_size = part_size
        self.create_bucket = create_bucket
        self.verify_on_write = verify_on_write

        # Our own pool so that an unreachable endpoint fails in seconds (minio's default is
        # 5 retries and 5-minute timeouts) and so that close() can release it. Server errors
        # are retried, then the last response is returned (raise_on_status=False) so the S3
        # error it carries reaches the message.
        self._http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            retries=urllib3.Retry(
                total=retries,
                backoff_factor=0.2,
                status_forcelist=[500, 502, 503, 504],
                raise_on_status=False,
            ),
            maxsize=max_connections,  # verify hashes objects from many threads at once
            cert_reqs="CERT_REQUIRED",
            ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
        )
        try:
            self._client = Minio(
                endpoint,
                access_key=access_key,
                secret_key=secret_key,
                session_token=session_token,
                secure=secure,
                region=self.region,
                http_client=self._http,
            )
        except ValueError as exc:
            raise StoreError(f"invalid S3 endpoint {self.url}: {exc}") from None
        self._bucket_ready = False  # created or checked, object lock verified: put() may write
        self._bucket_seen = False  # known to exist: a missing key is a missing object

    @classmethod
    def from_url(cls, url: str, **options: Any) -> S3Store:
        """Open the store a URL names: ``s3://host:port/bucket?secure=false&region=eu-central-1``.

        ``http://host:port/bucket`` means ``secure=false`` and ``https://`` means secure;
        ``s3://`` (or ``minio://``) is secure unless ``?secure=false``. Credentials come from
        ``options`` (``access_key``, ``secret_key``), else the environment: MINIO_ACCESS_KEY
        and MINIO_SECRET_KEY, then AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and
        AWS_SESSION_TOKEN). Other ``options`` go to the constructor.
        """
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        # For messages: the URL without user info (credentials) and query (maybe secrets).
        safe = f"{scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
        if scheme not in SCHEMES:
            raise StoreError(f"not an S3 URL: {safe} (use s3://host:port/bucket)")
        try:
            port = parts.port
        except ValueError:
            raise StoreError(f"invalid port in the S3 URL {safe}") from None
        host = parts.hostname
        bucket = parts.path.strip("/")
        if not host or not bucket or "/" in bucket:
            raise StoreError(
                f"the S3 URL {safe} must name a host and a bucket: s3://host:port/bucket"
            )
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        endpoint = f"{host}:{port}" if port else host

        query: dict[str, str] = {}
        for key, values in parse_qs(parts.query, keep_blank_values=True).items():
            if key not in URL_QUERY_KEYS:
                raise StoreError(f"unknown parameter {key!r} in the S3 URL {safe}")
            query[key] = values[-1]

        kwargs: dict[str, Any] = {}
        if scheme in ("http", "https"):
            kwargs["secure"] = scheme == "https"
            if "secure" in query and parse_bool(query["secure"]) != kwargs["secure"]:
                conflict = f"{scheme} and secure={query['secure']}"
                raise StoreError(f"the S3 URL {safe} says both {conflict}")
        elif "secure" in query:
            kwargs["secure"] = parse_bool(query["secure"])
        if query.get("region"):
            kwargs["region"] = query["region"]

        env = os.environ
        access_key = (
            options.pop("access_key", None)
            or (unquote(parts.username) if parts.username else None)
            or query.get("access_key")
            or env.get("MINIO_ACCESS_KEY")
            or env.get("AWS_ACCESS_KEY_ID")
        )
        secret_key = (
            options.pop("secret_key", None)
            or (unquote(parts.password) if parts.password else None)
            or query.get("secret_key")
            or env.get("MINIO_SECRET_KEY")
            or env.get("AWS_SECRET_ACCESS_KEY")
        )
        session_token = (
            options.pop("session_token", None)
            or query.get("session_token")
            or env.get("AWS_SESSION_TOKEN")
        )
        missing = []
        if not access_key:
            missing.append("access key (access_key, MINIO_ACCESS_KEY or AWS_ACCESS_KEY_ID)")
        if not secret_key:
            missing.append("secret key (secret_key, MINIO_SECRET_KEY or AWS_SECRET_ACCESS_KEY)")
        if missing:
            raise StoreError(f"no S3 {' and no '.join(missing)} for {safe}")
        kwargs.update(options)
        return cls(
            endpoint,
            bucket,
            access_key=cast(str, access_key),
            secret_key=cast(str, secret_key),
            session_token=session_token or None,
            **kwargs,
        )

    # -- errors -----------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _where(self, key: str | None = None) -> str:
        return f"{key} in {self.url}" if key else self.url

    def _error(self, exc: BaseException, action: str, key: str | None = None) -> StoreError:
        """A one-line StoreError for a failed request: what, where, and why."""
        message = f"cannot {action} {self._where(key)}: {describe_error(exc)}"
        return StoreError(self._redact(message))

    # -- bucket -----------------------------------------------------------------------------

    @property
    def _locking(self) -> bool:
        return self.retention_mode is not None or self.legal_hold

    def _ensure_bucket(self) -> None:
        """Create the bucket if missing (with Object Lock), or check that it can lock objects."""
        if self._bucket_ready:
            return
        try:
            exists = self._client.bucket_exists(self.bucket)
        except (MinioException, urllib3.exceptions.HTTPError, ValueError) as exc:
            raise self._error(exc, "reach the bucket") from exc
        created = False
        if not exists:
            if not self.create_bucket:
                raise StoreError(f"the S3 bucket {self.url} does not exist")
            try:
                # Object Lock can only be enabled when a bucket is created (it also turns
                # on versioning, which cannot be suspended afterwards).
                self._client.make_bucket(self.bucket, object_lock=True)
                created = True
            except S3Error as exc:
                if exc.code != "BucketAlreadyOwnedByYou":  # another writer was first
                    raise self._error(exc, "create the bucket") from exc
            except (MinioException, urllib3.exceptions.HTTPError, ValueError) as exc:
                raise self._error(exc, "create the bucket") from exc
        if self._locking and not created:
            try:
                self._client.get_object_lock_config(self.bucket)
            except S3Error as exc:
                if exc.code == "ObjectLockConfigurationNotFoundError":
                    raise StoreError(
                        f"the S3 bucket {self.url} has no object lock configuration, so "
                        "objects cannot be locked: use a bucket created with object lock, "
                        "or set retention_mode=None and legal_hold=False"
                    ) from None
                raise self._error(exc, "read the object lock configuration of") from exc
            except (MinioException, urllib3.exceptions.HTTPError, ValueError) as exc:
                raise self._error(exc, "read the object lock configuration of") from exc
        self._bucket_ready = self._bucket_seen = True

    def _check_bucket_exists(self) -> None:
        """Raise StoreError if the bucket is missing (HEAD on a key cannot tell)."""
        if self._bucket_seen:
            return
        try:
            exists = self._client.bucket_exists(self.bucket)
        except (MinioException, urllib3.exceptions.HTTPError, ValueError) as exc:
            raise self._error(exc, "reach the bucket") from exc
        if not exists:
            raise StoreError(f"the S3 bucket {self.url} does not exist")
        self._bucket_seen = True

    def check(self) -> None:
        """Reach the bucket (creating it if allowed) and check it can lock objects.

        Nothing is written: a test object could never be removed from a locked bucket.
        """
        self._ensure_bucket()

    # -- reads ------------------------------------------------------------------------------

    def _head(
        self, key: str, *, version_id: str | None = None, checksum: bool = False
    ) -> Object | None:
        """HEAD an object: its metadata, or None when there is no such key."""
        extra = {"x-amz-checksum-mode": "ENABLED"} if checksum else None
        try:
            return self._client.stat_object(
                self.bucket, key, version_id=version_id, extra_headers=extra
            )
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchVersion"):
                self._check_bucket_exists()
                return None
            if exc.code == "NoSuchBucket":
                raise StoreError(f"the S3 bucket {self.url} does not exist") from None
            raise self._error(exc, "read", key) from exc
        except (MinioException, urllib3.exceptions.HTTPError, ValueError) as exc:
            raise self._error(exc, "read", key) from exc

    def open(self, sha256: str) -> BinaryIO:
        """Stream a stored object; closing the stream releases its connection."""
        key = object_key(sha256)
        try:
            response = self._client.get_object(self.bucket, key)
        except S3Error as exc:
            if exc.code == "NoSuchKey":
                self._check_bucket_exists()
                raise ObjectNotFound(sha256, self.url) from None
            if exc.code == "NoSuchBucket":
                raise StoreError(f"the S3 bucket {self.url} does not exist") from None
            raise self._error(exc, "read", key) from exc
        except (MinioException, urllib3.exceptions.HTTPError, ValueError) as exc:
            raise self._error(exc, "read", key) from exc
        raw = ResponseReader(response, lambda exc: self._error(exc, "read", key))
        return cast(BinaryIO, io.BufferedReader(raw, buffer_size=CHUNK_SIZE))

    def exists(self, sha256: str) -> bool:
        """Whether the object is stored (HEAD); StoreError if the bucket itself is missing."""
        return self._head(object_key(sha256)) is not None

    def stat(self, sha256: str) -> ObjectInfo:
        """Size, upload time, version and Object Lock state of a stored object (HEAD)."""
        obj = self._head(object_key(sha256))
        if obj is None:
            raise ObjectNotFound(sha256, self.url)
        return self._info(sha256, obj)

    def _info(self, sha256: str, obj: Object) -> ObjectInfo:
        headers = obj.metadata or {}
        mode = headers.get("x-amz-object-lock-mode") or None
        until = parse_timestamp(headers.get("x-amz-object-lock-retain-until-date"))
        hold_header = headers.get("x-amz-object-lock-legal-hold")
        hold = None if hold_header is None else hold_header.upper() == "ON"
        now = datetime.now(UTC)
        # "Read-only" here means "locked now": neither deletable nor overwritable in place.
        locked = bool(hold) or (mode is not None and until is not None and until > now)
        return ObjectInfo(
            sha256=sha256,
            size=int(obj.size or 0),
            stored_at=obj.last_modified,
            read_only=locked,
            retention_mode=mode.upper() if mode else None,
            retain_until=until,
            legal_hold=hold,
            version_id=obj.version_id,
        )

    def iter_digests(self) -> Iterator[str]:
        """Every stored digest in key order (S3 lists keys in order); stray keys are skipped."""
        try:
            for obj in self._client.list_objects(self.bucket, prefix=KEY_PREFIX, recursive=True):
                name = obj.object_name or ""
                digest = name.rsplit("/", 1)[-1]
                if len(digest) == 64 and set(digest) <= HEX and name == object_key(digest):
                    yield digest
        except S3Error as exc:
            if exc.code == "NoSuchBucket":
                raise StoreError(f"the S3 bucket {self.url} does not exist") from None
            raise self._error(exc, "list the objects of") from exc
        except (MinioException, urllib3.exceptions.HTTPError, ValueError) as exc:
            raise self._error(exc, "list the objects of") from exc

    # -- locks and deletion ------------------------------------------------------------------

    supports_object_lock = True

    def set_legal_hold(self, sha256: str, on: bool) -> bool:
        """Switch the Object Lock legal hold of the object's current version on or off."""
        key = object_key(sha256)
        action = "set the legal hold on" if on else "lift the legal hold on"
        try:
            if on:
                self._client.enable_object_legal_hold(self.bucket, key)
            else:
                self._client.disable_object_legal_hold(self.bucket, key)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchVersion"):
                raise ObjectNotFound(sha256, self.url) from None
            if exc.code == "NoSuchBucket":
                raise StoreError(f"the S3 bucket {self.url} does not exist") from None
            raise self._error(exc, action, key) from exc
        except (MinioException, urllib3.exceptions.HTTPError, ValueError) as exc:
            raise self._error(exc, action, key) from exc
        return True

    def extend_retention(self, sha256: str, until: datetime) -> datetime | None:
        """Retain the object at least ``until``: a later date is kept, an earlier one extended.

        The object's own mode is kept (COMPLIANCE stays COMPLIANCE); an object without one gets
        the store's mode. A store configured without retention sets none (returns None), and a
        date already past is not set (S3 refuses it and it would protect nothing).
        """
        key = object_key(sha256)
        obj = self._head(key)
        if obj is None:
            raise ObjectNotFound(sha256, self.url)
        info = self._info(sha256, obj)
        # Whole seconds, rounded up: servers keep the date at that precision, and rounding
        # down would shorten the period asked for.
        until = until.astimezone(UTC)
        if until.microsecond:
            until = until.replace(microsecond=0) + timedelta(seconds=1)
        if info.retain_until is not None and info.retain_until >= until:
            return info.retain_until
        mode = info.retention_mode or self.retention_mode
        if mode is None or until <= datetime.now(UTC):
            return info.retain_until
        try:
            self._client.set_object_retention(
                self.bucket, key, Retention(mode, until), version_id=obj.version_id
            )
        except (MinioException, urllib3.exceptions.HTTPError, ValueError) as exc:
            raise self._error(exc, "extend the retention of", key) from exc
        return until

    def delete(self, sha256: str, *, durable: bool = True, bypass_governance: bool = False) -> bool:
        """Remove every version of the object (and any delete marker) for good.

        A plain DELETE on a versioned bucket only adds a delete marker and leaves the bytes, so
        each version is deleted by its id. Object Lock makes the server refuse a locked version;
        that becomes ``ObjectLocked`` naming the legal hold or the retention date.
        ``bypass_governance`` sends ``x-amz-bypass-governance-retention`` (needs
        ``s3:BypassGovernanceRetention``); nothing bypasses COMPLIANCE or a legal hold.
        """
        key = object_key(sha256)
        versions = self._versions(key)
        # Data before delete markers: if a locked version stops us, the key still reads.
        versions.sort(key=lambda v: v[1])
        removed = False
        for version_id, is_marker in versions:
            headers = {"x-amz-bypass-governance-retention": "true"} if bypass_governance else None
            query = {"versionId": version_id} if version_id else None
            try:
                self._client._execute(
                    "DELETE", self.bucket, key, headers=headers, query_params=query
                )
            except S3Error as exc:
                if exc.code in ("NoSuchKey", "NoSuchVersion"):
                    continue
                if exc.code == "AccessDenied":
                    lock = self._describe_lock(key, version_id, bypass_governance)
                    if lock is not None:
                        raise ObjectLocked(
                            f"cannot delete {self._where(key)}: it is protected by Object Lock "
                            f"({lock})",
                            sha256,
                        ) from None
                raise self._error(exc, "delete", key) from exc
            except (MinioException, urllib3.exceptions.HTTPError, ValueError) as exc:
                raise self._error(exc, "delete", key) from exc
            removed = removed or not is_marker
        return removed

    def _versions(self, key: str) -> list[tuple[str | None, bool]]:
        """(version id, is delete marker) of every version of exactly this key."""
        try:
            listed = self._client.list_objects(
                self.bucket, prefix=key, recursive=True, include_version=True
            )
            return [
                (obj.version_id, bool(obj.is_delete_marker))
                for obj in listed
                if obj.object_name == key
            ]
        except S3Error as exc:
            if exc.code == "NoSuchBucket":
                raise StoreError(f"the S3 bucket {self.url} does not exist") from None
            raise self._error(exc, "list the versions of", key) from exc
        except (MinioException, urllib3.exceptions.HTTPError, ValueError) as exc:
            raise self._error(exc, "list the versions of", key) from exc

    def _describe_lock(self, key: str, version_id: str | None, bypass: bool) -> str | None:
        """The lock that keeps a version from being deleted, in words; None if none is seen."""
        try:
            obj = self._head(key, version_id=version_id)
        except StoreError:
            return None
        if obj is None:
            return None
        info = self._info(key.rsplit("/", 1)[-1], obj)
        reasons = []
        if info.legal_hold:
            reasons.append("legal hold on")
        if info.retain_until is not None and info.retain_until > datetime.now(UTC):
            until = to_iso8601utc(info.retain_until)
            hint = ""
            if info.retention_mode == GOVERNANCE:
                hint = (
                    "; the bypass was refused: it needs s3:BypassGovernanceRetention"
                    if bypass
                    else "; only a bypass with s3:BypassGovernanceRetention removes it earlier"
                )
            reasons.append(f"{info.retention_mode or 'retention'} until {until}{hint}")
        return "; ".join(reasons) or None

    # -- writes -----------------------------------------------------------------------------

    def put(
        self,
        data: bytes | BinaryIO,
        *,
        media_type: str = "application/octet-stream",
        durable: bool = True,  # S3 acknowledges a PUT only once it is durable: nothing to defer
    ) -> PutResult:
        """Store bytes or a stream under their SHA-256, locked; idempotent.

        The key needs the digest, so a stream is first spooled (in memory up to 8 MiB, else
        to a temporary file in TMPDIR) while it is hashed. An object already stored is not
        uploaded again (no second version). Uploads carry the SHA-256 for the server to check.
        """
        self._ensure_bucket()
        spool: IO[bytes] | None = None
        try:
            if isinstance(data, bytes | bytearray | memoryview):
                body: memoryview | IO[bytes] = memoryview(data).cast("B")
                sha256 = hashlib.sha256(body).hexdigest()
                size = len(body)
            else:
                spool, sha256, size = spool_and_hash(data)
                body = spool
            key = object_key(sha256)

            if self._stored(key, size):
                return PutResult(sha256, size, created=False)

            digest = bytes.fromhex(sha256)
            until = self._retain_until()
            if size <= self.part_size:
                outcome = self._put_single(key, read_body(body, 0, size), digest, media_type, until)
            else:
                outcome = self._put_multipart(key, body, size, media_type, until)
            if outcome is None:
                # The conditional write lost: a concurrent writer stored the same bytes first, or
                # a retried request of ours had succeeded; either way, no second version.
                if not self._stored(key, size):
                    raise StoreError(
                        f"cannot upload {self._where(key)}: a concurrent upload of the same "
                        "bytes has not completed; try again"
                    )
                return PutResult(sha256, size, created=False)
            version_id, expected_checksum, checked = outcome
            confirmed = self._confirm_upload(key, version_id, size, expected_checksum, until)
            # A multipart checksum is composed by the server from the parts it received (and
            # checked); a single PUT's may be our header echoed back (moto), hence its ETag.
            checked = checked or (confirmed and size > self.part_size)
            return PutResult(
                sha256, size, created=True, checked=checked and not self.verify_on_write
            )
        except OSError as exc:  # reading the caller's stream, or the spool file (TMPDIR)
            reason = exc.strerror or str(exc)
            raise StoreError(
                f"cannot upload to {self.url}: reading or spooling the data failed: {reason}"
            ) from exc
        finally:
            if spool is not None:
                spool.close()

    def _stored(self, key: str, size: int) -> bool:
        """Whether the key is stored (HEAD), with the size its content-addressed name implies."""
        existing = self._head(key)
        if existing is None:
            return False
        if existing.size != size:
            raise IntegrityError(
                f"{self._where(key)} has {existing.size} bytes, but its content has {size}: "
                "the stored object is corrupt"
            )
        return True

    def _retain_until(self) -> datetime | None:
        if self.retention_mode is None:
            return None
        # Whole seconds: servers echo the date back at that precision.
        now = datetime.now(UTC).replace(microsecond=0)
        return now + timedelta(days=self.retention_days)

    def _lock_headers(self, until: datetime | None) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self.retention_mode is not None and until is not None:
            headers["x-amz-object-lock-mode"] = self.retention_mode
            headers["x-amz-object-lock-retain-until-date"] = cast(str, to_iso8601utc(until))
        if self.legal_hold:
            headers["x-amz-object-lock-legal-hold"] = "ON"
        return headers

    def _put_single(
        self, key: str, body: bytes, digest: bytes, media_type: str, until: datetime | None
    ) -> tuple[str | None, str, bool] | None:
        """PutObject; (version id, checksum, whether the server's MD5 of what it received was
        compared) or None if the key appeared meanwhile."""
        checksum = b64(digest)
        headers = {
            "Content-Type": media_type,
            # S3 and MinIO recompute the SHA-256 of what arrives and refuse a mismatch.
            "x-amz-sdk-checksum-algorithm": "SHA256",
            "x-amz-checksum-sha256": checksum,
            # Refused with 412 if the key exists: a racing writer cannot add a version.
            "If-None-Match": "*",
            **self._lock_headers(until),
        }
        try:
            # minio's public put_object() would turn If-None-Match into user metadata
            # (x-amz-meta-if-none-match); _put_object() sends the headers as they are.
            result = self._client._put_object(self.bucket, key, body, headers)
        except S3Error as exc:
            if exc.code in CONDITIONAL_WRITE_LOST:
                return None
            raise self._error(exc, "upload", key) from exc
        except (MinioException, urllib3.exceptions.HTTPError, ValueError) as exc:
            raise self._error(exc, "upload", key) from exc
        self._check_echo(key, result.http_headers.get("x-amz-checksum-sha256"), checksum)
        return result.version_id, checksum, self._check_etag(key, result.http_headers, body)

    def _check_etag(self, key: str, headers: Mapping[str, str], body: bytes) -> bool:
        """Compare the ETag of a single PUT with the MD5 of the bytes sent; False if the ETag
        is no MD5 of the content (objects encrypted with KMS or a customer key).

        Some servers (moto) store a PUT without checking x-amz-checksum-sha256 and echo it
        back unchanged; the ETag is computed by every server from what it received.
        """
        etag = (headers.get("ETag") or headers.get("etag") or "").strip('"').lower()
        encryption = (headers.get("x-amz-server-side-encryption") or "").lower()
        if (
            len(etag) != 32
            or not set(etag) <= HEX_DIGITS
            or encryption.startswith("aws:kms")
            or headers.get("x-amz-server-side-encryption-customer-algorithm")
        ):
            return False
        sent = hashlib.md5(body, usedforsecurity=False).hexdigest()
        if etag != sent:
            raise IntegrityError(
                f"S3 reports MD5 {etag} for {self._where(key)} but the bytes sent hash to "
                f"{sent}: the upload was corrupted in transit"
            )
        return True

    def _put_multipart(
        self,
        key: str,
        body: memoryview | IO[bytes],
        size: int,
        media_type: str,
        until: datetime | None,
    ) -> tuple[str | None, str, bool] | None:
        """A multipart upload with a SHA-256 per part, one part in memory at a time.

        Returns (version id, composite checksum, whether the server reported its composite
        checksum of the parts it received), or None if the key appeared meanwhile.

        minio-py 7.2 has no public API for per-part checksums (its put_object() sends parts
        without them and lists only ETags on completion), so this drives the internal
        _create_multipart_upload / _put_object / _execute calls directly. Any failure aborts
        the upload so no orphaned parts are left (and billed) on the server.
        """
        part_size = self.part_size
        while -(-size // part_size) > MAX_PARTS:  # S3 allows at most 10,000 parts
            part_size *= 2
        headers = {
            "Content-Type": media_type,
            "x-amz-checksum-algorithm": "SHA256",
            **self._lock_headers(until),
        }
        try:
            upload_id = self._client._create_multipart_upload(self.bucket, key, headers)
        except (MinioException, urllib3.exceptions.HTTPError, ValueError) as exc:
            raise self._error(exc, "start a multipart upload of", key) from exc

        try:
            parts: list[tuple[int, str, str]] = []  # (number, ETag, base64 SHA-256)
            digests = []
            for number, offset in enumerate(range(0, size, part_size), start=1):
                chunk = read_body(body, offset, min(part_size, size - offset))
                digest = hashlib.sha256(chunk).digest()
                checksum = b64(digest)
                result = self._client._put_object(
                    self.bucket,
                    key,
                    chunk,
                    {"x-amz-sdk-checksum-algorithm": "SHA256", "x-amz-checksum-sha256": checksum},
                    query_params={"partNumber": str(number), "uploadId": upload_id},
                )
                del chunk
                self._check_echo(key, result.http_headers.get("x-amz-checksum-sha256"), checksum)
                parts.append((number, cast(str, result.etag), checksum))
                digests.append(digest)
            # The object's checksum is the SHA-256 of the parts' SHA-256s ("composite").
            expected = b64(hashlib.sha256(b"".join(digests)).digest())
            version_id, echoed = self._complete_multipart(key, upload_id, parts, expected)
        except BaseException as exc:
            self._abort(key, upload_id, exc)
            if isinstance(exc, S3Error) and exc.code in CONDITIONAL_WRITE_LOST:
                return None
            if isinstance(exc, MinioException | urllib3.exceptions.HTTPError | ValueError):
                raise self._error(exc, "upload", key) from exc
            raise
        return version_id, expected, echoed

    def _complete_multipart(
        self, key: str, upload_id: str, parts: list[tuple[int, str, str]], expected: str
    ) -> tuple[str | None, bool]:
        """CompleteMultipartUpload listing each part's ChecksumSHA256; returns the version id
        and whether the server reported the object's composite checksum (then compared)."""
        root = Element("CompleteMultipartUpload")
        for number, etag, checksum in parts:
            part = SubElement(root, "Part")
            SubElement(part, "ChecksumSHA256", checksum)
            SubElement(part, "ETag", f'"{etag}"')
            SubElement(part, "PartNumber", str(number))
        body = getbytes(root)
        headers = {
            "Content-Type": "application/xml",
            "Content-MD5": b64(hashlib.md5(body, usedforsecurity=False).digest()),
            "If-None-Match": "*",
        }
        response = self._client._execute(
            "POST",
            self.bucket,
            key,
            body=body,
            headers=headers,
            query_params={"uploadId": upload_id},
        )
        # S3 may answer 200 and still report an error in the body (documented for this call).
        try:
            element = ET.fromstring(response.data)
        except ET.ParseError as exc:
            raise StoreError(
                f"cannot upload {self._where(key)}: unreadable CompleteMultipartUpload response"
            ) from exc
        tag = element.tag.rsplit("}", 1)[-1]
        if tag == "Error":
            code = findtext(element, "Code") or "unknown error"
            text = findtext(element, "Message") or ""
            raise StoreError(self._redact(f"cannot upload {self._where(key)}: {code} {text}"))
        echoed = findtext(element, "ChecksumSHA256")
        self._check_echo(key, echoed, expected)
        return response.headers.get("x-amz-version-id"), bool(echoed)

    def _abort(self, key: str, upload_id: str, cause: BaseException) -> None:
        try:
            self._client._abort_multipart_upload(self.bucket, key, upload_id)
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            cause.add_note(
                self._redact(
                    f"the incomplete multipart upload {upload_id} of {key} could not be "
                    f"aborted: {describe_error(exc)}"
                )
            )

    def _check_echo(self, key: str, echoed: str | None, expected: str) -> None:
        """Compare a checksum the server reports with ours (servers may omit it)."""
        if echoed and echoed.split("-", 1)[0] != expected:
            raise IntegrityError(
                f"S3 reports SHA-256 {echoed} for {self._where(key)} but the bytes sent hash "
                f"to {expected}: the upload was corrupted in transit"
            )

    def _confirm_upload(
        self, key: str, version_id: str | None, size: int, checksum: str, until: datetime | None
    ) -> bool:
        """HEAD the new version: size, checksum and lock must be what was sent; True if the
        server reported a checksum (which matched).

        A server that ignores lock headers (moto ignores them on multipart uploads) gets the
        retention and legal hold applied explicitly, then they are checked again.
        """
        obj = self._head(key, version_id=version_id, checksum=True)
        if obj is None:
            raise StoreError(f"{self._where(key)} is missing right after its upload")
        if obj.size != size:
            raise IntegrityError(
                f"S3 stored {obj.size} bytes for {self._where(key)} but {size} were sent"
            )
        headers = obj.metadata or {}
        echoed = headers.get("x-amz-checksum-sha256")
        self._check_echo(key, echoed, checksum)
        if not self._locking or not self._lock_missing(headers, until):
            return bool(echoed)
        try:
            if self.retention_mode is not None and until is not None:
                self._client.set_object_retention(
                    self.bucket, key, Retention(self.retention_mode, until), version_id=version_id
                )
            if self.legal_hold:
                self._client.enable_object_legal_hold(self.bucket, key, version_id=version_id)
        except (MinioException, urllib3.exceptions.HTTPError, ValueError) as exc:
            raise self._error(exc, "lock", key) from exc
        obj = self._head(key, version_id=version_id)
        missing = self._lock_missing((obj.metadata or {}) if obj else {}, until)
        if missing:
            raise StoreError(f"the S3 server did not apply the {missing} to {self._where(key)}")
        return bool(echoed)

    def _lock_missing(self, headers: Mapping[str, str], until: datetime | None) -> str | None:
        """What part of the configured lock the HEAD headers lack, if any."""
        if self.retention_mode is not None and until is not None:
            mode = (headers.get("x-amz-object-lock-mode") or "").upper()
            stored = parse_timestamp(headers.get("x-amz-object-lock-retain-until-date"))
            # One second of slack: servers keep the date at second or millisecond precision.
            too_early = stored is None or stored < until - timedelta(seconds=1)
            if mode != self.retention_mode or too_early:
                return f"{self.retention_mode} retention until {until.isoformat()}"
        if self.legal_hold and (headers.get("x-amz-object-lock-legal-hold") or "").upper() != "ON":
            return "legal hold"
        return None

    def close(self) -> None:
        """Release the connection pool."""
        self._http.clear()


class ResponseReader(io.RawIOBase):
    """A GET response as a raw binary stream; closing it releases the connection."""

    def __init__(
        self,
        response: urllib3.BaseHTTPResponse,
        on_error: Callable[[BaseException], StoreError],
    ) -> None:
        super().__init__()
        self._response = response
        self._on_error = on_error

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        try:
            # decode_content=False: the stored bytes themselves, whatever Content-Encoding says.
            data = self._response.read(len(view), decode_content=False)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._on_error(exc) from exc
        n = len(data)
        view[:n] = data
        return n

    def readall(self) -> bytes:
        # RawIOBase.readall reads 8 KiB at a time; read() of a whole object goes by 1 MiB.
        chunks = []
        buffer = bytearray(CHUNK_SIZE)
        while n := self.readinto(buffer):
            chunks.append(bytes(buffer[:n]))
        return b"".join(chunks)

    def close(self) -> None:
        if not self.closed:
            try:
                self._response.close()
                self._response.release_conn()
            finally:
                super().close()


def spool_and_hash(stream: BinaryIO) -> tuple[IO[bytes], str, int]:
    """Copy a stream to a spool file (memory, then disk past 8 MiB) while hashing it."""
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY, prefix="s3-put-")  # noqa: SIM115
    try:
        digest = hashlib.sha256()
        size = 0
        while chunk := stream.read(CHUNK_SIZE):
            digest.update(chunk)
            spool.write(chunk)
            size += len(chunk)
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return cast(IO[bytes], spool), digest.hexdigest(), size


def read_body(body: memoryview | IO[bytes], offset: int, length: int) -> bytes:
    """``length`` bytes at ``offset`` of the upload (a memory view or the spool file)."""
    if isinstance(body, memoryview):
        return bytes(body[offset : offset + length])
    body.seek(offset)
    data = body.read(length)
    if len(data) != length:
        raise OSError(f"spool file returned {len(data)} of {length} bytes")
    return data


def b64(digest: bytes) -> str:
    """Base64 of a binary digest, as S3 checksum headers carry it."""
    return base64.b64encode(digest).decode("ascii")


def findtext(element: ET.Element, name: str) -> str | None:
    """Text of a direct child, with or without the S3 XML namespace."""
    for child in element:
        if child.tag.rsplit("}", 1)[-1] == name:
            return child.text
    return None


def parse_bool(value: str) -> bool:
    """A boolean URL parameter: true/false, yes/no, on/off, 1/0."""
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise StoreError(f"not a boolean in an S3 URL: {value!r}")


def parse_timestamp(value: str | None) -> datetime | None:
    """An ISO-8601 timestamp from a lock header (``2035-01-01T00:00:00.000Z``), in UTC."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def describe_error(exc: BaseException) -> str:
    """The cause of a failed S3 request in a few words, on one line."""
    if isinstance(exc, S3Error):
        code = exc.code or "error"
        text = (exc.message or "").strip()
        if code in AUTH_CODES:
            hint = "access denied (check the access key and secret key)"
            if code == "RequestTimeTooSkewed":
                hint = "the clock of this machine differs too much from the server's"
            return one_line(f"{hint}: {code} {text}".strip())
        return one_line(f"{code} {text}".strip())
    if isinstance(exc, InvalidResponseError):
        return one_line(f"not an S3 server (HTTP {exc._code}, {exc._content_type or 'no type'})")
    if isinstance(exc, ServerError):
        return one_line(f"server error (HTTP {exc.status_code})")
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        return describe_error(exc.reason)
    # NameResolutionError is a NewConnectionError, which is a ConnectTimeoutError: most
    # specific first.
    if isinstance(exc, urllib3.exceptions.NameResolutionError):
        return "host name not found"
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        if has_cause(exc, ConnectionRefusedError):
            return "connection refused"
        return one_line(f"cannot connect: {exc.__cause__ or exc}")
    if isinstance(exc, urllib3.exceptions.ConnectTimeoutError):
        return "connection timed out"
    if isinstance(exc, urllib3.exceptions.ReadTimeoutError):
        return "timed out waiting for the server"
    if isinstance(exc, urllib3.exceptions.SSLError):
        return one_line(f"TLS error: {exc}")
    if isinstance(exc, urllib3.exceptions.ProtocolError):
        # ProtocolError("Connection aborted.", RemoteDisconnected(...)): the second is the why.
        detail = exc.args[-1] if exc.args else exc
        return one_line(f"connection broken: {detail}")
    return one_line(f"{type(exc).__name__}: {exc}")


def has_cause(exc: BaseException, kind: type[BaseException]) -> bool:
    """Whether ``exc`` or anything in its cause/context chain is a ``kind``."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def one_line(text: str, limit: int = 300) -> str:
    """Collapse whitespace and cut long text: messages are printed on one line."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = ["S3Store"]
