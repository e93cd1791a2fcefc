"""WACZ export: layout and hashes, `wacz validate`, and replay of the archived page in pywb.

The validator and pywb pin old packages (pywb would downgrade cryptography), so they live in
their own virtualenv, ``.venv-replay`` (made by ``make setup``; another one can be named with
REPLAY_VENV). Without it the two tests that need it are skipped, except in CI (CI=true), where
they fail.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crawlers.warc import CaptureWarc
from evidence_store.errors import EvidenceError
from evidence_store.index import Index
from evidence_store.objects import LocalStore
from exhibits.export import export_snapshots_wacz
from exhibits.wacz import WaczError, export_wacz

ROOT = Path(__file__).resolve().parents[1]
REPLAY_VENV = Path(os.environ.get("REPLAY_VENV", ROOT / ".venv-replay"))
WHEN = datetime(2026, 11, 28, 12, 0, 0, 123_000, tzinfo=UTC)
TIMESTAMP = "20261128120000"  # WHEN as a 14-digit replay timestamp
HTML = (
    b"<!doctype html><html><head><title>Archived page</title></head>"
    b"<body><p id='evidence'>Statement of reasons 4711</p></body></html>"
)
PNG = b"\x89PNG\r\n\x1a\n" + hashlib.sha256(b"screenshot").digest() * 64


def replay_tool(name: str) -> Path:
    """A command of the replay virtualenv; skip (or fail in CI) when it is not installed."""
    tool = REPLAY_VENV / "bin" / name
    if not tool.exists():
        message = (
            f"{tool} is missing: `make setup` creates .venv-replay with the wacz validator "
            "and pywb (kept apart from .venv: they pin old packages); REPLAY_VENV names another"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return tool


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Exhibit:
    wacz: Path
    warc: Path
    url: str


def write_capture(path: Path, url: str) -> None:
    """A request/response pair for ``url`` (nothing is served: just records), a screenshot
    resource and a metadata record."""
    with CaptureWarc(
        path,
        software={"dsa-evidence": "test"},
        operator="Legal team",
        host="capture-host",
        user_agent="dsa-evidence-test/1",
    ) as warc:
        host = url.split("/")[2]
        req = warc.request(url, "GET", [("Host", host), ("Accept", "text/html")], date=WHEN)
        resp = warc.response(
            url,
            200,
            "OK",
            [
                ("Content-Type", "text/html; charset=utf-8"),
                ("Content-Length", str(len(HTML))),
                ("Date", "Sat, 28 Nov 2026 12:00:00 GMT"),
            ],
            HTML,
            date=WHEN,
            ip="127.0.0.1",
            concurrent_to=req,
        )
        later = WHEN + timedelta(seconds=2)
        warc.resource("urn:screenshot:" + url, "image/png", PNG, date=later, concurrent_to=resp)
        warc.metadata(
            "urn:metadata:" + url,
            {"requested_url": url, "final_url": url, "status": 200},
            date=later,
            concurrent_to=resp,
        )


@pytest.fixture(scope="module")
def exhibit(tmp_path_factory: pytest.TempPathFactory) -> Exhibit:
    folder = tmp_path_factory.mktemp("wacz")
    url = f"http://127.0.0.1:{free_port()}/page"
    warc = folder / "capture-1.warc.gz"
    write_capture(warc, url)
    wacz = export_wacz(
        [warc],
        [{"url": url, "title": "Archived page", "ts": WHEN}],
        folder / "exhibit.wacz",
        title="Exhibit 1",
        description="Test capture of one page",
    )
    return Exhibit(wacz=wacz, warc=warc, url=url)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_layout_hashes_pages_and_index(exhibit: Exhibit) -> None:
    with zipfile.ZipFile(exhibit.wacz) as archive:
        infos = archive.infolist()
        files = {info.filename: archive.read(info) for info in infos}
    assert [i.filename for i in infos] == [
        "archive/capture-1.warc.gz",
        "indexes/index.cdx",
        "pages/pages.jsonl",
        "datapackage.json",
        "datapackage-digest.json",
    ]
    assert all(i.compress_type == zipfile.ZIP_STORED for i in infos)
    assert files["archive/capture-1.warc.gz"] == exhibit.warc.read_bytes()

    package = json.loads(files["datapackage.json"])
    assert package["profile"] == "data-package"
    assert package["wacz_version"] == "1.1.1"
    assert package["title"] == "Exhibit 1"
    assert package["description"] == "Test capture of one page"
    assert package["mainPageURL"] == exhibit.url
    assert package["mainPageDate"] == "2026-11-28T12:00:00.123Z"
    assert package["created"].endswith("Z")
    listed = {r["path"]: r for r in package["resources"]}
    assert set(listed) == set(files) - {"datapackage.json", "datapackage-digest.json"}
    for path, resource in listed.items():
        assert resource["hash"] == sha256(files[path])
        assert resource["bytes"] == len(files[path])
        assert resource["name"] == path.rsplit("/", 1)[1]
    assert json.loads(files["datapackage-digest.json"]) == {
        "path": "datapackage.json",
        "hash": sha256(files["datapackage.json"]),
    }

    header, *pages = (json.loads(line) for line in files["pages/pages.jsonl"].splitlines())
    assert header == {"format": "json-pages-1.0", "id": "pages", "title": "All Pages"}
    assert len(pages) == 1
    assert pages[0]["url"] == exhibit.url and pages[0]["title"] == "Archived page"
    assert pages[0]["ts"] == "2026-11-28T12:00:00.123Z" and pages[0]["id"]

    lines = files["indexes/index.cdx"].decode().splitlines()
    assert lines == sorted(lines)
    entries = {}
    for line in lines:
        _, ts, data = line.split(" ", 2)
        assert ts == TIMESTAMP or ts == "20261128120002"
        entries[json.loads(data)["url"]] = json.loads(data)
    assert set(entries) == {
        exhibit.url,
        "urn:screenshot:" + exhibit.url,
        "urn:metadata:" + exhibit.url,
    }
    page = entries[exhibit.url]
    assert page["status"] == "200" and page["mime"] == "text/html"
    assert page["digest"] == sha256(HTML)
    # every index entry points at exactly one whole gzip member: the record it names
    warc = files["archive/capture-1.warc.gz"]
    for url, entry in entries.items():
        assert entry["filename"] == "capture-1.warc.gz"
        start, length = int(entry["offset"]), int(entry["length"])
        member = warc[start : start + length]
        assert entry["recordDigest"] == sha256(member)
        record = gzip.decompress(member)
        assert f"\r\nWARC-Target-URI: {url}\r\n".encode() in record


def test_export_refuses_what_would_make_a_bad_exhibit(exhibit: Exhibit, tmp_path: Path) -> None:
    page = {"url": exhibit.url, "title": "t", "ts": WHEN}
    kwargs = {"title": "t", "description": "d"}
    with pytest.raises(FileExistsError):
        export_wacz([exhibit.warc], [page], exhibit.wacz, **kwargs)
    with pytest.raises(WaczError, match="not the target of any record"):
        export_wacz(
            [exhibit.warc],
            [{**page, "url": exhibit.url + "?access_token=unredacted"}],
            tmp_path / "a.wacz",
            **kwargs,
        )
    tampered = tmp_path / "tampered.warc.gz"
    tampered.write_bytes(
        gzip.compress(gzip.decompress(exhibit.warc.read_bytes()).replace(b"4711", b"4712"))
    )
    with pytest.raises(WaczError, match="digest"):
        export_wacz([tampered], [page], tmp_path / "b.wacz", **kwargs)
    with pytest.raises(WaczError, match="two WARC files"):
        export_wacz([exhibit.warc, exhibit.warc], [page], tmp_path / "c.wacz", **kwargs)
    with pytest.raises(WaczError, match="at least one WARC"):
        export_wacz([], [page], tmp_path / "d.wacz", **kwargs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tampered.warc.gz"]  # no leftovers


def test_a_missing_output_folder_is_named_before_any_work(exhibit: Exhibit, tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir"
    page = {"url": exhibit.url, "title": "t", "ts": WHEN}
    with pytest.raises(WaczError) as refused:
        export_wacz([exhibit.warc], [page], missing / "x.wacz", title="t", description="d")
    assert f"the folder {missing} does not exist" in str(refused.value)
    assert ".partial" not in str(refused.value)

    # Through the archive: the folder is checked before the index is read (the snapshot named
    # here does not exist, and that is not what is reported).
    index = Index(f"sqlite:///{tmp_path / 'index.sqlite'}")
    try:
        objects = LocalStore(tmp_path / "objects")
        with pytest.raises(EvidenceError) as refused_too:
            export_snapshots_wacz(objects, index, ["0" * 64], output=missing / "x.wacz")
        assert (
            str(refused_too.value)
            == f"cannot write {missing / 'x.wacz'}: the folder {missing} does not exist"
        )
        # A file where the folder should be is named too.
        (tmp_path / "file").write_text("")
        with pytest.raises(EvidenceError, match="is not a folder"):
            export_snapshots_wacz(objects, index, ["0" * 64], output=tmp_path / "file" / "x.wacz")
    finally:
        index.dispose()
    assert not missing.parent.exists()


def test_wacz_validate_accepts_the_export_and_rejects_a_changed_one(
    exhibit: Exhibit, tmp_path: Path
) -> None:
    wacz_tool = replay_tool("wacz")
    result = subprocess.run(
        [str(wacz_tool), "validate", "-f", str(exhibit.wacz)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Version detected as 1.1.1" in result.stdout
    assert "Validation succeeded" in result.stdout

    changed = tmp_path / "changed.wacz"
    with zipfile.ZipFile(exhibit.wacz) as source, zipfile.ZipFile(changed, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "pages/pages.jsonl":
                data = data.replace(b"Archived page", b"Archived pagf")
            target.writestr(info, data)
    result = subprocess.run(
        [str(wacz_tool), "validate", "-f", str(changed)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Validation failed" in result.stdout
    assert "hash-count" in result.stdout and "pages.jsonl" in result.stdout  # frictionless: hash


@pytest.fixture
def pywb(exhibit: Exhibit, tmp_path: Path) -> Iterator[str]:
    """pywb serving the exhibit on 127.0.0.1; yields the collection's base URL."""
    wb_manager, wayback = replay_tool("wb-manager"), replay_tool("wayback")
    for args in (["init", "exhibit"], ["add", "--unpack-wacz", "exhibit", str(exhibit.wacz)]):
        done = subprocess.run(
            [str(wb_manager), *args], cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stdout + done.stderr
    port = free_port()
    log = open(tmp_path / "wayback.log", "wb")  # noqa: SIM115 (closed below)
    server = subprocess.Popen(
        [str(wayback), "--port", str(port), "--bind", "127.0.0.1"],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}/exhibit"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, (tmp_path / "wayback.log").read_text()
            try:
                with urllib.request.urlopen(base + "/", timeout=2):
                    break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "pywb did not start within 30 s"
                time.sleep(0.2)
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def fetch(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=20) as response:
        return response.status, response.read()


@pytest.mark.slow
def test_pywb_replays_the_archived_page(exhibit: Exhibit, pywb: str) -> None:
    status, body = fetch(f"{pywb}/{TIMESTAMP}id_/{exhibit.url}")  # id_: the bytes as archived
    assert (status, body) == (200, HTML)
    status, body = fetch(f"{pywb}/{TIMESTAMP}mp_/{exhibit.url}")  # rewritten for the browser
    assert status == 200 and b"Statement of reasons 4711" in body
    status, body = fetch(f"{pywb}/{TIMESTAMP}id_/urn:screenshot:{exhibit.url}")
    assert (status, body) == (200, PNG)
