"""Redaction: secret values never reach a WARC; the names of what was removed are recorded."""

from __future__ import annotations

import gzip
import html
import json
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest

from crawlers.redaction import REDACTED, Redactor
from crawlers.warc import CaptureWarc, iter_records

WHEN = datetime(2026, 11, 28, 12, 0, 0, 250_000, tzinfo=UTC)

# Distinct, long, unguessable-looking values, so that finding one anywhere is a real leak.
QUERY_TOKEN = "qtok-7f3a9c1e5b2d48a6"
FRAGMENT_TOKEN = "frag-0b8e2c4d6f1a3579"
BEARER = "bearer-ZXlKaGJHY2lPaUpJVXpJ"
REQUEST_COOKIE = "reqcookie-5d1c9e7a3b"
RESPONSE_COOKIE = "setcookie-8a2f4c6e0d"
API_KEY = "apikey-3e5g7i9k1m2o"
PASSWORD = "pw-h8j6k4l2m0n9"
SECRETS = [QUERY_TOKEN, FRAGMENT_TOKEN, BEARER, REQUEST_COOKIE, RESPONSE_COOKIE, API_KEY, PASSWORD]


# -- URLs ----------------------------------------------------------------------------------
def test_redact_url_replaces_values_of_secret_parameters_and_keeps_everything_else() -> None:
    redactor = Redactor()
    url = f"https://x.example/a%20b?q=caf%C3%A9&Access_Token={QUERY_TOKEN}&page=2&api-key=abc"
    redacted, names = redactor.redact_url(url)
    assert redacted == (
        "https://x.example/a%20b?q=caf%C3%A9&Access_Token=REDACTED&page=2&api-key=REDACTED"
    )
    assert names == ["query:Access_Token", "query:api-key"]


def test_redact_url_fragment_userinfo_and_edge_cases() -> None:
    redactor = Redactor()
    assert redactor.redact_url(f"https://x.example/cb#access_token={FRAGMENT_TOKEN}&state=1") == (
        "https://x.example/cb#access_token=REDACTED&state=1",
        ["fragment:access_token"],
    )
    assert redactor.redact_url(f"https://x.example/#/route?token={FRAGMENT_TOKEN}") == (
        "https://x.example/#/route?token=REDACTED",
        ["fragment:token"],
    )
    assert redactor.redact_url(f"https://alice:{PASSWORD}@x.example/p?x=1") == (
        "https://alice:REDACTED@x.example/p?x=1",
        ["url:password"],
    )
    assert redactor.redact_url("https://ghp_abcdefgh12345@github.example/r.git") == (
        "https://REDACTED@github.example/r.git",
        ["url:userinfo"],
    )
    # nothing to hide: no value, no '=', not a secret name, a fragment without parameters
    for url in (
        "https://x.example/?token=&a=1",
        "https://x.example/?token",
        "https://x.example/?tokens=1&keys=2",
        "https://x.example/page#section-2",
        "urn:screenshot:https://x.example/",
    ):
        assert redactor.redact_url(url) == (url, [])
    # idempotent
    once, _ = redactor.redact_url(f"https://x.example/?sig={QUERY_TOKEN}")
    assert redactor.redact_url(once) == (once, [])


def test_configured_names_are_added_to_the_defaults_or_replace_them() -> None:
    extended = Redactor(query_params={"Ticket"}, header_names={"X-Session"})
    assert extended.redact_url("https://x/?ticket=t12345678&token=t87654321")[1] == [
        "query:ticket",
        "query:token",
    ]
    assert extended.redact_headers([("x-session", "s"), ("Cookie", "a=b")])[1] == [
        "header:x-session",
        "header:cookie",
    ]
    only = Redactor(query_params={"ticket"}, defaults=False)
    assert only.redact_url("https://x/?key=k&ticket=t") == (
        "https://x/?key=k&ticket=REDACTED",
        ["query:ticket"],
    )


# -- headers -------------------------------------------------------------------------------
def test_redact_headers_keeps_names_order_duplicates_and_cookie_structure() -> None:
    redactor = Redactor()
    headers = [
        ("Host", "x.example"),
        ("Authorization", f"Bearer {BEARER}"),
        ("cookie", f"sid={REQUEST_COOKIE};theme=dark; consent=1"),
        ("Set-Cookie", f"sid={RESPONSE_COOKIE}; HttpOnly; Path=/; Expires=Wed, 21 Oct 2026"),
        ("Set-Cookie", "lang=de; Path=/"),
        ("X-API-Key", API_KEY),
        ("Location", f"/next?token={QUERY_TOKEN}"),
        ("X-Echo", f"seen {BEARER} here"),
        ("Proxy-Authorization", "opaque-credential-without-scheme"),
    ]
    redacted, names = redactor.redact_headers(headers)
    assert redacted == [
        ("Host", "x.example"),
        ("Authorization", "Bearer REDACTED"),
        ("cookie", "sid=REDACTED;theme=REDACTED; consent=REDACTED"),
        ("Set-Cookie", "sid=REDACTED; HttpOnly; Path=/; Expires=Wed, 21 Oct 2026"),
        ("Set-Cookie", "lang=REDACTED; Path=/"),
        ("X-API-Key", "REDACTED"),
        ("Location", "/next?token=REDACTED"),
        ("X-Echo", "seen REDACTED here"),
        ("Proxy-Authorization", "REDACTED"),
    ]
    assert names == [
        "header:authorization",
        "header:cookie",
        "header:set-cookie",
        "header:x-api-key",
        "query:token",
        "header:proxy-authorization",
    ]


# -- text ----------------------------------------------------------------------------------
def test_redact_text_scrubs_learned_and_given_secrets_in_escaped_forms() -> None:
    redactor = Redactor()
    odd = 's3cr3t/with&odd<chars>"+'
    redactor.redact_url(f"https://x/?token={quote(odd, safe='')}&session=1")
    redactor.redact_headers([("Cookie", f"sid={REQUEST_COOKIE}; c=1")])
    assert redactor.learned_names == ["header:cookie", "query:token"]  # "1" is too short
    page = (
        f"<a href='/x?token={quote(odd, safe='')}'>{html.escape(odd)}</a>"
        f"<script>var c = {json.dumps(REQUEST_COOKIE)}; var j = {json.dumps(odd)};</script>"
        "<p>session 1 of 1</p>"
    )
    text, names = redactor.redact_text(page)
    assert odd not in text and quote(odd, safe="") not in text and html.escape(odd) not in text
    assert json.dumps(odd)[1:-1] not in text and REQUEST_COOKIE not in text
    assert "<p>session 1 of 1</p>" in text  # short values are not scrubbed from text
    assert sorted(names) == ["header:cookie", "query:token"]
    data, names = redactor.redact_text(
        f"log: {API_KEY} ok {PASSWORD}".encode(), {"api": API_KEY, "pw": PASSWORD}
    )
    assert data == b"log: REDACTED ok REDACTED"
    assert sorted(names) == ["secret:api", "secret:pw"]
    assert redactor.redact_text("abc", ["b"]) == ("aREDACTEDc", ["secret"])
    with pytest.raises(ValueError, match="empty secret"):
        redactor.redact_text("abc", [""])


def test_redact_text_removes_secret_parameters_of_urls_it_has_never_seen() -> None:
    redactor = Redactor()
    dom = (
        '<a href="/api?page=2&amp;access_token=unseen-token-1">x</a>'
        "<script>fetch('https://x/y?sig=unseen-sig-2&v=1')</script>"
        "<p>ftp://bob:unseen-pw-3@files.example/</p><p>a=1; b=2 &key</p>"
    )
    text, names = redactor.redact_text(dom)
    assert text == (
        '<a href="/api?page=2&amp;access_token=REDACTED">x</a>'
        "<script>fetch('https://x/y?sig=REDACTED&v=1')</script>"
        "<p>ftp://bob:REDACTED@files.example/</p><p>a=1; b=2 &key</p>"
    )
    assert sorted(names) == ["query:access_token", "query:sig", "url:password"]
    # the values are now known, so they are scrubbed wherever else they appear
    assert redactor.redact_text(b"echo unseen-token-1")[0] == b"echo REDACTED"


def test_redact_data_walks_metadata() -> None:
    redactor = Redactor()
    data = {
        "final_url": f"https://x/?access_token={QUERY_TOKEN}",
        "redirects": [{"url": f"https://x/a?sig={API_KEY}", "status": 302}],
        "request_headers": [["Authorization", f"Basic {BEARER}"], ["Accept", "*/*"]],
        "cookie": f"sid={REQUEST_COOKIE}",
        "note": f"token was {QUERY_TOKEN}",
        "count": 3,
    }
    redacted, names = redactor.redact_data(data)
    blob = json.dumps(redacted)
    for secret in (QUERY_TOKEN, API_KEY, BEARER, REQUEST_COOKIE):
        assert secret not in blob
    assert redacted["count"] == 3 and redacted["request_headers"][1] == ["Accept", "*/*"]
    assert redacted["request_headers"][0] == ["Authorization", "Basic REDACTED"]
    assert set(names) == {"query:access_token", "query:sig", "header:authorization", "field:cookie"}


# -- the invariant, end to end -------------------------------------------------------------
def test_no_secret_value_reaches_the_warc_and_the_names_are_recorded(tmp_path: Path) -> None:
    """Secrets in the query, fragment, password, Authorization, Cookie, Set-Cookie, an API key
    header and metadata; the DOM echoes them and is scrubbed with redact_text. Afterwards not
    one byte sequence of any secret (raw or escaped) is in the gunzipped WARC."""
    url = f"https://user:{PASSWORD}@x.example/feed?access_token={QUERY_TOKEN}&page=2"
    path = tmp_path / "capture.warc.gz"
    with CaptureWarc(
        path,
        software={"dsa-evidence": "test"},
        operator="Test operator",
        host="test-host",
        user_agent="dsa-evidence-test/1",
        extra_info={"description": f"capture of {url}"},
    ) as warc:
        req = warc.request(
            url,
            "GET",
            [
                ("Host", "x.example"),
                ("Authorization", f"Bearer {BEARER}"),
                ("Cookie", f"sid={REQUEST_COOKIE}; theme=dark"),
                ("X-Api-Key", API_KEY),
            ],
            date=WHEN,
        )
        resp = warc.response(
            url,
            200,
            "OK",
            [
                ("Content-Type", "text/html; charset=utf-8"),
                ("Set-Cookie", f"sid={RESPONSE_COOKIE}; HttpOnly; Path=/"),
                ("Set-Cookie", f"sid2={RESPONSE_COOKIE}x; Secure"),
                ("Content-Location", f"/feed?token={QUERY_TOKEN}#id_token={FRAGMENT_TOKEN}"),
            ],
            b"<html><body>feed</body></html>",
            date=WHEN,
            ip="127.0.0.1",
            concurrent_to=req,
        )
        dom = (
            f"<html><body>feed <a href='{url}'>me</a> <i>{html.escape(BEARER)}</i>"
            f"<script>document.cookie = 'sid={RESPONSE_COOKIE}'; t='{FRAGMENT_TOKEN}'</script>"
            f"<!-- {quote(API_KEY)} --></body></html>"
        ).encode()
        clean_dom, dom_names = warc.redactor.redact_text(dom)
        warc.resource(
            "urn:dom:" + url,
            "text/html",
            clean_dom,
            date=WHEN,
            concurrent_to=resp,
            redacted=dom_names,
        )
        warc.metadata(
            "urn:metadata:" + url,
            {
                "requested_url": url,
                "redirects": [f"https://x.example/login?password={PASSWORD}&next=/feed"],
                "request_headers": [["Cookie", f"sid={REQUEST_COOKIE}"]],
            },
            date=WHEN,
            concurrent_to=resp,
        )

    raw = gzip.decompress(path.read_bytes())
    for secret in SECRETS:
        for form in {secret, quote(secret, safe=""), html.escape(secret)}:
            assert form.encode() not in raw, f"secret {secret!r} leaked as {form!r}"
    assert REDACTED.encode() in raw

    records = {rec.type: rec for rec in iter_records(path)}
    request, response = records["request"], records["response"]
    assert request.uri == "https://user:REDACTED@x.example/feed?access_token=REDACTED&page=2"
    assert request.http_line == "GET /feed?access_token=REDACTED&page=2 HTTP/1.1"
    assert request.warc_header("WARC-Redacted") == (
        "header:authorization, header:cookie, header:x-api-key, query:access_token, url:password"
    )
    assert response.warc_header("WARC-Redacted") == (
        "fragment:id_token, header:set-cookie, query:access_token, query:token, url:password"
    )
    assert [v for k, v in response.headers if k == "Set-Cookie"] == [
        "sid=REDACTED; HttpOnly; Path=/",
        "sid2=REDACTED; Secure",
    ]
    dom_record = records["resource"]
    assert set(dom_record.warc_header("WARC-Redacted").split(", ")) >= {
        "header:authorization",
        "header:set-cookie",
        "fragment:id_token",
        "header:x-api-key",
    }
    assert "query:password" in records["metadata"].warc_header("WARC-Redacted")
    assert "url:password" in records["warcinfo"].warc_header("WARC-Redacted")
    assert warc.redacted >= {
        "query:access_token",
        "query:password",
        "header:authorization",
        "header:cookie",
        "header:set-cookie",
        "header:x-api-key",
        "url:password",
    }
