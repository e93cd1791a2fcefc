"""The Fixturegram fixture site, exercised over real HTTP(S) on 127.0.0.1 (no mocks)."""

from __future__ import annotations

import contextlib
import gzip
import http.client
import http.cookiejar
import io
import json
import re
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import urllib.robotparser
import zlib
from collections.abc import Iterator
from email.message import Message
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest

from fixtures.site import (
    ALICE_BIO,
    LOGIN_PASSWORD,
    LOGIN_USERNAME,
    SESSION_COOKIE_VALUE,
    FixtureSite,
    decode_cursor,
    encode_cursor,
)

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 10


@pytest.fixture(scope="module")
def site() -> Iterator[FixtureSite]:
    with FixtureSite() as running:
        yield running


@pytest.fixture(scope="module")
def https_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FixtureSite]:
    with FixtureSite(https=True, cert_dir=tmp_path_factory.mktemp("cert")) as running:
        yield running


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def fetch(
    site: FixtureSite,
    path: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> tuple[int, Message, bytes]:
    """One raw request on a fresh connection: no redirects followed, no decompression."""
    conn = http.client.HTTPConnection(site.host, site.port, timeout=TIMEOUT)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def fetch_json(site: FixtureSite, path: str) -> Any:
    status, headers, body = fetch(site, path)
    assert status == 200, body
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    return json.loads(body.decode("utf-8"))


# -- general headers and the index ------------------------------------------------------------


def test_index_has_realistic_headers_and_links_to_everything(site: FixtureSite) -> None:
    status, headers, body = fetch(site, "/")
    assert status == 200
    assert headers["Server"] == "fixturegram-edge/1.4"
    assert abs(time.time() - parsedate_to_datetime(headers["Date"]).timestamp()) < 60
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Cache-Control"]
    assert int(headers["Content-Length"]) == len(body)
    text = body.decode("utf-8")
    assert "Grüße" in text and "Beitrag" in text and "Fixturegram" in text
    hrefs = set(re.findall(r'href="([^"]+)"', text))
    for path in [
        "/@alice",
        "/@alice/post/1001",
        "/gzip",
        "/redirect/1",
        "/redirect/loop",
        "/slow?seconds=2",
        "/does-not-exist",
        "/error/500",
        "/set-cookie",
        "/private/feed",
        "/login",
        "/docs/transparency-report.pdf",
        "/api/users/alice",
        "/robots.txt",
        "/big?bytes=1048576",
        "/reset",
    ]:
        assert path in hrefs, path
    # Traps are marked so link-following crawls can skip them.
    assert re.search(r'href="/reset" rel="nofollow" data-trap="true"', text)


def test_head_sends_headers_without_body(site: FixtureSite) -> None:
    _, get_headers, get_body = fetch(site, "/")
    status, headers, body = fetch(site, "/", method="HEAD")
    assert status == 200
    assert body == b""
    assert headers["Content-Length"] == str(len(get_body)) == get_headers["Content-Length"]


def test_keep_alive_serves_several_requests_on_one_connection(site: FixtureSite) -> None:
    conn = http.client.HTTPConnection(site.host, site.port, timeout=TIMEOUT)
    try:
        for path in ["/", "/api/users/alice", "/static/img/1.png", "/does-not-exist"]:
            conn.request("GET", path)
            response = conn.getresponse()
            assert len(response.read()) == int(response.headers["Content-Length"])
            assert response.version == 11
    finally:
        conn.close()


def test_unsupported_method_is_refused(site: FixtureSite) -> None:
    status, headers, _ = fetch(site, "/", method="POST", body=b"x=1")
    assert status == 405
    assert "GET" in headers["Allow"]


# -- the JavaScript-rendered profile and post ------------------------------------------------


def test_profile_raw_html_is_only_a_shell(site: FixtureSite) -> None:
    status, headers, body = fetch(site, "/@alice")
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    text = body.decode("utf-8")
    assert '<div id="app">Loading…</div>' in text
    assert '<script src="/static/app.js"' in text
    assert ALICE_BIO not in text
    assert "Datenschutz ist ein Grundrecht" not in text
    assert "Alice Example" not in text
    assert "12345" not in text and "12,345" not in text
    assert "JS-rendered post text" not in text


def test_user_api_has_the_js_only_text(site: FixtureSite) -> None:
    user = fetch_json(site, "/api/users/alice")["user"]
    assert user["bio"] == ALICE_BIO
    assert user["display_name"] == "Alice Example"
    assert user["follower_count"] == 12345
    assert user["post_count"] == 30
    # The script that renders it does not contain it either.
    _, _, script = fetch(site, "/static/app.js")
    assert b"Datenschutz" not in script
    assert b"/api/users/" in script and b"next_cursor" in script


def test_posts_api_paginates_with_cursors(site: FixtureSite) -> None:
    ids: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = "?cursor=" + urllib.parse.quote(cursor) if cursor else ""
        page = fetch_json(site, "/api/users/alice/posts" + query)
        pages += 1
        assert len(page["items"]) == 10
        ids.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
        assert page["has_more"] == (cursor is not None)
        if cursor is None:
            break
    assert pages == 3
    assert ids == list(range(1030, 1000, -1))  # newest first, no gaps or repeats
    item = fetch_json(site, "/api/users/alice/posts?count=1")["items"][0]
    assert item["image_url"] == "/static/img/30.png"
    assert item["url"] == "/@alice/post/1030"
    assert "Grüße" in item["text"]
    assert decode_cursor(encode_cursor(20)) == 20


def test_posts_api_rejects_a_bad_cursor(site: FixtureSite) -> None:
    status, _, body = fetch(site, "/api/users/alice/posts?cursor=%%%garbage")
    assert status == 400
    assert json.loads(body) == {"error": "invalid_cursor"}


def test_post_page_is_a_shell_and_the_post_api_has_comments(site: FixtureSite) -> None:
    status, _, body = fetch(site, "/@alice/post/1001")
    assert status == 200
    assert '<div id="app">Loading…</div>' in body.decode("utf-8")
    post = fetch_json(site, "/api/posts/1001")["post"]
    assert post["id"] == 1001 and post["author"] == "alice"
    assert post["text"].encode("utf-8") not in body
    assert len(post["comments"]) >= 2
    assert all({"id", "author", "text"} <= set(c) for c in post["comments"])
    assert post["comment_count"] == len(post["comments"])


def test_unknown_users_and_posts_are_404(site: FixtureSite) -> None:
    assert fetch(site, "/@nobody")[0] == 404
    assert fetch(site, "/@bob/post/1001")[0] == 404  # exists, but is Alice's
    status, headers, body = fetch(site, "/api/users/nobody")
    assert status == 404
    assert headers["Content-Type"].startswith("application/json")
    assert json.loads(body)["error"] == "not_found"
    assert fetch(site, "/api/posts/999999")[0] == 404


# -- static assets and lazy images ----------------------------------------------------------


def _png_size(data: bytes) -> tuple[int, int]:
    """Check the signature and every chunk CRC; return (width, height)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        tag = data[pos + 4 : pos + 8]
        chunk = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(tag + chunk) & 0xFFFFFFFF
        if tag == b"IHDR":
            width, height = struct.unpack(">II", chunk[:8])
        elif tag == b"IDAT":
            idat += chunk
        pos += 12 + length
    assert tag == b"IEND"
    assert len(zlib.decompress(idat)) == height * (1 + 3 * width)
    return width, height


def test_images_are_valid_pngs_and_hits_are_counted(site: FixtureSite) -> None:
    before = site.hits["/static/img/17.png"]
    status, headers, body = fetch(site, "/static/img/17.png")
    assert status == 200
    assert headers["Content-Type"] == "image/png"
    assert _png_size(body) == (64, 64)
    assert site.hits["/static/img/17.png"] == before + 1
    assert fetch(site, "/static/img/18.png")[2] != body  # each image differs


def test_static_assets_answer_conditional_requests(site: FixtureSite) -> None:
    status, headers, body = fetch(site, "/static/style.css")
    assert status == 200
    assert headers["Content-Type"] == "text/css; charset=utf-8"
    assert "max-age" in headers["Cache-Control"]
    status, _, body = fetch(site, "/static/style.css", headers={"If-None-Match": headers["ETag"]})
    assert status == 304 and body == b""
    assert fetch(site, "/static/nope.js")[0] == 404


def test_profile_script_loads_images_lazily(site: FixtureSite) -> None:
    _, _, script = fetch(site, "/static/app.js")
    assert b"IntersectionObserver" in script
    assert b'loading: "lazy"' in script and b'"data-src"' in script


def test_requests_are_recorded(site: FixtureSite) -> None:
    fetch(site, "/api/users/alice?probe=1", headers={"User-Agent": "fixture-test/1"})
    recorded = [r for r in site.requests if r.target == "/api/users/alice?probe=1"]
    assert recorded and recorded[-1].path == "/api/users/alice"
    assert recorded[-1].header("user-agent") == "fixture-test/1"


# -- encodings, redirects, timing ---------------------------------------------------------------


def test_gzip_page(site: FixtureSite) -> None:
    status, headers, body = fetch(site, "/gzip", headers={"Accept-Encoding": "gzip"})
    assert status == 200
    assert headers["Content-Encoding"] == "gzip"
    assert headers["Vary"] == "Accept-Encoding"
    assert int(headers["Content-Length"]) == len(body)
    html = gzip.decompress(body).decode("utf-8")
    assert html.startswith("<!doctype html>") and "Komprimierter Absatz 20" in html


def test_redirect_chain(site: FixtureSite) -> None:
    status, headers, _ = fetch(site, "/redirect/1")
    assert (status, headers["Location"]) == (302, "/redirect/2")
    status, headers, _ = fetch(site, "/redirect/2")
    assert (status, headers["Location"]) == (301, f"{site.base_url}/@alice")
    with urllib.request.urlopen(site.url("/redirect/1"), timeout=TIMEOUT) as response:
        assert response.status == 200
        assert response.url == site.url("/@alice")


def test_redirect_loop_never_ends(site: FixtureSite) -> None:
    assert fetch(site, "/redirect/loop")[1]["Location"] == "/redirect/loop/b"
    assert fetch(site, "/redirect/loop/b")[1]["Location"] == "/redirect/loop"
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(site.url("/redirect/loop"), timeout=TIMEOUT)
    assert info.value.code == 302
    info.value.close()


def test_slow_does_not_block_other_requests(site: FixtureSite) -> None:
    result: dict[str, float] = {}

    def slow() -> None:
        start = time.monotonic()
        status, _, body = fetch(site, "/slow?seconds=1.5")
        assert status == 200 and b"Slept 1.5 seconds" in body
        result["slow"] = time.monotonic() - start

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.2)
    start = time.monotonic()
    assert fetch(site, "/")[0] == 200
    fast = time.monotonic() - start
    thread.join(TIMEOUT)
    assert fast < 0.5
    assert result["slow"] >= 1.4


def test_slow_rejects_non_numbers(site: FixtureSite) -> None:
    assert fetch(site, "/slow?seconds=soon")[0] == 400
    assert fetch(site, "/slow?seconds=nan")[0] == 400


def test_stop_ends_a_pending_slow_request_quickly() -> None:
    finished = threading.Event()
    with FixtureSite() as own:

        def slow() -> None:
            # Capped at 60 s, but stop() releases it at once.
            with contextlib.suppress(OSError, http.client.HTTPException):
                fetch(own, "/slow?seconds=1000")
            finished.set()

        threading.Thread(target=slow, daemon=True).start()
        deadline = time.monotonic() + 5
        while own.hits["/slow"] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        start = time.monotonic()
    assert time.monotonic() - start < 2
    assert finished.wait(5)


# -- error pages ----------------------------------------------------------------------------


def test_unknown_path_gets_a_styled_404(site: FixtureSite) -> None:
    status, headers, body = fetch(site, "/does-not-exist")
    assert status == 404
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    text = body.decode("utf-8")
    assert '<link rel="stylesheet" href="/static/style.css">' in text
    assert "Not Found" in text
    assert fetch(site, "/some/other/missing/thing")[0] == 404


def test_error_pages(site: FixtureSite) -> None:
    status, headers, body = fetch(site, "/error/500")
    assert status == 500
    assert b"Internal Server Error" in body
    status, headers, _ = fetch(site, "/error/503")
    assert (status, headers["Retry-After"]) == (503, "1")
    assert fetch(site, "/error/200")[0] == 404


# -- cookies and the login wall --------------------------------------------------------------


def test_set_cookie(site: FixtureSite) -> None:
    status, headers, body = fetch(site, "/set-cookie")
    assert status == 200
    cookies = headers.get_all("Set-Cookie")
    assert cookies is not None and len(cookies) == 2
    assert f"session={SESSION_COOKIE_VALUE}; HttpOnly; Path=/" in cookies
    assert any(c.startswith("tracking_id=") for c in cookies)
    assert b"you are tracked" in body
    assert SESSION_COOKIE_VALUE.encode() not in body


def test_login_wall_without_cookie_is_a_200_form(site: FixtureSite) -> None:
    status, headers, body = fetch(site, "/private/feed")
    assert status == 200
    text = body.decode("utf-8")
    assert "Log in to see this content" in text
    assert 'type="password"' in text
    assert "Your private feed" not in text
    assert "no-store" in headers["Cache-Control"]
    wrong = fetch(site, "/private/feed", headers={"Cookie": "session=WRONG"})[2]
    assert b"Log in to see this content" in wrong


def test_login_wall_with_cookie_shows_the_feed(site: FixtureSite) -> None:
    cookie = {"Cookie": f"theme=dark; session={SESSION_COOKIE_VALUE}"}
    status, _, body = fetch(site, "/private/feed", headers=cookie)
    assert status == 200
    assert b"Your private feed" in body
    assert b"Log in to see this content" not in body


def test_login_form_flow_with_a_cookie_jar(site: FixtureSite) -> None:
    form = {"username": LOGIN_USERNAME, "password": "wrong", "next": "/private/feed"}
    status, headers, body = fetch(
        site,
        "/login",
        method="POST",
        body=urllib.parse.urlencode(form).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 200 and headers.get("Set-Cookie") is None
    assert b"Wrong username or password" in body

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    form["password"] = LOGIN_PASSWORD
    with opener.open(
        site.url("/login"), data=urllib.parse.urlencode(form).encode(), timeout=TIMEOUT
    ) as response:
        assert response.url == site.url("/private/feed")
        assert b"Your private feed" in response.read()
    assert {c.name: c.value for c in jar}["session"] == SESSION_COOKIE_VALUE


def test_login_refuses_open_redirects(site: FixtureSite) -> None:
    form = {"username": LOGIN_USERNAME, "password": LOGIN_PASSWORD, "next": "//evil.example/"}
    status, headers, _ = fetch(
        site, "/login", method="POST", body=urllib.parse.urlencode(form).encode()
    )
    assert (status, headers["Location"]) == (303, "/private/feed")


# -- documents, API, robots, size -------------------------------------------------------------


def test_pdf_is_well_formed(site: FixtureSite) -> None:
    status, headers, pdf = fetch(site, "/docs/transparency-report.pdf")
    assert status == 200
    assert headers["Content-Type"] == "application/pdf"
    assert int(headers["Content-Length"]) == len(pdf)
    assert pdf.startswith(b"%PDF-1.4\n")
    assert pdf.endswith(b"%%EOF")
    assert b"(DSA Transparency Report) Tj" in pdf
    # startxref points at the xref table, and every entry at its "N 0 obj".
    trailer = re.search(rb"startxref\n(\d+)\n%%EOF$", pdf)
    assert trailer is not None
    xref_at = int(trailer.group(1))
    assert pdf[xref_at:].startswith(b"xref\n0 ")
    header = re.match(rb"xref\n0 (\d+)\n", pdf[xref_at:])
    assert header is not None
    count = int(header.group(1))
    table = pdf[xref_at + header.end() :]
    entries = [table[i * 20 : (i + 1) * 20] for i in range(count)]
    assert entries[0] == b"0000000000 65535 f \n"
    for number, entry in enumerate(entries[1:], start=1):
        assert re.fullmatch(rb"\d{10} 00000 n \n", entry)
        offset = int(entry[:10])
        assert pdf[offset:].startswith(f"{number} 0 obj\n".encode())
    # The content stream's /Length is exact.
    match = re.search(rb"<< /Length (\d+) >>\nstream\n", pdf)
    assert match is not None
    end = match.end() + int(match.group(1))
    assert pdf[end:].startswith(b"\nendstream")
    assert f"/Size {count} ".encode() in pdf


def test_pdf_parses_with_pypdf_if_available(site: FixtureSite) -> None:
    pypdf = pytest.importorskip("pypdf")
    reader = pypdf.PdfReader(io.BytesIO(fetch(site, "/docs/transparency-report.pdf")[2]))
    text = reader.pages[0].extract_text()
    assert "DSA Transparency Report" in text and "Grüße" in text


def test_secret_api_never_echoes_the_token(site: FixtureSite) -> None:
    token = "tok-SUPERSECRET-987"
    status, headers, body = fetch(site, f"/api/secret?access_token={token}")
    assert status == 200 and "no-store" in headers["Cache-Control"]
    assert json.loads(body)["token_given"] is True
    assert token.encode() not in body and b"SUPERSECRET" not in body
    assert json.loads(fetch(site, "/api/secret")[2])["token_given"] is False
    bearer = fetch(site, "/api/secret", headers={"Authorization": f"Bearer {token}"})[2]
    assert json.loads(bearer)["authorization_header_given"] is True
    assert token.encode() not in bearer


def test_robots_txt(site: FixtureSite) -> None:
    status, headers, body = fetch(site, "/robots.txt")
    assert status == 200 and headers["Content-Type"] == "text/plain; charset=utf-8"
    parser = urllib.robotparser.RobotFileParser()
    parser.parse(body.decode().splitlines())
    assert not parser.can_fetch("*", site.url("/private/feed"))
    assert parser.can_fetch("*", site.url("/@alice"))
    assert parser.can_fetch("*", site.url("/login"))


@pytest.mark.parametrize("size", [0, 1, 65536, 3 * 65536 + 17])
def test_big_sends_exactly_n_bytes(site: FixtureSite, size: int) -> None:
    status, headers, body = fetch(site, f"/big?bytes={size}")
    assert status == 200
    assert headers["Content-Length"] == str(size)
    assert len(body) == size


def test_big_chunked_and_head(site: FixtureSite) -> None:
    status, headers, body = fetch(site, "/big?bytes=200000&chunked=1")
    assert status == 200
    assert headers["Transfer-Encoding"] == "chunked" and headers["Content-Length"] is None
    assert len(body) == 200000
    status, headers, body = fetch(site, "/big?bytes=5000000000000", method="HEAD")
    assert status == 400
    status, headers, body = fetch(site, "/big?bytes=1000000000", method="HEAD")
    assert (status, headers["Content-Length"], body) == (200, "1000000000", b"")


def test_client_giving_up_on_big_does_not_hurt_the_server(site: FixtureSite) -> None:
    conn = http.client.HTTPConnection(site.host, site.port, timeout=TIMEOUT)
    conn.request("GET", "/big?bytes=500000000")
    response = conn.getresponse()
    assert len(response.read(100_000)) == 100_000
    conn.close()
    assert fetch(site, "/")[0] == 200


def test_reset_raises_a_connection_error(site: FixtureSite) -> None:
    with pytest.raises(ConnectionError):
        fetch(site, "/reset")
    with pytest.raises((ConnectionError, urllib.error.URLError)):
        urllib.request.urlopen(site.url("/reset"), timeout=TIMEOUT)
    assert fetch(site, "/")[0] == 200  # the server carries on


# -- HTTPS ---------------------------------------------------------------------------------------


def trusting(site: FixtureSite) -> ssl.SSLContext:
    """A client context whose only trust anchor is the site's self-signed certificate."""
    assert site.cert_pem is not None
    return ssl.create_default_context(cadata=site.cert_pem.decode("ascii"))


def test_https_works_with_the_generated_cert_as_ca(https_site: FixtureSite) -> None:
    assert https_site.base_url.startswith("https://127.0.0.1:")
    assert https_site.cert_pem is not None and https_site.cert_pem.startswith(b"-----BEGIN")
    context = trusting(https_site)
    with urllib.request.urlopen(https_site.url("/@alice"), context=context) as response:
        assert response.status == 200
        assert b'<div id="app">Loading' in response.read()
    # What a capture would record as the peer certificate is exactly cert_pem.
    with (
        socket.create_connection(("127.0.0.1", https_site.port), timeout=TIMEOUT) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der == ssl.PEM_cert_to_DER_cert(https_site.cert_pem.decode("ascii"))
    assert https_site.cert_path is not None and https_site.cert_path.read_bytes() == (
        https_site.cert_pem
    )


def test_https_absolute_redirect_keeps_the_scheme(https_site: FixtureSite) -> None:
    context = trusting(https_site)
    with urllib.request.urlopen(https_site.url("/redirect/1"), context=context) as response:
        assert response.url == https_site.url("/@alice")


def test_https_fails_verification_without_the_cert(https_site: FixtureSite) -> None:
    with pytest.raises(urllib.error.URLError) as info:
        urllib.request.urlopen(https_site.url("/"), timeout=TIMEOUT)
    assert isinstance(info.value.reason, ssl.SSLCertVerificationError)
    # A failed handshake does not disturb the server.
    context = trusting(https_site)
    with urllib.request.urlopen(https_site.url("/"), context=context) as response:
        assert response.status == 200


def test_https_cert_names_localhost_and_loopback(https_site: FixtureSite) -> None:
    from cryptography import x509

    assert https_site.cert_pem is not None
    cert = x509.load_pem_x509_certificate(https_site.cert_pem)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert https_site.cert_sha256 is not None and len(https_site.cert_sha256) == 64


def test_https_reset_is_still_a_connection_error(https_site: FixtureSite) -> None:
    context = trusting(https_site)
    conn = http.client.HTTPSConnection("127.0.0.1", https_site.port, context=context)
    try:
        conn.request("GET", "/reset")
        # The TCP RST can surface as ECONNRESET or as an EOF from the TLS layer.
        with pytest.raises((ConnectionError, ssl.SSLError)):
            conn.getresponse()
    finally:
        conn.close()


# -- lifecycle and command line -----------------------------------------------------------------


def test_lifecycle() -> None:
    site = FixtureSite()
    with pytest.raises(RuntimeError):
        _ = site.base_url
    assert site.start() is site
    port = site.port
    assert port > 0 and site.base_url == f"http://127.0.0.1:{port}"
    site.stop()
    site.stop()  # idempotent
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_two_sites_run_side_by_side() -> None:
    with FixtureSite() as first, FixtureSite() as second:
        assert first.port != second.port
        assert fetch(first, "/")[0] == fetch(second, "/")[0] == 200
        assert first.hits["/"] == second.hits["/"] == 1


def test_command_line_prints_its_url_and_serves() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "fixtures.site", "--port", "0", "--quiet"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
        with urllib.request.urlopen(url + "/robots.txt", timeout=TIMEOUT) as response:
            assert b"Disallow: /private/" in response.read()
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
