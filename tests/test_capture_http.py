"""`evidence capture --http` end to end against the local fixture site."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from warcio.archiveiterator import ArchiveIterator

from fixtures.site import SESSION_COOKIE_VALUE, FixtureSite
from tests.conftest import run_cli

pytestmark = pytest.mark.slow

ACCESS_TOKEN = "tok-SECRET-4711-abcdef"


@pytest.fixture(scope="module")
def site() -> Iterator[FixtureSite]:
    with FixtureSite() as running:
        yield running


@pytest.fixture(scope="module")
def captured(site: FixtureSite, tmp_path_factory: pytest.TempPathFactory) -> dict:
    data = tmp_path_factory.mktemp("capture") / "data"
    env = {"EVIDENCE_DATA_DIR": str(data)}
    urls = {
        "profile": site.url("/@alice"),
        "gzip": site.url("/gzip"),
        "redirect": site.url("/redirect/1"),
        "loop": site.url("/redirect/loop"),
        "missing": site.url("/does-not-exist"),
        "error": site.url("/error/500"),
        "cookie": site.url("/set-cookie"),
        "pdf": site.url("/docs/transparency-report.pdf"),
        "secret": site.url(f"/api/secret?access_token={ACCESS_TOKEN}&page=2"),
        "slow": site.url("/slow?seconds=8"),
        "big": site.url("/big?bytes=300000"),
        "reset": site.url("/reset"),
        "tls": site.url("/").replace("http://", "https://"),  # TLS to a plain-HTTP port
        "private": site.url("/private/feed"),
    }
    proc = run_cli(
        "capture",
        *urls.values(),
        "--http",
        "--allow-private",  # the fixture site is on 127.0.0.1
        "--collection",
        "fixtures",
        "--timeout",
        "3",
        "--max-bytes",
        "100000",
        "--json",
        env=env,
    )
    # Some fixture URLs fail on purpose: the run is partial, which exits 3.
    assert proc.returncode == 3, proc.stderr
    assert "partial" in proc.stderr
    outcomes = json.loads(proc.stdout)
    by_url = {o["url"]: o for o in outcomes}
    return {"env": env, "data": data, "urls": urls, "outcomes": outcomes, "by_url": by_url}


def outcome(captured: dict, key: str) -> dict:
    url = captured["urls"][key].replace(ACCESS_TOKEN, "REDACTED")
    return captured["by_url"][url]


def warc_records(captured: dict, snapshot: str) -> list:
    shown = json.loads(
        run_cli("snapshots", "show", snapshot, "--json", env=captured["env"], check=True).stdout
    )
    [warc] = [a for a in shown["snapshot"]["artifacts"] if a["role"] == "warc"]
    path = (
        captured["data"]
        / "objects"
        / "sha256"
        / warc["sha256"][:2]
        / warc["sha256"][2:4]
        / warc["sha256"]
    )
    with open(path, "rb") as stream:
        # raw_stream: the payload as stored, without warcio undoing the Content-Encoding
        records = [
            (r.rec_type, r.rec_headers, r.http_headers, r.raw_stream.read())
            for r in ArchiveIterator(stream)
        ]
    subprocess.run(
        [str(Path(sys.executable).with_name("warcio")), "check", str(path)],
        check=True,
        capture_output=True,
    )
    return records


def test_every_url_has_one_outcome(captured: dict) -> None:
    pages = [o for o in captured["outcomes"] if o["mode"] != "robots"]
    assert len(pages) == len(captured["urls"])
    assert outcome(captured, "profile")["outcome"] == "archived"
    assert (
        outcome(captured, "missing")["status"] == 404 and outcome(captured, "missing")["snapshot"]
    )
    assert outcome(captured, "error")["status"] == 500 and outcome(captured, "error")["snapshot"]
    assert (
        outcome(captured, "loop")["outcome"] == "redirect-loop"
        and outcome(captured, "loop")["snapshot"]
    )
    assert outcome(captured, "slow")["outcome"] == "timeout"
    assert outcome(captured, "big")["outcome"] == "too-large"
    assert outcome(captured, "reset")["outcome"] == "connection-error"
    assert outcome(captured, "tls")["outcome"] == "tls-error"
    assert outcome(captured, "private")["outcome"] == "robots-disallowed"
    assert any(o["mode"] == "robots" and o["snapshot"] for o in captured["outcomes"])


def test_gzip_payload_is_kept_as_transferred(captured: dict) -> None:
    records = warc_records(captured, outcome(captured, "gzip")["snapshot"])
    [response] = [r for r in records if r[0] == "response"]
    assert response[2].get_header("Content-Encoding") == "gzip"
    # The payload in the WARC is what the server sent: still gzip.
    assert response[3][:2] == b"\x1f\x8b"
    assert b"<html" in gzip.decompress(response[3]).lower()


def test_redirect_chain_is_recorded(captured: dict, site: FixtureSite) -> None:
    snap = outcome(captured, "redirect")["snapshot"]
    records = warc_records(captured, snap)
    responses = [r for r in records if r[0] == "response"]
    assert [r[2].get_statuscode() for r in responses] == ["302", "301", "200"]
    [meta] = [r for r in records if r[0] == "metadata"]
    chain = json.loads(meta[3])["redirect_chain"]
    assert [c["status"] for c in chain] == [302, 301, 200]
    assert chain[-1]["url"] == site.url("/@alice")


def test_pdf_is_archived_as_is(captured: dict) -> None:
    records = warc_records(captured, outcome(captured, "pdf")["snapshot"])
    [response] = [r for r in records if r[0] == "response"]
    assert response[3].startswith(b"%PDF") and response[3].rstrip().endswith(b"%%EOF")


def test_no_secret_reaches_the_archive(captured: dict) -> None:
    found = []
    for path in (captured["data"] / "objects" / "sha256").rglob("*"):
        if not path.is_file():
            continue
        raw = path.read_bytes()
        blobs = [raw]
        if raw[:2] == b"\x1f\x8b":
            out = b""
            rest = raw
            while rest:  # a WARC.gz is many gzip members
                d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                out += d.decompress(rest)
                rest = d.unused_data
            blobs.append(out)
        for blob in blobs:
            for secret in (SESSION_COOKIE_VALUE.encode(), ACCESS_TOKEN.encode()):
                if secret in blob:
                    found.append((path.name, secret))
    assert not found
    # What was redacted is recorded by name.
    records = warc_records(captured, outcome(captured, "secret")["snapshot"])
    [meta] = [r for r in records if r[0] == "metadata"]
    assert "access_token" in json.dumps(json.loads(meta[3]))


def test_login_wall_is_detected_and_labelled(site: FixtureSite, tmp_path: Path) -> None:
    env = {"EVIDENCE_DATA_DIR": str(tmp_path / "data")}
    proc = run_cli(
        "capture",
        site.url("/private/feed"),
        "--ignore-robots",
        "--allow-private",
        "--json",
        env=env,
    )
    # Archived, but a login wall is not the page asked for: the run is partial (exit 3).
    assert proc.returncode == 3, proc.stderr
    [page] = [o for o in json.loads(proc.stdout) if o["mode"] != "robots"]
    assert page["outcome"] == "login-wall"
    shown = json.loads(
        run_cli("snapshots", "show", page["snapshot"], "--json", env=env, check=True).stdout
    )
    assert shown["manifest"]["capture"]["outcome"] == "login-wall"


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    env = {"EVIDENCE_DATA_DIR": str(tmp_path / "data")}
    proc = run_cli("capture", "--urls-file", str(tmp_path / "missing.txt"), env=env)
    assert proc.returncode == 2 and "missing.txt" in proc.stderr
    proc = run_cli("capture", "--http", "--browser", "http://127.0.0.1:9/", env=env)
    assert proc.returncode == 2 and "not both" in proc.stderr


def test_export_wacz_of_captured_pages_validates(captured: dict, tmp_path: Path) -> None:
    from tests.test_wacz import replay_tool

    snapshots = [outcome(captured, key)["snapshot"] for key in ("profile", "redirect", "gzip")]
    out = tmp_path / "export.wacz"
    proc = run_cli("export", "wacz", *snapshots, "-o", str(out), "--json", env=captured["env"])
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert sorted(result["snapshots"]) == sorted(snapshots)
    validate = subprocess.run(
        [str(replay_tool("wacz")), "validate", "-f", str(out)], capture_output=True, text=True
    )
    assert validate.returncode == 0, validate.stdout + validate.stderr
    # An export is never overwritten.
    again = run_cli("export", "wacz", snapshots[0], "-o", str(out), env=captured["env"])
    assert again.returncode == 2 and "never overwritten" in again.stderr
