"""One WARC 1.1 file per capture, written with warcio: SHA-256 digests, redaction, streaming.

Writing (one ``CaptureWarc`` per capture; records go to disk as they are written)::

    with CaptureWarc(path, software={"dsa-evidence": "0.1.0"}, operator="Legal team",
                     host="capture-1", user_agent=ua, redactor=Redactor()) as warc:
        req = warc.request(url, "GET", request_headers, date=sent_at)
        resp = warc.response(url, 200, "OK", response_headers, body, date=received_at,
                             ip="192.0.2.7", concurrent_to=req)
        dom, names = warc.redactor.redact_text(dom_bytes)     # the caller decides about bodies
        warc.resource(f"urn:dom:{url}", "text/html", dom, date=done_at, concurrent_to=resp,
                      redacted=names)
        warc.resource(f"urn:screenshot:{url}", "image/png", png, date=done_at, concurrent_to=resp)
        warc.metadata(f"urn:metadata:{url}", {"final_url": url, ...}, date=done_at,
                      concurrent_to=resp)
    warc.redacted        # every name redacted in the file, e.g. {"query:access_token", ...}

Reading::

    for rec in iter_records(path):          # digests verified while reading
        rec.type, rec.uri, rec.headers, rec.payload

The file is gzip-compressed per record (each record its own gzip member, so readers can seek
to an offset from a CDXJ index). The first record is ``warcinfo``; every other record names
it in ``WARC-Warcinfo-ID``. Each method returns the new record's ``WARC-Record-ID``.

Digests: ``WARC-Block-Digest`` on every record and ``WARC-Payload-Digest`` on every record
but ``warcinfo``, both SHA-256 written as ``sha256:`` followed by 64 lower-case hex digits (the
form ``sha256sum`` prints, also used by the ``recordDigest`` of WACZ indexes). warcio 1.8
writes SHA-1 in base32 and has no option for another algorithm, so this module computes both
digests itself and hands them to warcio, which then does not compute its own. ``warcio
check`` verifies them: it reads the algorithm from the label and accepts hex, base32 or base64.

Redaction: the ``Redactor`` (``crawlers/redaction.py``) is applied to every URL and header
written: ``WARC-Target-URI``, the HTTP request line and all HTTP headers, and the JSON of
metadata records and warcinfo fields. Each record from which something was removed carries
``WARC-Redacted: header:cookie, query:access_token`` (names, never values); ``redacted`` is
the union for the whole file. Bodies (request and response bodies, resource data) are written
as given: a body that contains a secret is the caller's decision (``redactor.redact_text``, and
pass the names it returns as ``redacted=`` so that the record says so).

HTTP messages: headers are written as given, in order, with their names as spelled and
duplicates kept (several ``Set-Cookie`` lines stay several lines). Header names and values may
be ``str`` (written as UTF-8) or ``bytes`` (written verbatim: what Scrapy hands over). HTTP/2
pseudo-headers (``:authority``, ``:path`` ...) are not HTTP/1 syntax and are left out; the
request line, Host and status line carry the same facts. A response ``body`` is the message
body as transferred, Content-Encoding intact, transfer coding (chunked) removed. A body given
as a binary file is streamed; if it cannot seek it is spooled to a temporary file (8 MiB in
memory), because the digests go in the record header before the body.

One writer per capture; a ``CaptureWarc`` is not thread-safe. The file is created exclusively
(an existing file is never overwritten) and flushed to disk (fsync) on ``close``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from functools import cache
from http import HTTPStatus
from importlib import metadata as importlib_metadata
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, NamedTuple, Self
from urllib.parse import quote

from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from crawlers.redaction import Redactor
from schemas.time import format_rfc3339, utc_now

WARC_VERSION = "WARC/1.1"
DIGEST_ALGORITHM = "sha256"
REDACTED_HEADER = "WARC-Redacted"
WARCINFO_FORMAT = "WARC File Format 1.1"
WARC_1_1_SPEC = "http://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/"
_CHUNK = 1024 * 1024
_SPOOL_MEMORY = 8 * 1024 * 1024

Header = tuple[str | bytes, str | bytes]


def sha256_label(digest: bytes) -> str:
    """The WARC form of a SHA-256 digest: ``sha256:`` and 64 lower-case hex digits."""
    return f"{DIGEST_ALGORITHM}:{digest.hex()}"


def _latin1(value: str | bytes) -> str:
    # Internally every header is a str holding one character per byte (latin-1), so that
    # bytes handed over by the HTTP client are written back unchanged.
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return value.encode("utf-8").decode("latin-1")


def _check_header(name: str, value: str) -> None:
    # A CR or LF would end the header line early and forge structure in the record.
    if not name or any(c in name for c in ":\r\n\t ") or "\r" in value or "\n" in value:
        raise ValueError(f"malformed HTTP header {name!r}: {value!r}")


class _WireHeaders(StatusAndHeaders):
    """HTTP headers written byte for byte (warcio would %-encode non-ASCII values)."""

    def compute_headers_buffer(self, header_filter: Any = None) -> None:
        self.headers_buff = self.to_str(header_filter).encode("latin-1") + b"\r\n"


class _Body(NamedTuple):
    stream: BinaryIO
    length: int
    digest: hashlib._Hash  # the payload digest so far (the block digest adds the headers)
    spool: BinaryIO | None


def _prepare_body(body: bytes | BinaryIO) -> _Body:
    """Hash a body without holding a large one in memory; leave it ready to be read again."""
    digest = hashlib.sha256()
    if isinstance(body, bytes | bytearray | memoryview):
        data = bytes(body)
        digest.update(data)
        return _Body(io.BytesIO(data), len(data), digest, None)
    if body.seekable():
        start = body.tell()
        length = 0
        while chunk := body.read(_CHUNK):
            digest.update(chunk)
            length += len(chunk)
        body.seek(start)
        return _Body(body, length, digest, None)
    spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_MEMORY)  # noqa: SIM115 (closed later)
    length = 0
    while chunk := body.read(_CHUNK):
        digest.update(chunk)
        spool.write(chunk)
        length += len(chunk)
    spool.seek(0)
    return _Body(spool, length, digest, spool)  # type: ignore[arg-type]


def _request_target(url: str) -> str:
    # origin-form of RFC 9112: path and query, no fragment
    rest = url.split("#", 1)[0]
    scheme_end = rest.find("://")
    if scheme_end >= 0:
        slash = rest.find("/", scheme_end + 3)
        question = rest.find("?", scheme_end + 3)
        starts = [i for i in (slash, question) if i >= 0]
        rest = rest[min(starts) :] if starts else ""
    if not rest.startswith("/"):
        rest = "/" + rest
    return rest


def _format_redacted(names: Sequence[str]) -> str:
    # Names come from URLs and headers; keep the list parseable (comma-separated tokens).
    return ", ".join(quote(n, safe="!#$&'*+-.^_`|~:/@") for n in sorted(set(names)))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_rfc3339(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"metadata value of type {type(value).__name__} is not JSON")


@cache  # importlib.metadata reads the dist-info files on every call
def _warcio_version() -> str:
    try:
        return importlib_metadata.version("warcio")
    except importlib_metadata.PackageNotFoundError:  # pragma: no cover
        return "unknown"


class CaptureWarc:
    """A WARC 1.1 file being written for one capture: warcinfo first, then one record per call.

    Use as a context manager or call ``close()``. Every method returns the record's
    ``WARC-Record-ID`` (``<urn:uuid:...>``), to pass as ``concurrent_to`` of related records.
    """

    def __init__(
        self,
        path: Path,
        *,
        software: dict[str, str],
        operator: str | None,
        host: str | None,
        user_agent: str | None,
        extra_info: dict[str, str] | None = None,
        redactor: Redactor | None = None,
        date: datetime | None = None,
    ) -> None:
        """Create ``path`` (it must not exist) and write the warcinfo record.

        ``software`` maps names to versions (``warcio`` is added if missing), ``operator`` is
        the person or organisation responsible, ``host`` the capturing machine,
        ``user_agent`` the User-Agent sent; ``extra_info`` adds warcinfo fields (for example
        ``isPartOf``, ``description``, ``robots``).
        """
        self.path = Path(path)
        self.redactor = redactor if redactor is not None else Redactor()
        self.redacted: set[str] = set()
        self.records = 0
        self._file: BinaryIO | None = open(self.path, "xb")  # noqa: SIM115 (closed in close())
        self._writer = WARCWriter(self._file, gzip=True, warc_version=WARC_VERSION)
        self.warcinfo_id: str = ""
        try:
            self.warcinfo_id = self._warcinfo(
                software, operator, host, user_agent, extra_info or {}, date or utc_now()
            )
        except BaseException:
            self._file.close()
            self._file = None
            self.path.unlink(missing_ok=True)
            raise

    # -- context manager -------------------------------------------------------------------
    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Flush the file to disk (fsync) and close it; further writes raise ValueError."""
        if self._file is None:
            return
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        finally:
            self._file.close()
            self._file = None

    # -- records ---------------------------------------------------------------------------
    def _warcinfo(
        self,
        software: dict[str, str],
        operator: str | None,
        host: str | None,
        user_agent: str | None,
        extra_info: dict[str, str],
        date: datetime,
    ) -> str:
        products = dict(software)
        products.setdefault("warcio", _warcio_version())
        fields: list[tuple[str, str]] = [
            ("software", " ".join(f"{n}/{v}" for n, v in products.items())),
            ("format", WARCINFO_FORMAT),
            ("conformsTo", WARC_1_1_SPEC),
        ]
        if operator:
            fields.append(("operator", operator))
        if host:
            fields.append(("hostname", host))
        if user_agent:
            fields.append(("http-header-user-agent", user_agent))
        fields.extend((k, v) for k, v in extra_info.items() if v)
        names: list[str] = []
        cleaned: list[tuple[str, str]] = []
        for name, value in fields:
            value, found = self.redactor.redact_data(str(value))
            names.extend(found)
            _check_header(name, value)
            cleaned.append((name, value))
        body = "".join(f"{n}: {v}\r\n" for n, v in cleaned).encode("utf-8")
        return self._write(
            "warcinfo",
            None,
            date=date,
            content_type="application/warc-fields",
            body=body,
            redacted=names,
            extra=[("WARC-Filename", self.path.name)],
        )

    def request(
        self,
        url: str,
        method: str,
        headers: Sequence[Header],
        body: bytes | BinaryIO = b"",
        *,
        date: datetime,
        http_version: str = "HTTP/1.1",
        concurrent_to: str | None = None,
        redacted: Sequence[str] = (),
    ) -> str:
        """A ``request`` record: request line, headers and body of an HTTP request as sent."""
        url, names = self.redactor.redact_url(url)
        line = f"{_request_target(url)} {http_version}"
        http = self._http_headers(line, method.upper(), headers, names)
        return self._write(
            "request",
            url,
            date=date,
            content_type="application/http; msgtype=request",
            body=body,
            http=http,
            concurrent_to=concurrent_to,
            redacted=[*names, *redacted],
        )

    def response(
        self,
        url: str,
        status: int,
        reason: str,
        headers: Sequence[Header],
        body: bytes | BinaryIO,
        *,
        date: datetime,
        ip: str | None = None,
        concurrent_to: str | None = None,
        http_version: str = "HTTP/1.1",
        truncated: str | None = None,
        redacted: Sequence[str] = (),
    ) -> str:
        """A ``response`` record: status line, headers and body as transferred.

        ``reason`` may be empty (HTTP/2 has none): the standard phrase is written. ``truncated``
        (``length``, ``time``, ``disconnect`` or ``unspecified``) marks a body cut short.
        """
        url, names = self.redactor.redact_url(url)
        if not reason:
            try:
                reason = HTTPStatus(status).phrase
            except ValueError:
                reason = ""
        line = f"{status} {reason}".rstrip()
        http = self._http_headers(line, http_version, headers, names)
        extra = [("WARC-Truncated", truncated)] if truncated else []
        return self._write(
            "response",
            url,
            date=date,
            content_type="application/http; msgtype=response",
            body=body,
            http=http,
            ip=ip,
            concurrent_to=concurrent_to,
            redacted=[*names, *redacted],
            extra=extra,
        )

    def resource(
        self,
        uri: str,
        content_type: str,
        data: bytes | BinaryIO,
        *,
        date: datetime,
        concurrent_to: str | None = None,
        redacted: Sequence[str] = (),
    ) -> str:
        """A ``resource`` record: a screenshot, PDF or rendered DOM, bytes as given.

        Use a URI that does not collide with an HTTP URL, e.g. ``urn:screenshot:<page url>``;
        ``redacted`` names what the caller scrubbed from ``data`` (from ``redact_text``).
        """
        uri, names = self.redactor.redact_url(uri)
        return self._write(
            "resource",
            uri,
            date=date,
            content_type=content_type,
            body=data,
            concurrent_to=concurrent_to,
            redacted=[*names, *redacted],
        )

    def metadata(
        self,
        uri: str,
        fields: dict[str, Any],
        *,
        date: datetime,
        concurrent_to: str | None = None,
    ) -> str:
        """A ``metadata`` record with ``fields`` as JSON (sorted keys, UTF-8), redacted.

        Use a ``urn:metadata:<page url>`` URI so that replay tools do not mistake it for the
        page. Datetimes become RFC 3339 strings.
        """
        uri, names = self.redactor.redact_url(uri)
        fields, found = self.redactor.redact_data(fields)
        body = json.dumps(
            fields, indent=2, sort_keys=True, ensure_ascii=False, default=_json_default
        ).encode("utf-8")
        return self._write(
            "metadata",
            uri,
            date=date,
            content_type="application/json",
            body=body,
            concurrent_to=concurrent_to,
            redacted=[*names, *found],
        )

    # -- internals -------------------------------------------------------------------------
    def _http_headers(
        self, line: str, first: str, headers: Sequence[Header], names: list[str]
    ) -> _WireHeaders:
        wire = [(_latin1(k), _latin1(v)) for k, v in headers]
        wire = [(k, v) for k, v in wire if not k.startswith(":")]
        for k, v in wire:
            _check_header(k, v)
        redacted, found = self.redactor.redact_headers(wire)
        names.extend(found)
        return _WireHeaders(line, redacted, protocol=first)

    def _write(
        self,
        rec_type: str,
        uri: str | None,
        *,
        date: datetime,
        content_type: str,
        body: bytes | BinaryIO,
        http: _WireHeaders | None = None,
        ip: str | None = None,
        concurrent_to: str | None = None,
        redacted: Sequence[str] = (),
        extra: Sequence[tuple[str, str]] = (),
    ) -> str:
        if self._file is None:
            raise ValueError(f"{self.path}: the WARC is closed")
        record_id = f"<urn:uuid:{uuid.uuid4()}>"
        warc_headers: list[tuple[str, str]] = [
            ("WARC-Type", rec_type),
            ("WARC-Record-ID", record_id),
            ("WARC-Date", format_rfc3339(date)),
        ]
        if uri is not None:
            warc_headers.append(("WARC-Target-URI", uri))
        if ip:
            warc_headers.append(("WARC-IP-Address", ip))
        if concurrent_to:
            warc_headers.append(("WARC-Concurrent-To", concurrent_to))
        if rec_type != "warcinfo":
            warc_headers.append(("WARC-Warcinfo-ID", self.warcinfo_id))
        warc_headers.extend(extra)
        if redacted:
            warc_headers.append((REDACTED_HEADER, _format_redacted(redacted)))
        for name, value in [*warc_headers, ("Content-Type", content_type)]:
            # a line break would end the header early and forge structure in the record
            if "\r" in value or "\n" in value:
                raise ValueError(f"malformed {name} {value!r}")

        prepared = _prepare_body(body)
        try:
            if http is not None:
                http.compute_headers_buffer()
            warc_headers.append(("WARC-Block-Digest", self._block_digest(http, prepared)))
            if rec_type != "warcinfo":
                warc_headers.append(("WARC-Payload-Digest", sha256_label(prepared.digest.digest())))
            warc_headers.append(("Content-Type", content_type))
            record = self._writer.create_warc_record(
                uri or "",
                rec_type,
                payload=prepared.stream,
                length=prepared.length,
                warc_content_type=content_type,
                warc_headers=StatusAndHeaders("", warc_headers, protocol=WARC_VERSION),
                http_headers=http,
            )
            self._writer.write_record(record)
        finally:
            if prepared.spool is not None:
                prepared.spool.close()
        self.redacted.update(redacted)
        self.records += 1
        return record_id

    @staticmethod
    def _block_digest(http: _WireHeaders | None, prepared: _Body) -> str:
        """SHA-256 of the block: the HTTP header bytes (if any), then the body."""
        if http is None:
            return sha256_label(prepared.digest.digest())
        block = hashlib.sha256(http.headers_buff)
        start = prepared.stream.tell()
        while chunk := prepared.stream.read(_CHUNK):
            block.update(chunk)
        prepared.stream.seek(start)
        return sha256_label(block.digest())


# -- reading -------------------------------------------------------------------------------
class WarcRecord(NamedTuple):
    """One record read back: its type, target URI, HTTP headers (``[]`` if it has none), and
    payload; then the WARC headers and the HTTP request or status line."""

    type: str
    uri: str | None
    headers: list[tuple[str, str]]
    payload: bytes
    warc_headers: list[tuple[str, str]]
    http_line: str | None

    def warc_header(self, name: str) -> str | None:
        """The first WARC header of that name (case-insensitive)."""
        lowered = name.lower()
        return next((v for k, v in self.warc_headers if k.lower() == lowered), None)


def iter_records(
    path: Path | str, *, decode: bool = True, verify: bool = True
) -> Iterator[WarcRecord]:
    """Stream the records of a WARC file (gzip or not).

    ``decode=True`` gives HTTP payloads with transfer and content codings removed (what a
    parser wants); ``decode=False`` gives them as stored (what the payload digest covers).
    ``verify=True`` checks every block and payload digest present and raises
    ``warcio.exceptions.ArchiveLoadFailed`` at the first mismatch.
    """
    with open(path, "rb") as stream:
        records = ArchiveIterator(stream, check_digests="raise" if verify else False)
        for record in records:
            reader = record.content_stream() if decode else record.raw_stream
            payload = reader.read()
            # read what a decoder left unread, so that the digest covers the whole block
            while record.raw_stream.read(_CHUNK):
                pass
            http = record.http_headers
            http_line = None
            headers: list[tuple[str, str]] = []
            if http is not None and record.rec_type in ("request", "response", "revisit"):
                http_line = f"{http.protocol} {http.statusline}".strip()
                headers = list(http.headers)
            yield WarcRecord(
                type=record.rec_type,
                uri=record.rec_headers.get_header("WARC-Target-URI"),
                headers=headers,
                payload=payload,
                warc_headers=list(record.rec_headers.headers),
                http_line=http_line,
            )
