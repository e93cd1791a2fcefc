"""Which URLs a capture fetches: schemes, invalid URLs, credentials, private addresses.

The crawls run for real (Scrapy, Chromium, the fixture site) in subprocesses, because a
Twisted reactor runs once per process.

What cannot run here: a public address. There is no route to the internet, so the "public"
site of these tests is the fixture site on ``::1``, allowed through
``EVIDENCE_ALLOW_PRIVATE_NETWORKS=["::1/128"]``, while the "private" target is a second fixture
site on 127.0.0.1, which stays refused. The refusal paths are the same ones a real public page
redirecting to 127.0.0.1 would take: the URL policy middleware (IP literals), the resolver
(``localhost`` resolves to 127.0.0.1), and in Chromium the DevTools request check.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crawlers.urls import (
    AddressPolicy,
    UrlRefused,
    check_url,
    is_public_address,
    mask_credentials,
    url_problem,
)
from fixtures.site import FixtureSite

KEY_MARKER = "PRIVATE-KEY-MATERIAL-0xDEADBEEF"
PASSWORD = "hunter2-Pa55word"
USER = "mallory-the-user"

_RUN = """
import json, sys
from pathlib import Path
from crawlers.runner import capture_pages
from evidence_store.archive import EvidenceStore
from evidence_store.index import Index
from evidence_store.objects import LocalStore
from evidence_store.signing import Signer

config = json.loads(sys.argv[1])
root = Path(config["root"])
index = Index(f"sqlite:///{root / 'index.sqlite'}")
evidence = EvidenceStore(
    objects=LocalStore(root / "objects"), index=index,
    signer=Signer.load_or_create(root / "keys"), actor="pytest",
)
outcomes = capture_pages(
    evidence, config["urls"], mode=config["mode"], obey_robots=config["robots"],
    **config["settings"],
)
index.dispose()
print(json.dumps([o.model_dump(mode="json") for o in outcomes]))
"""


# -- the checks without network ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "outcome"),
    [
        ("not a url", "invalid-url"),
        ("example.org/page", "invalid-url"),
        ("http://", "invalid-url"),
        ("http:///path", "invalid-url"),
        ("http://exa mple.org/", "invalid-url"),
        ("http://example.org:99999/", "invalid-url"),
        ("http://example.org:0/", "invalid-url"),
        ("http://example.org:port/", "invalid-url"),
        ("http://[::1/", "invalid-url"),
        ("http://[example.org]/", "invalid-url"),
        ("http://exa<mple.org/", "invalid-url"),
        ("http://2130706433/", "invalid-url"),
        ("file:///etc/passwd", "unsupported-scheme"),
        ("FILE:///etc/passwd", "unsupported-scheme"),
        ("ftp://example.org/file", "unsupported-scheme"),
        ("data:text/html,<h1>hi</h1>", "unsupported-scheme"),
        ("s3://bucket/key", "unsupported-scheme"),
        ("about:blank", "unsupported-scheme"),
        ("javascript:alert(1)", "unsupported-scheme"),
        (f"http://{USER}:{PASSWORD}@example.org/", "credentials-in-url"),
        ("https://token@example.org/", "credentials-in-url"),
        ("http://127.0.0.1/", "private-address"),
        ("http://169.254.169.254/latest/meta-data/", "private-address"),
        ("http://10.1.2.3/", "private-address"),
        ("http://172.16.0.1/", "private-address"),
        ("http://192.168.1.1/", "private-address"),
        ("http://100.64.0.1/", "private-address"),
        ("http://0.0.0.0:8080/", "private-address"),
        ("http://224.0.0.1/", "private-address"),
        ("http://[::1]:8080/", "private-address"),
        ("http://[fe80::1]/", "private-address"),
        ("http://[fd00::1]/", "private-address"),
        ("http://[::ffff:127.0.0.1]/", "private-address"),
        ("http://[64:ff9b::a9fe:a9fe]/", "private-address"),
        ("http://[2002:7f00:1::]/", "private-address"),
        ("http://example.org/", None),
        ("https://Bücher.example/straße?q=1#top", None),
        ("http://93.184.215.14:8080/a", None),
        ("http://[2606:4700::1111]/", None),
    ],
)
def test_check_url(url: str, outcome: str | None) -> None:
    refused = url_problem(url)
    assert (refused.outcome if refused else None) == outcome, refused and refused.message
    if refused is not None:
        assert refused.message and USER not in refused.message and PASSWORD not in refused.url
        with pytest.raises(UrlRefused):
            check_url(url)


def test_private_addresses_pass_when_allowed() -> None:
    assert url_problem("http://127.0.0.1:8080/", allow_private=True) is None
    assert url_problem("http://[::1]/", allow_private=True) is None
    # the opt-in is about addresses, not about schemes or credentials
    assert url_problem("file:///etc/passwd", allow_private=True).outcome == "unsupported-scheme"
    refused = url_problem("http://u:p@127.0.0.1/", allow_private=True)
    assert refused.outcome == "credentials-in-url"
    only_v6 = AddressPolicy(allowed_networks=(ipaddress.ip_network("::1/128"),))
    assert url_problem("http://[::1]/", policy=only_v6) is None
    assert url_problem("http://127.0.0.1/", policy=only_v6).outcome == "private-address"


def test_credentials_are_masked() -> None:
    url = f"http://{USER}:{PASSWORD}@example.org:8080/path?q=1"
    assert mask_credentials(url) == "http://***@example.org:8080/path?q=1"
    assert mask_credentials("http://example.org/a@b") == "http://example.org/a@b"
    refused = url_problem(url)
    assert refused.url == "http://***@example.org:8080/path?q=1"


def test_public_addresses() -> None:
    assert is_public_address("93.184.215.14") and is_public_address("2606:4700::1111")
    for address in ("127.0.0.1", "169.254.169.254", "100.100.100.100", "::", "ff02::1", "::1"):
        assert not is_public_address(address), address


# -- real crawls ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def private_site() -> Iterator[FixtureSite]:
    """The target that must never be reached: on 127.0.0.1, refused by default."""
    with FixtureSite() as running:
        yield running


@pytest.fixture(scope="module")
def public_site() -> Iterator[FixtureSite]:
    """The stand-in for a public site: on ::1, allowed by EVIDENCE_ALLOW_PRIVATE_NETWORKS."""
    with FixtureSite(host="::1") as running:
        yield running


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    keys = tmp_path / "keys-of-the-archive"
    keys.mkdir()
    path = keys / "manifest-signing.ed25519.pem"
    path.write_text(f"-----BEGIN PRIVATE KEY-----\n{KEY_MARKER}\n-----END PRIVATE KEY-----\n")
    return path


def capture(
    root: Path, urls: list[str], *, mode: str = "http", robots: bool = False, **settings: Any
) -> tuple[list[dict[str, Any]], str]:
    """Run crawlers.runner.capture_pages in a subprocess; (outcomes, stdout + stderr)."""
    config = {"root": str(root), "urls": urls, "mode": mode, "robots": robots}
    config["settings"] = {"LOG_LEVEL": "DEBUG", **settings}  # everything a log would show
    proc = subprocess.run(
        [sys.executable, "-c", _RUN, json.dumps(config)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    return json.loads(proc.stdout), proc.stdout + proc.stderr


def stored_bytes(root: Path) -> list[bytes]:
    """Every stored object, gzip members decompressed too."""
    blobs = []
    for path in (root / "objects").rglob("*"):
        if path.is_file():
            raw = path.read_bytes()
            blobs.append(raw)
            rest = raw
            while rest[:2] == b"\x1f\x8b":
                inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
                blobs.append(inflate.decompress(rest))
                rest = inflate.unused_data
    return blobs


def by_url(outcomes: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    pages = [o for o in outcomes if o["mode"] != "robots"]
    found = {o["url"]: o for o in pages}
    assert len(found) == len(pages)  # one outcome per URL
    return found


@pytest.mark.slow
def test_http_refuses_without_a_request(
    tmp_path: Path, private_site: FixtureSite, public_site: FixtureSite, key_file: Path
) -> None:
    private_site.reset_stats()
    creds = f"http://{USER}:{PASSWORD}@127.0.0.1:{private_site.port}/@alice"
    urls = {
        "key": key_file.as_uri(),
        "text": "not a url",
        "port": "http://127.0.0.1:99999/",
        "creds": creds,
        "loopback": private_site.url("/@alice"),
        "localhost": f"http://localhost:{private_site.port}/@bob",
        "ipv6": public_site.url("/@alice"),  # not allowed in this run
        "metadata": "http://169.254.169.254/latest/meta-data/",
    }
    outcomes, output = capture(tmp_path, list(urls.values()), robots=True)
    found = by_url(outcomes)
    expected = {
        "key": "unsupported-scheme",
        "text": "invalid-url",
        "port": "invalid-url",
        "creds": "credentials-in-url",
        "loopback": "private-address",
        "localhost": "private-address",
        "ipv6": "private-address",
        "metadata": "private-address",
    }
    shown = {key: url for key, url in urls.items()}
    shown["creds"] = f"http://***@127.0.0.1:{private_site.port}/@alice"
    assert {k: found[shown[k]]["outcome"] for k in urls} == expected
    assert all(o["snapshot"] is None and o["error"] for o in found.values())
    assert "localhost (127.0.0.1)" in found[shown["localhost"]]["error"]  # by the resolver
    assert sum(private_site.hits.values()) == 0 and sum(public_site.hits.values()) == 0
    assert not stored_bytes(tmp_path)
    assert PASSWORD not in output and USER not in output


@pytest.mark.slow
def test_http_redirect_hops_are_checked(
    tmp_path: Path, private_site: FixtureSite, public_site: FixtureSite, key_file: Path
) -> None:
    private_site.reset_stats()

    def redirect(location: str) -> str:
        from urllib.parse import quote

        return public_site.url("/redirect/to?location=" + quote(location, safe=":/@"))

    urls = {
        "page": public_site.url("/@alice"),  # IPv6 literal: fetched through the resolver
        "to-literal": redirect(private_site.url("/@alice")),
        "to-name": redirect(f"http://localhost:{private_site.port}/@bob"),
        "to-file": redirect(key_file.as_uri()),
        "to-creds": redirect(f"http://{USER}:{PASSWORD}@[::1]:{public_site.port}/@bob"),
        "bad": "not a url",
    }
    outcomes, _ = capture(
        tmp_path, list(urls.values()), robots=True, EVIDENCE_ALLOW_PRIVATE_NETWORKS=["::1/128"]
    )
    # the archive shows the requested URL redacted (a password in its query string)
    found = {u.replace("REDACTED", PASSWORD): o for u, o in by_url(outcomes).items()}
    assert {k: found[u]["outcome"] for k, u in urls.items()} == {
        "page": "archived",
        "to-literal": "private-address",
        "to-name": "private-address",
        "to-file": "unsupported-scheme",
        "to-creds": "credentials-in-url",
        "bad": "invalid-url",
    }
    assert found[urls["page"]]["status"] == 200
    # the redirect itself is evidence, and archived; where it pointed was not fetched
    for key in ("to-literal", "to-name", "to-file", "to-creds"):
        assert found[urls[key]]["status"] == 302 and found[urls[key]]["snapshot"], key
    assert found[urls["to-literal"]]["error"].startswith("redirect to http://127.0.0.1:")
    assert "localhost (127.0.0.1)" in found[urls["to-name"]]["error"]
    assert sum(private_site.hits.values()) == 0
    assert not any(KEY_MARKER.encode() in blob for blob in stored_bytes(tmp_path))
    # The redirect with credentials was not followed. Its Location header and body stay in the
    # archive as the server sent them: bodies are evidence and never rewritten.
    assert public_site.hits["/@bob"] == 0
    assert PASSWORD not in found[urls["to-creds"]]["error"]


@pytest.mark.slow
def test_http_invalid_url_does_not_stop_the_others(
    tmp_path: Path, private_site: FixtureSite, public_site: FixtureSite, key_file: Path
) -> None:
    urls = [
        "not a url",
        private_site.url("/@alice"),
        key_file.as_uri(),
        private_site.url("/@bob"),
        public_site.url("/@alice"),
    ]
    outcomes, _ = capture(tmp_path, urls, EVIDENCE_ALLOW_PRIVATE=True)
    found = by_url(outcomes)
    assert [found[u]["outcome"] for u in urls] == [
        "invalid-url",
        "archived",
        "unsupported-scheme",  # allowing private addresses allows no other scheme
        "archived",
        "archived",
    ]
    assert not any(KEY_MARKER.encode() in blob for blob in stored_bytes(tmp_path))


@pytest.mark.slow
def test_browser_refuses_private_pages_hops_and_subresources(
    tmp_path: Path, private_site: FixtureSite, public_site: FixtureSite, key_file: Path
) -> None:
    private_site.reset_stats()
    from urllib.parse import quote

    urls = {
        "key": key_file.as_uri(),
        "creds": f"http://{USER}:{PASSWORD}@[::1]:{public_site.port}/@alice",
        "private": private_site.url("/@alice"),
        "embed": public_site.url("/embed?img=" + quote(private_site.url("/static/img/1.png"))),
        "to-literal": public_site.url("/redirect/to?location=" + private_site.url("/@alice")),
        "to-name": public_site.url(
            f"/redirect/to?location=http://localhost:{private_site.port}/@bob"
        ),
    }
    outcomes, output = capture(
        tmp_path,
        list(urls.values()),
        mode="browser",
        EVIDENCE_ALLOW_PRIVATE_NETWORKS=["::1/128"],
        BROWSER_CONTEXTS=2,
    )
    found = by_url(outcomes)
    shown = dict(urls, creds=f"http://***@[::1]:{public_site.port}/@alice")
    assert {k: found[u]["outcome"] for k, u in shown.items()} == {
        "key": "unsupported-scheme",
        "creds": "credentials-in-url",
        "private": "private-address",
        "embed": "archived",
        "to-literal": "private-address",
        "to-name": "private-address",
    }
    assert "localhost (127.0.0.1)" in found[urls["to-name"]]["error"]
    # Chromium never reached the private site: not the page, not the hop, not the image
    assert sum(private_site.hits.values()) == 0
    assert not any(KEY_MARKER.encode() in blob for blob in stored_bytes(tmp_path))
    assert PASSWORD not in output
    metadata = [
        json.loads(blob)
        for blob in stored_bytes(tmp_path)
        if blob.startswith(b"{") and b'"refused_requests"' in blob
    ]
    [refused] = [m["refused_requests"] for m in metadata if m.get("outcome") == "archived"]
    assert refused[0]["url"] == private_site.url("/static/img/1.png")
    assert refused[0]["outcome"] == "private-address"
