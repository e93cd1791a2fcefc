"""The `tiktok` source end to end against the imitation TikTok (fixtures/tiktok): a watchlist
of accounts, a hashtag, a search and a single post captured in Chromium over two fixture days,
with TikTok's embedded data and the video (fetched with the page's cookies and Referer, its
digest equal to the fixture's file, read by ffprobe) as artifacts; the posts normalised into the
real index; day 2 re-captures everything (versions, counts over time, a removal, a geo-block,
an account gone private, a banned account), finds a new post, and meets a login wall and a
challenge page, which are outcomes and never snapshots. No cookie value in any stored byte.

The parser, the status codes, the page readers and the media helpers are also tested on their
own (fast): on snapshots archived from the fixture's data, without a browser."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from crawlers.items import PageCapture
from crawlers.media import cookie_header, cookies_from_exchanges, probe
from crawlers.spiders.tiktok import (
    TikTokSettings,
    blocked,
    discover,
    embedded_data,
    media_urls,
    post_item,
    rebase,
)
from evidence_store.archive import archive
from evidence_store.manifest import parse_manifest
from fixtures.tiktok import ACCOUNTS, P1, P2, P3, P4, P5, P6, P7, P8, POSTS, TikTokSite, post_path
from fixtures.tiktok import data as fixture_data
from jobs import sources
from jobs.config import load_settings
from jobs.context import open_evidence
from jobs.posts import posts_show
from records.posts.models import Post, PostVersion
from records.posts.parse import PostCapture, parse_run
from records.posts.platforms.tiktok import parse, status_of
from schemas import Capture, CaptureArtifact, CollectContext, utc_now
from tests.conftest import run_cli

HAVE_FFPROBE = subprocess.run(["which", "ffprobe"], capture_output=True).returncode == 0
needs_ffprobe = pytest.mark.skipif(not HAVE_FFPROBE, reason="ffprobe (Debian ffmpeg) not installed")
DAY1_POSTS = [P1, P2, P3, P4, P5, P6, P7]

# A spider runs Twisted's reactor, which starts once per process: each run is a subprocess
# calling jobs.crawl.crawl, as `evidence crawl` and the scheduler do.
_RUN = """
import json, sys
from pathlib import Path
from jobs.config import load_settings
from jobs.crawl import crawl
args = json.loads(sys.argv[1])
settings = load_settings(
    data_dir=Path(args["data_dir"]), db_url=args["db_url"], allow_private=True,
    sources={"tiktok": args["configured"]},
)
print(json.dumps(crawl(settings, "tiktok", args["arguments"]).to_dict()))
"""


def run_crawl(root: Path, db_url: str, configured: dict[str, Any]) -> dict[str, Any]:
    """One run of the source in a subprocess; its CrawlResult as JSON."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EVIDENCE_")}
    args = {
        "data_dir": str(root / "data"),
        "db_url": db_url,
        "configured": configured,
        "arguments": [],
    }
    proc = subprocess.run(
        [sys.executable, "-c", _RUN, json.dumps(args)],
        env=clean,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        raise AssertionError(f"crawl tiktok exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def watchlist(site: TikTokSite) -> dict[str, Any]:
    return {
        "base_url": site.base_url,
        "accounts": ["@wahlkampf_de", "@privatkonto"],
        "hashtags": ["#blackoutchallenge"],
        "searches": ["wahl"],
        "urls": [site.post_url(P7)],
        "recapture_hours": 0,  # every watched post is due again on day 2
        "backoff": 0.2,
        "max_backoff": 1,
    }


@pytest.fixture(scope="module")
def site() -> Iterator[TikTokSite]:
    with TikTokSite() as running:
        yield running


@pytest.fixture(scope="module")
def crawled(site: TikTokSite, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two days of the watchlist on SQLite (a browser run per day)."""
    root = tmp_path_factory.mktemp("tiktok")
    db_url = f"sqlite:///{root / 'index.sqlite'}"
    days = []
    for day in (1, 2):
        site.day = day
        site.reset_hits()
        if day == 2:  # the tag page answers 429 Too Many Requests on day 2
            site.rate_limited.add("/tag/blackoutchallenge")
        result = run_crawl(root, db_url, watchlist(site))
        days.append({"result": result, "media": list(site.media_requests), "hits": dict(site.hits)})
    site.rate_limited.clear()
    settings = load_settings(data_dir=root / "data", db_url=db_url)
    return {"root": root, "settings": settings, "days": days, "site": site}


def manifests(crawled: dict[str, Any], day: int) -> list[Any]:
    evidence = open_evidence(crawled["settings"])
    return [
        parse_manifest(evidence.objects.get(o["snapshot"]))
        for o in crawled["days"][day - 1]["result"]["outcomes"]
        if o.get("snapshot") and o["mode"] != "robots"
    ]


def post_manifests(crawled: dict[str, Any], day: int) -> dict[str, Any]:
    return {
        m.capture["post"]["post_id"]: m
        for m in manifests(crawled, day)
        if m.capture["post"]["kind"] == "post"
    }


def artifact(crawled: dict[str, Any], manifest: Any, role: str, name: str | None = None) -> bytes:
    evidence = open_evidence(crawled["settings"])
    entry = next(a for a in manifest.artifacts if a.role == role and name in (None, a.name))
    return evidence.objects.get(entry.sha256)


def shown(crawled: dict[str, Any], post_id: str) -> dict[str, Any]:
    return posts_show(crawled["settings"], f"tiktok:{post_id}").to_dict()


# -- the watchlist run, day 1 -----------------------------------------------------------------
@pytest.mark.slow
def test_day_one_captures_the_listings_and_every_new_post(crawled: dict[str, Any]) -> None:
    site = crawled["site"]
    result = crawled["days"][0]["result"]
    assert result["status"] == "succeeded", result["counts"]
    listings = {
        m.capture["post"]["watched_by"]: m.capture["post"]
        for m in manifests(crawled, 1)
        if m.capture["post"]["kind"] == "listing"
    }
    assert set(listings) == {
        "account:@wahlkampf_de",
        "account:@privatkonto",
        "hashtag:blackoutchallenge",
        "search:wahl",
    }
    # The account's second list page came by scrolling (the page asked the API twice).
    assert listings["account:@wahlkampf_de"]["found"] == [P1, P2, P3]
    assert listings["hashtag:blackoutchallenge"]["new"] == [P4, P6]
    assert listings["search:wahl"]["new"] == []  # its posts were queued by other listings
    posts = post_manifests(crawled, 1)
    assert set(posts) == set(DAY1_POSTS)
    assert posts[P1].capture["post"]["watched_by"] == "account:@wahlkampf_de"
    assert posts[P7].capture["post"]["watched_by"] == "url"
    assert crawled["days"][0]["hits"][post_path(P1)] == 1  # found by two listings, captured once
    # Every post capture is the browser capture plus the platform data, as received.
    for post_id, manifest in posts.items():
        roles = {a.role for a in manifest.artifacts}
        assert {"warc", "screenshot", "pdf", "dom", "platform-data", "metadata"} <= roles, post_id
    universal = json.loads(artifact(crawled, posts[P1], "platform-data", "universal-data.json"))
    detail = universal["__DEFAULT_SCOPE__"]["webapp.video-detail"]
    assert detail["statusCode"] == 0 and detail["itemInfo"]["itemStruct"]["id"] == P1
    sigi = json.loads(artifact(crawled, posts[P3], "platform-data", "sigi-state.json"))
    assert P3 in sigi["ItemModule"]
    assert posts[P3].capture["post"]["data"]["script"] == "SIGI_STATE"
    # The browser presents itself as a German visitor, and says so.
    browser = posts[P1].capture["browser"]
    assert (browser["locale"], browser["timezone"]) == ("de-DE", "Europe/Berlin")
    assert "HeadlessChrome" not in posts[P1].capture["user_agent"]
    assert site.base_url in posts[P1].capture["requested_url"]


@pytest.mark.slow
@needs_ffprobe
def test_the_video_is_the_fixtures_file_fetched_with_cookie_and_referer(
    crawled: dict[str, Any],
) -> None:
    site = crawled["site"]
    posts = post_manifests(crawled, 1)
    for post_id in (P1, P2, P3, P4, P5, P6):
        manifest = posts[post_id]
        video = next(a for a in manifest.artifacts if a.role == "media" and a.name == "video.mp4")
        expected = site.video(post_id)
        assert video.sha256 == hashlib.sha256(expected).hexdigest(), post_id
        facts = next(m for m in manifest.capture["post"]["media"] if m["kind"] == "video")
        assert facts["artifact"] == "video.mp4" and facts["sha256"] == video.sha256
        assert facts["status"] == 200 and "tt_chain_token" in facts["cookies_sent"]
        assert facts["referer"] == site.base_url + "/"
        assert "signature=REDACTED" in facts["url"]  # the CDN token is not in the metadata
        best = max(POSTS[post_id].variants, key=lambda v: v.bitrate)
        assert facts["chosen"]["bitrate"] == best.bitrate  # the largest bitrateInfo entry
        probe_facts = facts["ffprobe"]
        assert probe_facts["duration"] == pytest.approx(2.0, abs=0.05)
        assert (probe_facts["width"], probe_facts["height"]) == (best.spec.width, best.spec.height)
        assert (probe_facts["codec"], probe_facts["audio_codec"]) == ("h264", "aac")
        assert probe_facts["ffprobe"].startswith("ffprobe version")
        cover = next(m for m in manifest.capture["post"]["media"] if m["kind"] == "cover")
        assert cover["artifact"] == "cover.jpeg" and cover["ffprobe"]["codec"] == "mjpeg"
    assert not any(m["kind"] == "video" for m in posts[P7].capture["post"]["media"])
    # The CDN saw the cookie and the Referer on every video request the run made.
    videos = [r for r in crawled["days"][0]["media"] if r["path"].startswith("/video/")]
    assert len(videos) == 6
    assert all(r["status"] == 200 and "tt_chain_token" in r["cookies"] for r in videos)
    assert all(r["referer"] == site.base_url + "/" for r in videos)


@pytest.mark.slow
def test_posts_are_normalised(crawled: dict[str, Any]) -> None:
    p1 = shown(crawled, P1)["fields"]
    assert p1["author"] == {
        "id": ACCOUNTS["wahlkampf_de"].user_id,
        "handle": "wahlkampf_de",
        "name": "Wahlkampf Zentrale 2025",
        "verified": True,
        "private": False,
        "followers": None,
    }
    assert p1["created_at"].startswith("2025-02-20T17:30:00")
    assert p1["text"] == POSTS[P1].desc
    assert p1["hashtags"] == ["bundestagswahl", "wahl2025"] and p1["mentions"] == ["faktencheck"]
    assert (p1["language"], p1["location"]) == ("de", "DE")
    assert p1["labels"]["ai_generated"] is True and p1["labels"]["paid_partnership"] is False
    assert p1["labels"]["content_disclosure"] == "Vom Ersteller als KI-generiert gekennzeichnet"
    assert p1["music"] == {
        "title": "Originalton - Wahlkampf Zentrale 2025",
        "author": "Wahlkampf Zentrale 2025",
        "original": True,
    }
    assert [m["kind"] for m in p1["media"]] == ["video", "cover"]
    assert "?" not in p1["media"][0]["url"]  # signature and expiry would make every look new
    assert p1["url"] == crawled["site"].post_url(P1)
    assert shown(crawled, P2)["versions"][0]["status"] == "available"
    p2_fields = _version_fields(crawled, P2, 1)
    assert p2_fields["labels"]["paid_partnership"] is True
    assert p2_fields["location"] == "Berlin Mitte"
    p4 = _version_fields(crawled, P4, 1)
    assert p4["labels"]["sensitive_interstitial"] is True
    assert p4["labels"]["other"] == [POSTS[P4].sensitive]
    p3 = _version_fields(crawled, P3, 1)  # the old SIGI_STATE layout
    assert p3["author"]["handle"] == "wahlkampf_de" and p3["author"]["verified"] is True
    assert p3["created_at"].startswith("2025-02-10T08:15:00")
    assert p3["extra"]["layout"] == "sigi" and p3["labels"]["ai_generated"] is False
    p7 = shown(crawled, P7)
    assert p7["status"] == "age_restricted"
    assert "nicht für alle Zuschauer geeignet" in p7["fields"]["status_detail"]
    assert p7["fields"]["text"] == POSTS[P7].desc
    counts = shown(crawled, P1)["counts"][0]
    assert (counts["views"], counts["likes"], counts["shares"]) == (15300, 1200, 85)
    assert (counts["comments"], counts["saves"]) == (240, 56)


def _version_fields(crawled: dict[str, Any], post_id: str, number: int) -> dict[str, Any]:
    """The fields of one version of a post, as indexed."""
    evidence = open_evidence(crawled["settings"])
    with evidence.index.session() as session:
        row = session.scalar(select(Post).where(Post.post_id == post_id))
        version = session.scalar(
            select(PostVersion).where(PostVersion.post_pk == row.id, PostVersion.number == number)
        )
        return dict(version.fields)


@pytest.mark.slow
def test_blocks_are_waited_out_and_never_archived_as_the_page(crawled: dict[str, Any]) -> None:
    site = crawled["site"]
    # Day 1: the WAF answered P5's page once; the run waited and asked again.
    assert crawled["days"][0]["hits"][post_path(P5)] == 2
    attempts = post_manifests(crawled, 1)[P5].capture["post"]["attempts"]
    assert [a["outcome"] for a in attempts] == ["challenge"]
    # Day 2: P7 is always challenged, the search asks for a log-in: outcomes, not snapshots.
    outcomes = {o["url"]: o for o in crawled["days"][1]["result"]["outcomes"]}
    challenge = outcomes[site.post_url(P7)]
    assert challenge["outcome"] == "challenge" and challenge["snapshot"] is None
    assert "2 attempt(s)" in challenge["error"]
    login = outcomes[site.url("/search?q=wahl")]
    assert login["outcome"] == "login-wall" and login["snapshot"] is None
    limited = outcomes[site.url("/tag/blackoutchallenge")]
    assert limited["outcome"] == "rate-limited" and limited["snapshot"] is None
    assert crawled["days"][1]["hits"]["/tag/blackoutchallenge"] == 2  # waited, asked again
    assert crawled["days"][1]["result"]["status"] == "partial"
    # P7's last capture is still the day-1 one: nothing was archived as the post.
    assert shown(crawled, P7)["last_captured_at"] == shown(crawled, P7)["first_captured_at"]


# -- day 2: re-captures, versions, counts, removals -------------------------------------------
@pytest.mark.slow
def test_day_two_records_versions_counts_and_what_happened(crawled: dict[str, Any]) -> None:
    day2 = crawled["days"][1]["result"]
    stats = day2["records_stats"]["posts"]
    changes = {c["post"]: c["to"] for c in stats["changes"]}
    assert changes == {
        f"tiktok:{P2}": "removed",
        f"tiktok:{P4}": "geo_blocked",
        f"tiktok:{P5}": "account_private",
        f"tiktok:{P6}": "account_suspended",
    }
    assert stats["new"] == 1  # P8, found on the account page
    posts = post_manifests(crawled, 2)
    assert posts[P8].capture["post"]["watched_by"] == "account:@wahlkampf_de"
    assert posts[P1].capture["post"]["watched_by"] == "recapture"
    # Counts moved: a time series, not a new version.
    p1 = shown(crawled, P1)
    assert len(p1["versions"]) == 1
    assert [c["views"] for c in p1["counts"]] == [15300, 48210]
    # TikTok labelled P3 as AI-generated: a new version, and what changed.
    p3 = shown(crawled, P3)
    assert [v["changed"] for v in p3["versions"]] == [[], ["labels"]]
    assert p3["fields"]["labels"]["ai_generated"] is True


@pytest.mark.slow
def test_a_removal_is_proven_by_the_notice_next_to_the_last_capture_of_the_post(
    crawled: dict[str, Any],
) -> None:
    p2 = shown(crawled, P2)
    assert p2["status"] == "removed"
    before, after = p2["versions"]
    assert (before["status"], after["status"]) == ("available", "removed")
    # The removed version keeps what the post was and says it is gone, in TikTok's words.
    assert p2["fields"]["text"] == POSTS[P2].desc
    assert p2["fields"]["status_detail"] == "Video derzeit nicht verfügbar (statusCode 10204)"
    evidence = open_evidence(crawled["settings"])
    notice = parse_manifest(evidence.objects.get(after["snapshot"]))
    dom = artifact(crawled, notice, "dom").decode()
    assert "Video derzeit nicht verfügbar" in dom
    data = json.loads(artifact(crawled, notice, "platform-data"))
    assert data["__DEFAULT_SCOPE__"]["webapp.video-detail"]["statusCode"] == 10204
    assert not [a for a in notice.artifacts if a.role == "media"]  # nothing left to fetch
    shown_before = parse_manifest(evidence.objects.get(before["snapshot"]))
    assert any(a.name == "video.mp4" for a in shown_before.artifacts)
    assert shown(crawled, P4)["fields"]["status_detail"].startswith(fixture_data.GEO_MESSAGE)
    assert "statusCode 10222" in shown(crawled, P5)["fields"]["status_detail"]
    assert "statusCode 10221" in shown(crawled, P6)["fields"]["status_detail"]


@pytest.mark.slow
def test_a_post_is_an_exhibit_with_stills_and_a_timeline_of_its_captures(
    crawled: dict[str, Any], tmp_path: Path
) -> None:
    settings = crawled["settings"]
    env = {"EVIDENCE_DATA_DIR": str(settings.data_path), "EVIDENCE_DB_URL": settings.database_url}
    p2 = shown(crawled, P2)
    bundle = tmp_path / "post"
    case = ["--case", "Muster ./. TikTok"]
    run_cli("exhibit", "build", f"post:tiktok:{P2}", *case, "-o", str(bundle), env=env, check=True)
    [exhibit] = json.loads((bundle / "BUNDLE.json").read_text(encoding="utf-8"))["exhibits"]
    # The capture that last showed the post comes first (its screenshot and video are
    # printed), then the removal notice.
    before, after = (v["snapshot"] for v in p2["versions"])
    assert exhibit["kind"] == "post" and [s["id"] for s in exhibit["snapshots"]] == [before, after]
    assert any(f["path"].endswith("video.mp4") for f in exhibit["snapshots"][0]["artifacts"])
    text = " ".join(_pdf_text(bundle / "K1.pdf").split())
    assert f"Beitrag tiktok:{P2}" in text and "Standbilder aus dem Video" in text
    assert "removed (Video derzeit nicht verfügbar (statusCode 10204))" in text
    assert "ffmpeg -v error -ss" in text and POSTS[P2].desc[:30] in text
    verified = run_cli("exhibit", "verify", str(bundle), env=env)
    assert verified.returncode == 0, verified.stdout + verified.stderr

    # Timelines: the counts of P1 moved; P2 was removed.
    for post, expected in (
        (P1, ["changed – fields changed since T1", "15300 → 48210"]),  # noqa: RUF001 (typography of a court document)
        (P2, ["gone – removed: Video derzeit nicht verfügbar"]),  # noqa: RUF001 (typography of a court document)
    ):
        out = tmp_path / f"timeline-{post}"
        args = ["exhibit", "timeline", f"post:tiktok:{post}", *case, "--lang", "en"]
        run_cli(*args, "-o", str(out), env=env, check=True)
        text = " ".join(_pdf_text(out / "K1.pdf").split())
        assert f"Timeline of post:tiktok:{post}" in text
        assert all(e in text for e in expected), text[:3000]
        assert run_cli("exhibit", "verify", str(out), env=env).returncode == 0


def _pdf_text(path: Path) -> str:
    done = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True)
    return done.stdout


@pytest.mark.slow
def test_no_cookie_value_reaches_the_archive(crawled: dict[str, Any]) -> None:
    secrets = crawled["site"].secrets()
    assert len(secrets) > 40  # every page set tt_chain_token, ttwid and msToken
    needles = {s.encode() for s in secrets} | {s.replace("%7C", "|").encode() for s in secrets}
    checked = 0
    for path in (crawled["root"] / "data").rglob("*"):
        if not path.is_file():
            continue
        content = _expanded(path.read_bytes())
        checked += 1
        assert not any(n in content for n in needles), path
    assert checked > 100
    # ... and the WARC shows that the cookie and the list API's msToken were there.
    manifest = post_manifests(crawled, 1)[P1]
    warc = _expanded(artifact(crawled, manifest, "warc"))
    assert b"Cookie: tt_chain_token=REDACTED; ttwid=REDACTED; msToken=REDACTED" in warc
    listing = next(
        m for m in manifests(crawled, 1) if m.capture["post"].get("watched_by") == "search:wahl"
    )
    assert b"msToken=REDACTED" in _expanded(artifact(crawled, listing, "warc"))
    assert "header:cookie" in manifest.capture["redacted"]


def _expanded(data: bytes) -> bytes:
    """The bytes, with gzip members (a WARC.gz) decompressed."""
    if data[:2] != b"\x1f\x8b":
        return data
    out = b""
    while data:
        inflater = zlib.decompressobj(31)
        out += inflater.decompress(data)
        data = inflater.unused_data
    return out


# -- the fixture's CDN ------------------------------------------------------------------------
def test_the_cdn_refuses_a_video_without_the_cookie_or_the_referer(site: TikTokSite) -> None:
    with urllib.request.urlopen(site.post_url(P1)) as page:
        html = page.read()
        token = next(
            c.split(";")[0].split("=", 1)[1]
            for c in page.headers.get_all("Set-Cookie")
            if c.startswith("tt_chain_token=")
        )
    item, _, _ = post_item(*_parsed(html), P1)
    url = media_urls(item)[0][1]
    referer = site.base_url + "/"
    for headers in ({}, {"Referer": referer}, {"Cookie": f"tt_chain_token={token}"}):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(url, headers=headers))
        assert refused.value.code == 403
    ok = urllib.request.Request(
        url, headers={"Referer": referer, "Cookie": f"tt_chain_token={token}"}
    )
    with urllib.request.urlopen(ok) as answer:
        assert answer.read() == site.video(P1)


def _parsed(html: bytes) -> tuple[str, Any]:
    found = embedded_data(html)
    assert found is not None
    return found[0], json.loads(found[1])


# -- the readers, without a browser ------------------------------------------------------------
def test_page_readers() -> None:
    base = "https://www.tiktok.com"
    post = POSTS[P1]
    item = fixture_data.item_struct(base, post, 1)
    chosen = media_urls(item)
    assert [k for k, _, _ in chosen] == ["video", "cover"]
    assert chosen[0][2]["bitrate"] == 820000  # not playAddr's lower variant
    assert "br=820" in chosen[0][1]
    del item["video"]["bitrateInfo"]
    assert media_urls(item)[0][2]["source"] == "playAddr"
    assert rebase("https://www.tiktok.com/@a.b/video/123456789?is_from_webapp=1", "http://h:1") == (
        "http://h:1/@a.b/video/123456789"
    )
    listing = json.dumps(
        {"itemList": [{"id": "111111111", "author": {"uniqueId": "x"}}], "hasMore": False}
    ).encode()
    search = json.dumps(
        {"data": [{"type": 1, "item": {"id": "222222222", "author": "y"}}]}
    ).encode()
    dom = '<a href="/@z/video/333333333">z</a><a href="https://www.tiktok.com/@x/video/111111111">'
    assert discover(dom, [listing, search, b"not json"], base) == [
        ("x", "111111111"),
        ("y", "222222222"),
        ("z", "333333333"),
    ]
    now = utc_now()
    page = PageCapture("u", "browser", "archived", now, now, final_url=f"{base}/login?x=1")
    assert blocked(page, b"", False)[0] == "login-wall"
    page.final_url = f"{base}/@x/video/1"
    assert blocked(page, b'<div id="wci" class="_wafchallengeid">', False)[0] == "challenge"
    assert blocked(page, b'<div id="wci">', True) is None  # the post's data is there
    page.status = 429
    assert blocked(page, b"", False)[0] == "rate-limited"


def test_cookies_are_sent_as_a_browser_would() -> None:
    cookies = [
        {"name": "tt_chain_token", "value": "A", "domain": ".tiktok.com", "path": "/"},
        {"name": "host", "value": "B", "domain": "www.tiktok.com", "path": "/"},
        {"name": "secure", "value": "C", "domain": ".tiktok.com", "path": "/", "secure": True},
        {"name": "deep", "value": "D", "domain": ".tiktok.com", "path": "/api"},
    ]
    header, names = cookie_header(cookies, "https://v16-webapp-prime.tiktok.com/video/tos/x/")
    assert header == "tt_chain_token=A; secure=C" and names == ["tt_chain_token", "secure"]
    assert cookie_header(cookies, "http://www.tiktok.com/api/x")[1] == [
        "tt_chain_token",
        "host",
        "deep",
    ]
    assert cookie_header(cookies, "https://p16-sign.tiktokcdn.com/obj/x")[0] is None
    from crawlers.exchanges import Exchange

    exchange = Exchange(
        "GET",
        "https://www.tiktok.com/api/x",
        [],
        b"",
        utc_now(),
        200,
        "OK",
        [("Set-Cookie", "msToken=E; Path=/; Domain=tiktok.com"), ("Set-Cookie", "h=F; Path=/")],
        b"",
        utc_now(),
    )
    jar = cookies_from_exchanges([exchange])
    assert cookie_header(jar, "https://v16.tiktok.com/v")[1] == ["msToken"]
    assert cookie_header(jar, "https://www.tiktok.com/v")[1] == ["msToken", "h"]


@needs_ffprobe
def test_probe_reads_the_fixtures_video() -> None:
    from fixtures.tiktok.media import video_bytes

    spec = POSTS[P1].variants[0].spec
    facts = probe(video_bytes(spec))
    assert facts["duration"] == pytest.approx(2.0, abs=0.05)
    assert (facts["width"], facts["height"], facts["codec"]) == (spec.width, spec.height, "h264")
    assert "error" in probe(b"not a video at all")


def test_settings_take_the_watchlist_per_run() -> None:
    spec = sources.get_source("tiktok")
    settings = sources.settings_for_run(
        spec,
        {"hashtags": ["#Wahl"]},
        ["account=@wahlkampf_de", "account=https://www.tiktok.com/@privatkonto", "url=https://x"],
    )
    assert isinstance(settings, TikTokSettings)
    assert settings.accounts == ["@wahlkampf_de", "@privatkonto"]
    assert settings.hashtags == ["Wahl"] and settings.urls == ["https://x"]
    assert settings.base_url == "https://www.tiktok.com" and settings.download_media
    assert spec.prepare == "records.posts.watch:prepare_tiktok"
    assert settings.scrapy_settings()["BROWSER_LOCALE"] == "de-DE"
    with pytest.raises(Exception, match="not a TikTok account"):
        sources.settings_for_run(spec, {}, ["account=not a handle"])
    with pytest.raises(Exception, match="nothing to watch"):
        sources.settings_for_run(spec, {}, [])


# -- the parser on archived fixture pages, every state ----------------------------------------
def _archived(ev: Any, base: str, post_id: str, day: int, dom: str = "") -> PostCapture:
    post = POSTS[post_id]
    if post.layout == "sigi":
        name, data = "sigi-state.json", fixture_data.sigi_state(base, post, day, "de-DE")
    else:
        name, data = "universal-data.json", fixture_data.video_detail(base, post, day, "de-DE")
    block = {
        "platform": "tiktok",
        "kind": "post",
        "post_id": post_id,
        "url": f"{base}{post_path(post_id)}",
        "data": {"artifact": name, "role": "platform-data"},
    }
    capture = Capture(
        collection="tiktok",
        kind="capture-browser",
        source_url=block["url"],
        metadata={"post": block, "requested_url": block["url"]},
        artifacts=[
            CaptureArtifact(role="platform-data", name=name, data=json.dumps(data).encode()),
            CaptureArtifact(role="dom", name="dom.html", data=f"<p>{dom}</p>".encode()),
        ],
    )
    snapshot = archive(ev, capture)
    manifest = parse_manifest(ev.objects.get(snapshot.id))
    return PostCapture(ev, snapshot.id, manifest, block)


@pytest.mark.parametrize(
    ("post_id", "day", "dom", "status", "words"),
    [
        (P1, 1, "", "available", None),
        (P3, 1, "", "available", None),
        (
            P7,
            1,
            "Dieser Beitrag ist möglicherweise nicht für alle Zuschauer geeignet.",
            "age_restricted",
            "statusCode 0",
        ),
        (
            P2,
            2,
            "Video derzeit nicht verfügbar",
            "removed",
            "Video derzeit nicht verfügbar (statusCode 10204)",
        ),
        (P4, 2, "", "geo_blocked", "(statusCode 10204)"),
        (
            P5,
            2,
            "Dieses Konto ist privat",
            "account_private",
            "Dieses Konto ist privat (statusCode 10222)",
        ),
        (P6, 2, "", "account_suspended", "the account is banned (statusCode 10221)"),
        (P8, 1, "", "removed", "the post is not available (statusCode 10204)"),
    ],
)
def test_status_codes_become_states(
    tmp_path: Path, post_id: str, day: int, dom: str, status: str, words: str | None
) -> None:
    ev = open_evidence(load_settings(data_dir=tmp_path / "data"))
    record = parse(_archived(ev, "https://www.tiktok.com", post_id, day, dom))
    assert record is not None and record.status == status
    assert record.post_id == post_id
    if words is None:
        assert record.status_detail is None
        assert record.text == POSTS[post_id].desc and record.counts.views
    else:
        assert words in (record.status_detail or "")


def test_a_posts_life_is_indexed_on_each_database(db_url: str, tmp_path: Path) -> None:
    """The records step over archived fixture pages of two days, SQLite and PostgreSQL."""
    settings = load_settings(data_dir=tmp_path / "data", db_url=db_url)
    ev = open_evidence(settings)
    base = "https://www.tiktok.com"
    pages = [
        (P2, 1, ""),
        (P3, 1, ""),
        (P2, 2, "Video derzeit nicht verfügbar"),
        (P3, 2, ""),
    ]
    snapshots = [_archived(ev, base, post_id, day, dom).snapshot_id for post_id, day, dom in pages]
    context = CollectContext(
        run_id="00000000-0000-0000-0000-000000000001",
        collection="tiktok",
        source="tiktok",
        note=None,
        operator="test",
        workdir=tmp_path,
    )
    result = parse_run(ev, TikTokSettings(urls=["x"]), context, snapshots)
    assert result.records == 4 and not result.outcomes
    assert result.stats["posts"]["changes"] == [
        {"post": f"tiktok:{P2}", "from": "available", "to": "removed"}
    ]
    removed = posts_show(settings, f"tiktok:{P2}").to_dict()
    assert [v["snapshot"] for v in removed["versions"]] == [snapshots[0], snapshots[2]]
    labelled = posts_show(settings, f"tiktok:{P3}").to_dict()
    assert labelled["versions"][-1]["changed"] == ["labels"]
    assert [c["views"] for c in labelled["counts"]] == [70000, 71500]


def test_unknown_codes_and_missing_data(tmp_path: Path) -> None:
    ev = open_evidence(load_settings(data_dir=tmp_path / "data"))
    block = {"platform": "tiktok", "kind": "post", "post_id": P1}
    page = Capture(
        collection="tiktok",
        kind="capture-browser",
        source_url="https://www.tiktok.com/@a/video/1",
        metadata={"post": block},
        artifacts=[CaptureArtifact(role="dom", name="dom.html", data=b"<p>changed layout</p>")],
    )
    snapshot = archive(ev, page)
    capture = PostCapture(ev, snapshot.id, parse_manifest(ev.objects.get(snapshot.id)), block)
    assert parse(capture) is None  # the records step reports it "unparseable"
    assert status_of(10299, "", {}, None) == (
        "unknown",
        "TikTok's status code is not known (statusCode 10299)",
    )
    assert status_of(None, "", {}, None)[0] == "unknown"
    assert status_of(10216, "", {}, None)[0] == "removed"
