"""Capture WARCs: record layout, SHA-256 digests recomputed from the bytes, warcio check."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import subprocess
import sys
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

import pytest
from warcio.archiveiterator import ArchiveIterator
from warcio.exceptions import ArchiveLoadFailed

from crawlers.warc import CaptureWarc, iter_records

WARCIO = Path(sys.executable).with_name("warcio")
WHEN = datetime(2026, 11, 28, 12, 0, 0, 123_456, tzinfo=UTC)
PAGE = "http://127.0.0.1:8765/page"
HTML = b"<!doctype html><html><head><title>Page</title></head><body>Hello</body></html>"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
SHA256_LABEL = re.compile(r"^sha256:[0-9a-f]{64}$")


def members(path: Path) -> list[bytes]:
    """The gzip members of a file, each decompressed on its own (one per record)."""
    data = path.read_bytes()
    out = []
    while data:
        inflater = zlib.decompressobj(wbits=31)
        out.append(inflater.decompress(data) + inflater.flush())
        assert inflater.eof, "truncated gzip member"
        data = inflater.unused_data
    return out


def parse(member: bytes) -> tuple[str, dict[str, list[str]], bytes]:
    """Split one record by hand (no warcio): version line, headers, block."""
    head, _, rest = member.partition(b"\r\n\r\n")
    lines = head.decode("utf-8").split("\r\n")
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(": ")
        headers.setdefault(name, []).append(value)
    length = int(headers["Content-Length"][0])
    assert rest[length:] == b"\r\n\r\n", "record must end with two CRLFs after the block"
    return lines[0], headers, rest[:length]


def write_capture(path: Path, body: bytes | BinaryIO = HTML, **kwargs: object) -> dict[str, str]:
    ids: dict[str, str] = {}
    with CaptureWarc(
        path,
        software={"dsa-evidence": "0.1.0", "chromium": "131"},
        operator="Legal team <legal@example.org>",
        host="capture-host-1",
        user_agent="Mozilla/5.0 (dsa-evidence)",
        extra_info={"isPartOf": "run-42"},
        date=WHEN,
    ) as warc:
        ids["warcinfo"] = warc.warcinfo_id
        ids["request"] = warc.request(
            PAGE,
            "GET",
            [("Host", "127.0.0.1:8765"), ("User-Agent", "Mozilla/5.0 (dsa-evidence)")],
            date=WHEN,
        )
        ids["response"] = warc.response(
            PAGE,
            200,
            "OK",
            [
                ("Content-Type", "text/html; charset=utf-8"),
                ("Link", "</a.css>; rel=preload"),
                ("x-lower-case", "kept as spelled"),
                ("Link", "</b.js>; rel=preload"),
                ("Content-Length", str(len(HTML))),
            ],
            body,
            date=WHEN + timedelta(milliseconds=40),
            ip="127.0.0.1",
            concurrent_to=ids["request"],
            **kwargs,  # type: ignore[arg-type]
        )
        ids["resource"] = warc.resource(
            "urn:screenshot:" + PAGE,
            "image/png",
            PNG,
            date=WHEN + timedelta(seconds=1),
            concurrent_to=ids["response"],
        )
        ids["metadata"] = warc.metadata(
            "urn:metadata:" + PAGE,
            {"final_url": PAGE, "status": 200, "finished_at": WHEN, "ü": "unicode ✓"},
            date=WHEN + timedelta(seconds=1),
            concurrent_to=ids["response"],
        )
    return ids


@pytest.fixture
def capture(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    path = tmp_path / "capture.warc.gz"
    return path, write_capture(path)


def warcio_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(WARCIO), "check", "-v", str(path)], capture_output=True, text=True, timeout=60
    )


def test_record_layout(capture: tuple[Path, dict[str, str]]) -> None:
    path, ids = capture
    records = [parse(m) for m in members(path)]  # one gzip member per record
    assert [h["WARC-Type"][0] for _, h, _ in records] == [
        "warcinfo",
        "request",
        "response",
        "resource",
        "metadata",
    ]
    for version, headers, _ in records:
        assert version == "WARC/1.1"
        assert RFC3339_MS.match(headers["WARC-Date"][0])
        assert re.match(r"^<urn:uuid:[0-9a-f-]{36}>$", headers["WARC-Record-ID"][0])
        assert SHA256_LABEL.match(headers["WARC-Block-Digest"][0])
    warcinfo, request, response, resource, metadata = (h for _, h, _ in records)
    assert warcinfo["WARC-Filename"] == ["capture.warc.gz"]
    assert "WARC-Payload-Digest" not in warcinfo and "WARC-Target-URI" not in warcinfo
    assert request["WARC-Date"] == ["2026-11-28T12:00:00.123Z"]  # milliseconds, UTC
    assert response["WARC-Date"] == ["2026-11-28T12:00:00.163Z"]
    for headers in (request, response, resource, metadata):
        assert headers["WARC-Warcinfo-ID"] == [ids["warcinfo"]]
        assert SHA256_LABEL.match(headers["WARC-Payload-Digest"][0])
        assert "WARC-Redacted" not in headers  # nothing secret in this capture
    assert request["WARC-Target-URI"] == response["WARC-Target-URI"] == [PAGE]
    assert response["WARC-IP-Address"] == ["127.0.0.1"]
    assert response["WARC-Concurrent-To"] == [ids["request"]]
    assert resource["WARC-Concurrent-To"] == metadata["WARC-Concurrent-To"] == [ids["response"]]
    assert request["Content-Type"] == ["application/http; msgtype=request"]
    assert response["Content-Type"] == ["application/http; msgtype=response"]
    assert resource["Content-Type"] == ["image/png"]
    assert resource["WARC-Target-URI"] == ["urn:screenshot:" + PAGE]
    assert metadata["Content-Type"] == ["application/json"]
    assert metadata["WARC-Target-URI"] == ["urn:metadata:" + PAGE]

    info = records[0][2].decode()
    assert re.search(r"^software: dsa-evidence/0.1.0 chromium/131 warcio/\d+\.\d+", info, re.M)
    assert "format: WARC File Format 1.1\r\n" in info
    assert "operator: Legal team <legal@example.org>\r\n" in info
    assert "hostname: capture-host-1\r\nhttp-header-user-agent: Mozilla/5.0 (dsa-evidence)\r\n" in (
        info
    )
    assert "isPartOf: run-42\r\n" in info

    # headers written as received: order, spelling, duplicates
    http_head, _, body = records[2][2].partition(b"\r\n\r\n")
    assert http_head.decode().split("\r\n") == [
        "HTTP/1.1 200 OK",
        "Content-Type: text/html; charset=utf-8",
        "Link: </a.css>; rel=preload",
        "x-lower-case: kept as spelled",
        "Link: </b.js>; rel=preload",
        f"Content-Length: {len(HTML)}",
    ]
    assert body == HTML
    assert records[1][2] == (
        b"GET /page HTTP/1.1\r\nHost: 127.0.0.1:8765\r\n"
        b"User-Agent: Mozilla/5.0 (dsa-evidence)\r\n\r\n"
    )
    assert records[3][2] == PNG
    assert json.loads(records[4][2]) == {
        "final_url": PAGE,
        "finished_at": "2026-11-28T12:00:00.123Z",
        "status": 200,
        "ü": "unicode ✓",
    }


def test_sha256_digests_recomputed_from_the_bytes(capture: tuple[Path, dict[str, str]]) -> None:
    path, _ = capture
    for _, headers, block in (parse(m) for m in members(path)):
        assert headers["WARC-Block-Digest"] == ["sha256:" + hashlib.sha256(block).hexdigest()]
        if headers["WARC-Type"][0] in ("request", "response"):
            payload = block.partition(b"\r\n\r\n")[2]  # the HTTP body
        else:
            payload = block
        if headers["WARC-Type"][0] != "warcinfo":
            assert headers["WARC-Payload-Digest"] == [
                "sha256:" + hashlib.sha256(payload).hexdigest()
            ]


def test_warcio_check_passes_every_record(capture: tuple[Path, dict[str, str]]) -> None:
    path, _ = capture
    result = warcio_check(path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("digest pass") == 5, result.stdout
    assert "fail" not in result.stdout


def test_read_back_with_warcio_and_iter_records(capture: tuple[Path, dict[str, str]]) -> None:
    path, ids = capture
    with open(path, "rb") as stream:
        seen = [
            (r.rec_type, r.rec_headers.get_header("WARC-Record-ID"), r.content_stream().read())
            for r in ArchiveIterator(stream, check_digests="raise")
        ]
    assert [(t, i) for t, i, _ in seen] == [
        ("warcinfo", ids["warcinfo"]),
        ("request", ids["request"]),
        ("response", ids["response"]),
        ("resource", ids["resource"]),
        ("metadata", ids["metadata"]),
    ]
    assert seen[2][2] == HTML and seen[3][2] == PNG

    records = list(iter_records(path))
    assert [r.type for r in records] == ["warcinfo", "request", "response", "resource", "metadata"]
    response = records[2]
    assert response.uri == PAGE and response.payload == HTML
    assert response.http_line == "HTTP/1.1 200 OK"
    assert [v for k, v in response.headers if k == "Link"] == [
        "</a.css>; rel=preload",
        "</b.js>; rel=preload",
    ]
    assert records[1].http_line == "GET /page HTTP/1.1"
    assert response.warc_header("warc-concurrent-to") == ids["request"]


def test_content_encoding_is_kept_as_transferred(tmp_path: Path) -> None:
    compressed = gzip.compress(HTML, mtime=0)
    path = tmp_path / "gz.warc.gz"
    with CaptureWarc(path, software={}, operator=None, host=None, user_agent=None) as warc:
        warc.response(
            PAGE,
            200,
            "",  # HTTP/2 has no reason phrase: the standard one is written
            [("Content-Encoding", "gzip"), ("Content-Type", "text/html")],
            compressed,
            date=WHEN,
            http_version="HTTP/2",
        )
    raw = next(r for r in iter_records(path, decode=False) if r.type == "response")
    decoded = next(r for r in iter_records(path) if r.type == "response")
    assert raw.payload == compressed and decoded.payload == HTML
    assert raw.http_line == "HTTP/2 200 OK"
    _, headers, block = parse(members(path)[1])
    assert block.endswith(compressed)
    assert headers["WARC-Payload-Digest"] == ["sha256:" + hashlib.sha256(compressed).hexdigest()]
    assert warcio_check(path).returncode == 0


class _Unseekable(io.RawIOBase):
    """A network-like stream: readable once, no seek."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        chunk = self._data.read(min(len(buffer), 65536))
        buffer[: len(chunk)] = chunk
        return len(chunk)


@pytest.mark.parametrize("kind", ["unseekable", "file"])
def test_streamed_bodies(tmp_path: Path, kind: str) -> None:
    big = hashlib.sha256(b"seed").digest() * 100_000  # 3.2 MB, several chunks
    if kind == "file":
        source = tmp_path / "body.bin"
        source.write_bytes(b"prefix" + big)
        stream: BinaryIO = open(source, "rb")  # noqa: SIM115
        stream.read(6)  # the body starts where the stream is
    else:
        stream = io.BufferedReader(_Unseekable(big))  # type: ignore[assignment]
    path = tmp_path / "big.warc.gz"
    with stream:
        write_capture(path, body=stream, truncated="length")
    response = next(r for r in iter_records(path) if r.type == "response")
    assert response.payload == big
    assert response.warc_header("WARC-Truncated") == "length"
    assert response.warc_header("WARC-Payload-Digest") == (
        "sha256:" + hashlib.sha256(big).hexdigest()
    )
    assert warcio_check(path).returncode == 0


def test_bytes_headers_are_written_verbatim_and_pseudo_headers_left_out(tmp_path: Path) -> None:
    path = tmp_path / "bytes.warc.gz"
    with CaptureWarc(path, software={}, operator=None, host=None, user_agent=None) as warc:
        warc.request(
            PAGE,
            "get",
            [(":authority", "127.0.0.1:8765"), (b"Host", b"127.0.0.1:8765")],
            date=WHEN,
            http_version="HTTP/2",
        )
        warc.response(
            PAGE,
            404,
            "Not Found",
            [(b"X-Latin", b"caf\xe9"), ("X-Utf8", "café")],
            b"",
            date=WHEN,
        )
    _, _, request = parse(members(path)[1])
    _, _, response = parse(members(path)[2])
    assert request == b"GET /page HTTP/2\r\nHost: 127.0.0.1:8765\r\n\r\n"
    assert response == b"HTTP/1.1 404 Not Found\r\nX-Latin: caf\xe9\r\nX-Utf8: caf\xc3\xa9\r\n\r\n"
    assert warcio_check(path).returncode == 0


def test_refuses_what_would_corrupt_the_archive(tmp_path: Path) -> None:
    path = tmp_path / "c.warc.gz"
    warc = CaptureWarc(path, software={}, operator=None, host=None, user_agent=None)
    with pytest.raises(ValueError, match="malformed HTTP header"):
        warc.response(PAGE, 200, "OK", [("X-Evil", "a\r\nWARC-Type: forged")], b"", date=WHEN)
    with pytest.raises(ValueError, match="malformed WARC-Target-URI"):
        warc.resource("urn:x\r\nWARC-Type: forged", "text/plain", b"", date=WHEN)
    with pytest.raises(ValueError, match="malformed WARC-Concurrent-To"):
        warc.resource("urn:x", "text/plain", b"", date=WHEN, concurrent_to="<a>\n")
    with pytest.raises(ValueError, match="time zone"):
        warc.resource("urn:x", "text/plain", b"", date=datetime(2026, 1, 1))
    warc.resource("urn:x", "text/plain", b"fine", date=WHEN)
    warc.close()
    # nothing of the refused records was written
    assert [r.type for r in iter_records(path)] == ["warcinfo", "resource"]
    assert warcio_check(path).returncode == 0
    warc.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        warc.resource("urn:x", "text/plain", b"", date=WHEN)
    with pytest.raises(FileExistsError):
        CaptureWarc(path, software={}, operator=None, host=None, user_agent=None)


def test_a_changed_byte_is_found(capture: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    path, _ = capture
    parts = members(path)
    parts[2] = parts[2].replace(b"Hello", b"Hallo")  # same length: only the digest can tell
    tampered = tmp_path / "tampered.warc.gz"
    tampered.write_bytes(b"".join(gzip.compress(p, mtime=0) for p in parts))
    with pytest.raises(ArchiveLoadFailed, match="digest failed"):
        list(iter_records(tampered))
    result = warcio_check(tampered)
    assert result.returncode == 1 and "digest failed" in result.stdout
    assert [r.payload for r in iter_records(tampered, verify=False) if r.type == "response"] == [
        HTML.replace(b"Hello", b"Hallo")
    ]
