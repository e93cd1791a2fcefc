"""`evidence capture --browser` end to end: real Chromium against the local fixture site."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from fixtures.site import ALICE_BIO, SESSION_COOKIE_VALUE, TRACKING_COOKIE_VALUE, FixtureSite
from fixtures.site.server import make_pdf
from schemas import parse_rfc3339
from tests.conftest import run_cli
from tests.test_capture_http import warc_records

pytestmark = pytest.mark.slow

if not Path("/usr/bin/chromium").exists():  # pragma: no cover
    pytest.skip("Chromium is not installed (make setup installs it)", allow_module_level=True)

VIEWPORT_HEIGHT = 800  # BROWSER_VIEWPORT in crawlers/settings.py
ACCESS_TOKEN = "tok-BROWSER-4711-abcdef"
SCRIPT_COOKIE = "SCRIPT-SHOWN-COOKIE-9876"


class _SecretsPage(BaseHTTPRequestHandler):
    """A page whose script shows its own URL (with a token) and its cookies on screen.

    Neither value is in the response body: only the rendered DOM holds them, which is what
    the browser capture must scrub (and why it must not keep a screenshot or PDF of it).
    """

    def do_GET(self) -> None:
        body = (
            b"<!doctype html><html><head><title>Secrets</title></head><body>"
            b'<p id="where"></p><p id="cookies"></p><script>'
            b'document.getElementById("where").textContent = "You are at " + location.href;'
            b'document.getElementById("cookies").textContent = "Cookies: " + document.cookie;'
            b'console.error("script error for the record");'
            b"</script></body></html>"
        )
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Set-Cookie", f"visible={SCRIPT_COOKIE}; Path=/")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def site() -> Iterator[FixtureSite]:
    with FixtureSite() as running:
        yield running


@pytest.fixture(scope="module")
def tls_site() -> Iterator[FixtureSite]:
    with FixtureSite(https=True) as running:
        yield running


@pytest.fixture(scope="module")
def secrets_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SecretsPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/show?access_token={ACCESS_TOKEN}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def captured(
    site: FixtureSite,
    tls_site: FixtureSite,
    secrets_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict:
    data = tmp_path_factory.mktemp("capture-browser") / "data"
    env = {"EVIDENCE_DATA_DIR": str(data)}
    urls = {
        "profile": site.url("/@alice"),
        "tls": tls_site.url("/@alice"),
        "redirect": site.url("/redirect/1"),
        "cookie": site.url("/set-cookie"),
        "pdf": site.url("/docs/transparency-report.pdf"),
        "gzip": site.url("/gzip"),
        "missing": site.url("/does-not-exist"),
        "error": site.url("/error/500"),
        "loop": site.url("/redirect/loop"),
        "reset": site.url("/reset"),
        "slow": site.url("/slow?seconds=30"),
        "secrets": secrets_url,
    }
    proc = run_cli(
        "capture",
        *urls.values(),
        "--browser",
        "--allow-private",  # the fixture sites are on 127.0.0.1
        "--collection",
        "browser",
        "--timeout",
        "15",  # generous: a busy machine slows the 20-hop loop; /slow takes 30 s
        "--json",
        env=env,
    )
    # The loop, the reset and the slow page fail on purpose: a partial run exits 3.
    assert proc.returncode == 3, proc.stderr
    outcomes = json.loads(proc.stdout)
    return {
        "env": env,
        "data": data,
        "urls": urls,
        "outcomes": outcomes,
        "by_url": {o["url"]: o for o in outcomes},
        "cache": {},  # each `snapshots show` and WARC read runs once per module
    }


def outcome(captured: dict, key: str) -> dict:
    return captured["by_url"][captured["urls"][key].replace(ACCESS_TOKEN, "REDACTED")]


def show(captured: dict, key: str) -> dict:
    snapshot = outcome(captured, key)["snapshot"]
    assert snapshot, outcome(captured, key)
    if ("show", key) not in captured["cache"]:
        proc = run_cli("snapshots", "show", snapshot, "--json", env=captured["env"], check=True)
        captured["cache"]["show", key] = json.loads(proc.stdout)
    return captured["cache"]["show", key]


def artifact(captured: dict, key: str, role: str) -> bytes:
    [found] = [a for a in show(captured, key)["snapshot"]["artifacts"] if a["role"] == role]
    digest = found["sha256"]
    return (
        captured["data"] / "objects" / "sha256" / digest[:2] / digest[2:4] / digest
    ).read_bytes()


def metadata(captured: dict, key: str) -> dict:
    return show(captured, key)["manifest"]["capture"]


def records(captured: dict, key: str) -> list:
    """(type, WARC headers, HTTP headers, payload) of every record; `warcio check` passes."""
    if ("warc", key) not in captured["cache"]:
        captured["cache"]["warc", key] = warc_records(captured, outcome(captured, key)["snapshot"])
    return captured["cache"]["warc", key]


def test_every_url_has_one_outcome(captured: dict) -> None:
    pages = [o for o in captured["outcomes"] if o["mode"] != "robots"]
    assert len(pages) == len(captured["urls"])
    assert all(o["mode"] == "browser" for o in pages)
    for key in ("profile", "tls", "redirect", "cookie", "pdf", "gzip", "secrets"):
        assert outcome(captured, key)["outcome"] == "archived", outcome(captured, key)
        assert outcome(captured, key)["snapshot"]
    assert outcome(captured, "missing")["status"] == 404
    assert outcome(captured, "missing")["outcome"] == "archived"
    assert outcome(captured, "error")["status"] == 500
    assert outcome(captured, "loop")["outcome"] == "redirect-loop"
    assert outcome(captured, "loop")["snapshot"]  # the hops are evidence
    assert outcome(captured, "reset")["outcome"] == "connection-error"
    assert outcome(captured, "slow")["outcome"] == "timeout"
    assert any(o["mode"] == "robots" and o["snapshot"] for o in captured["outcomes"])


def test_warc_has_every_exchange_and_the_renderings(captured: dict, site: FixtureSite) -> None:
    recs = records(captured, "profile")
    uris = [(r[0], r[1].get_header("WARC-Target-URI")) for r in recs]
    # the API calls made by the page's script, each as a request and a response
    for path in ("/api/users/alice", "/api/users/alice/posts", "/static/app.js"):
        assert ("request", site.url(path)) in uris
        assert ("response", site.url(path)) in uris
    [api] = [
        r
        for r in recs
        if r[0] == "response" and r[1].get_header("WARC-Target-URI") == site.url("/api/users/alice")
    ]
    assert json.loads(api[3])["user"]["bio"] == ALICE_BIO
    profile = site.url("/@alice")
    for role in ("screenshot", "pdf", "dom"):
        assert ("resource", f"urn:{role}:{profile}") in uris
    assert uris[-1] == ("metadata", f"urn:metadata:{profile}")
    # the request headers as Chromium sent them: a desktop Chrome, not HeadlessChrome
    [request] = [
        r for r in recs if r[0] == "request" and r[1].get_header("WARC-Target-URI") == profile
    ]
    user_agent = request[2].get_header("User-Agent")
    assert "Chrome/" in user_agent and "Headless" not in user_agent
    meta = metadata(captured, "profile")
    assert meta["user_agent"] == user_agent
    assert meta["browser"]["name"] == "chromium" and meta["browser"]["version"]
    assert meta["bodies"]["decoded"] is True
    assert meta["final_url"] == profile and meta["server_ip"] == "127.0.0.1"


def test_decoded_bodies_say_so_in_their_headers(captured: dict) -> None:
    url = captured["urls"]["gzip"]
    [response] = [
        r
        for r in records(captured, "gzip")
        if r[0] == "response" and r[1].get_header("WARC-Target-URI") == url
    ]
    headers = response[2]
    assert headers.get_header("Content-Encoding") is None
    assert headers.get_header("X-Archive-Orig-Content-Encoding") == "gzip"
    assert int(headers.get_header("Content-Length")) == len(response[3])
    assert response[3].lstrip().lower().startswith(b"<!doctype html")


def test_screenshot_is_the_whole_page(captured: dict) -> None:
    png = artifact(captured, "profile", "screenshot")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    assert width == 1280
    assert height > 5 * VIEWPORT_HEIGHT
    [shot] = [
        i for i in metadata(captured, "profile")["interactions"] if i["action"] == "screenshot"
    ]
    assert shot["height"] == height


def test_pdf_and_dom_hold_the_text_rendered_by_javascript(captured: dict) -> None:
    from pypdf import PdfReader

    [raw] = [
        r
        for r in records(captured, "profile")
        if r[0] == "response" and r[1].get_header("WARC-Target-URI").endswith("/@alice")
    ]
    assert ALICE_BIO.encode() not in raw[3]  # the server sent a shell without it
    dom = artifact(captured, "profile", "dom").decode("utf-8")
    assert ALICE_BIO in dom and 'data-state="ready"' in dom
    pdf = artifact(captured, "profile", "pdf")
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    assert ALICE_BIO in " ".join(text.split())


def test_lazy_images_are_loaded_by_scrolling(captured: dict, site: FixtureSite) -> None:
    # Posts are newest first: image 1 belongs to the last post, at the bottom of the page,
    # and is only requested once it has been scrolled into view.
    meta = metadata(captured, "profile")
    scrolls = [i for i in meta["interactions"] if i["action"] == "scroll"]
    assert len(scrolls) >= 5 and max(s["to_y"] for s in scrolls) > 10 * VIEWPORT_HEIGHT
    assert scrolls[-1]["to_y"] == 0  # back to the top before the screenshot
    [end] = [i for i in meta["interactions"] if i["action"] == "scroll-end"]
    assert end["reason"] == "bottom"
    [shot] = [i for i in meta["interactions"] if i["action"] == "screenshot"]
    hits = [r.at for r in site.requests if r.path == "/static/img/1.png"]
    assert hits and min(hits) < parse_rfc3339(shot["at"]).timestamp()
    uris = [r[1].get_header("WARC-Target-URI") for r in records(captured, "profile")]
    assert site.url("/static/img/1.png") in uris


def test_redirect_chain_is_in_the_metadata(captured: dict, site: FixtureSite) -> None:
    recs = records(captured, "redirect")
    responses = [r for r in recs if r[0] == "response"]
    assert [r[2].get_statuscode() for r in responses[:3]] == ["302", "301", "200"]
    assert responses[0][3] == b""  # Chromium keeps no redirect bodies, and the records say so
    assert [r[1].get_header("WARC-Truncated") for r in responses[:3]] == [
        "unspecified",
        "unspecified",
        None,
    ]
    chain = json.loads(next(r for r in recs if r[0] == "metadata")[3])["redirect_chain"]
    assert [c["status"] for c in chain] == [302, 301, 200]
    assert chain[0]["location"] == "/redirect/2"
    assert chain[-1]["url"] == site.url("/@alice")
    assert outcome(captured, "redirect")["final_url"] == site.url("/@alice")


def test_https_metadata_has_the_certificate(captured: dict, tls_site: FixtureSite) -> None:
    tls = metadata(captured, "tls")["tls"]
    assert tls["protocol"].startswith("TLS")
    assert tls["subject"] == tls["issuer"] == "Fixturegram test site (localhost)"
    assert parse_rfc3339(tls["valid_from"]) < parse_rfc3339(tls["valid_to"])
    assert tls_site.cert_pem is not None
    assert tls["certificate_chain_pem"][0].strip() == tls_site.cert_pem.decode().strip()
    assert tls["leaf_sha256"] == tls_site.cert_sha256
    assert tls["verification"].startswith("18 ")  # self-signed, recorded, not refused
    uris = [r[1].get_header("WARC-Target-URI") for r in records(captured, "tls")]
    assert tls_site.url("/api/users/alice") in uris


def test_pdf_document_is_archived_as_served(captured: dict) -> None:
    recs = records(captured, "pdf")
    [response] = [r for r in recs if r[0] == "response"]
    assert response[3] == make_pdf()  # not the viewer's stand-in page
    assert [r for r in recs if r[0] == "resource"]  # the viewer's screenshot
    assert "viewer" in metadata(captured, "pdf")["rendering"]


def test_errors_are_archived_with_their_outcome(captured: dict) -> None:
    missing = records(captured, "missing")
    assert next(r[2].get_statuscode() for r in missing if r[0] == "response") == "404"
    assert any(r[0] == "resource" for r in missing)
    loop = metadata(captured, "loop")
    assert loop["outcome"] == "redirect-loop" and "ERR_TOO_MANY_REDIRECTS" in loop["error"]
    assert len(loop["redirect_chain"]) > 5


def test_secrets_are_scrubbed_and_never_stored(captured: dict) -> None:
    secrets = (SESSION_COOKIE_VALUE, TRACKING_COOKIE_VALUE, ACCESS_TOKEN, SCRIPT_COOKIE)
    found = []
    for path in (captured["data"] / "objects" / "sha256").rglob("*"):
        if not path.is_file():
            continue
        blobs = [path.read_bytes()]
        if blobs[0][:2] == b"\x1f\x8b":
            out, rest = b"", blobs[0]
            while rest:  # a WARC.gz is many gzip members
                import zlib

                inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
                out += inflater.decompress(rest)
                rest = inflater.unused_data
            blobs.append(out)
        found += [(path.name, s) for s in secrets for b in blobs if s.encode() in b]
    assert not found
    # The page showed its token and cookie on screen: the DOM is scrubbed, and neither a
    # screenshot nor a PDF (which cannot be scrubbed) is kept.
    dom = artifact(captured, "secrets", "dom").decode()
    assert "access_token=REDACTED" in dom and "visible=REDACTED" in dom
    meta = metadata(captured, "secrets")
    assert set(meta["withheld"]) == {"screenshot", "pdf"}
    assert meta["dom_redacted"]
    # The DOM's WARC record names what was scrubbed from it (names only, never values).
    [dom_record] = [
        r
        for r in records(captured, "secrets")
        if r[1].get_header("WARC-Target-URI", "").startswith("urn:dom:")
    ]
    marked = {n.strip() for n in dom_record[1].get_header("WARC-Redacted", "").split(",")}
    assert set(meta["dom_redacted"]) <= marked
    roles = {a["role"] for a in show(captured, "secrets")["snapshot"]["artifacts"]}
    assert roles == {"warc", "dom", "metadata"}
    assert any("script error for the record" in c["text"] for c in meta["console"])


def test_login_wall_is_detected_and_labelled(site: FixtureSite, tmp_path: Path) -> None:
    env = {"EVIDENCE_DATA_DIR": str(tmp_path / "data")}
    proc = run_cli(
        "capture",
        site.url("/private/feed"),
        "--browser",
        "--ignore-robots",
        "--allow-private",
        "--json",
        env=env,
    )
    # Archived, but a login wall is not the page asked for: the run is partial (exit 3).
    assert proc.returncode == 3, proc.stderr
    [page] = [o for o in json.loads(proc.stdout) if o["mode"] != "robots"]
    assert page["outcome"] == "login-wall" and page["snapshot"]


def test_headers_of_decoded_bodies() -> None:
    from crawlers.recorder import archived_response_headers

    sent = [("Content-Type", "text/html"), ("Content-Encoding", "br"), ("Content-Length", "10")]
    assert archived_response_headers(sent, 25, body_expected=True) == [
        ("Content-Type", "text/html"),
        ("X-Archive-Orig-Content-Encoding", "br"),
        ("X-Archive-Orig-Content-Length", "10"),
        ("Content-Length", "25"),
    ]
    # unchanged when the stored body is what the length says; HEAD/304 keep theirs
    plain = [("Content-Length", "25")]
    assert archived_response_headers(plain, 25, body_expected=True) == plain
    assert archived_response_headers(plain, 0, body_expected=False) == plain
    # a redirect's body is not kept by Chromium: the record says the body is empty
    assert archived_response_headers(
        [("Location", "/x"), ("Content-Length", "5")], 0, body_expected=True
    )[1:] == [
        ("X-Archive-Orig-Content-Length", "5"),
        ("Content-Length", "0"),
    ]


def test_reused_tab_carries_no_state(site: FixtureSite, tmp_path: Path) -> None:
    # BROWSER_REUSE_PAGES keeps each context's tab; the next page must not see the cookies
    # of the previous one. Settings are not CLI options: the Python API, in a subprocess.
    env = {"EVIDENCE_DATA_DIR": str(tmp_path / "data")}
    script = (
        "import json, sys\n"
        "from crawlers.runner import capture_pages\n"
        "from jobs.config import load_settings\n"
        "from jobs.context import open_evidence\n"
        "outcomes = capture_pages(open_evidence(load_settings()), sys.argv[1:],\n"
        "    mode='browser', obey_robots=False, BROWSER_CONTEXTS=1, BROWSER_REUSE_PAGES=True,\n"
        "    EVIDENCE_ALLOW_PRIVATE=True)\n"
        "print(json.dumps([o.model_dump(mode='json') for o in outcomes]))\n"
    )
    urls = [site.url("/set-cookie"), site.url("/@alice/post/1001")]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("EVIDENCE_")} | env
    proc = subprocess.run(
        [sys.executable, "-c", script, *urls],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    by_url = {o["url"]: o for o in json.loads(proc.stdout)}
    assert [by_url[u]["outcome"] for u in urls] == ["archived", "archived"]
    captured = {"env": env, "data": tmp_path / "data"}
    records = warc_records(captured, by_url[urls[1]]["snapshot"])
    requests = [r for r in records if r[0] == "request"]
    assert requests and all(r[2].get_header("Cookie") is None for r in requests)
    shown = run_cli("snapshots", "show", by_url[urls[1]]["snapshot"], "--json", env=env, check=True)
    tab = json.loads(shown.stdout)["manifest"]["capture"]["browser"]["tab"]
    assert tab.startswith("a reused tab (1 capture(s) before")
