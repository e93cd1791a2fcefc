"""The `x` post source end to end against the imitation X (fixtures/x): account pages watched
in real Chromium, each new post captured with its syndication JSON (the embed widget's
token), the guest GraphQL and its media (real MP4s, real ffprobe), normalised into the real
index; a second fixture day re-captures every watched post: an edit as a version, counts as
a series, a deletion, a suspension and a withholding in Germany as states with the notice
archived, a new post behind a 429; hashtag and search pages end as login walls, not
snapshots; no guest token or bearer in any stored byte. The token rule is checked against
V8 itself (Chromium), and the parsing helpers on their own (fast)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from crawlers.spiders.x import (
    SYNDICATION_FEATURES,
    XSettings,
    best_mp4,
    discover_posts,
    parse_post_url,
)
from crawlers.x_token import js_radix_string, syndication_token
from evidence_store.errors import InputError
from evidence_store.manifest import parse_manifest
from fixtures.x import GUEST_BEARER, POSTS, XSite, media_bytes, snowflake_time
from fixtures.x import content as fixture_content
from fixtures.x.server import syndication_token as fixture_token
from jobs.config import load_settings
from jobs.context import open_evidence
from jobs.sources import get_source, settings_for_run
from records.posts.models import Post, PostCount, PostVersion
from records.posts.platforms.x import snowflake_time as parsed_snowflake_time
from records.posts.platforms.x import status_for_notice
from tests.conftest import run_cli

CHROMIUM = "/usr/bin/chromium"
MISSING_ID = "1892300000000000000"  # a well-formed id the fixture does not know

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
    sources=args["sources"],
)
print(json.dumps(crawl(settings, "x", args["arguments"]).to_dict()))
"""


def run_crawl(root: Path, configured: dict[str, Any], arguments: list[str]) -> dict[str, Any]:
    """One run of the `x` source in a subprocess; its CrawlResult as JSON."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVIDENCE_")}
    # The bearer is a credential: from the environment only, never from -a.
    env["EVIDENCE_SOURCES__X__GUEST_BEARER"] = GUEST_BEARER
    args = {
        "data_dir": str(root / "data"),
        "db_url": f"sqlite:///{root / 'index.sqlite'}",
        "sources": {"x": configured},
        "arguments": arguments,
    }
    proc = subprocess.run(
        [sys.executable, "-c", _RUN, json.dumps(args)],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        raise AssertionError(f"crawl x exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- the token, against V8 -------------------------------------------------------------------
def _ids() -> list[str]:
    rng = random.Random(13)
    ids = [str(rng.randrange(1, 2**63)) for _ in range(1500)]
    ids += [str(rng.randrange(1, 10**k)) for k in range(1, 20) for _ in range(20)]
    return ids + [p.id for p in POSTS.values()] + ["20", "1", "1628832338187636740"]


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium is not installed")
def test_the_token_is_the_embed_widgets_digit_for_digit() -> None:
    from playwright.sync_api import sync_playwright

    ids = _ids()
    script = """(ids) => ids.map((id) => [
        ((Number(id) / 1e15) * Math.PI).toString(36),
        ((Number(id) / 1e15) * Math.PI).toString(6 ** 2).replace(/(0+|\\.)/g, ''),
    ])"""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            answers = page.evaluate(script, ids)
            radix = page.evaluate("(xs) => xs.map((x) => x.toString(36))", [0.5, 35, 36, 1e21])
        finally:
            browser.close()
    for post_id, (raw, token) in zip(ids, answers, strict=True):
        assert js_radix_string(float(int(post_id)) / 1e15 * math.pi) == raw, post_id
        assert syndication_token(post_id) == token == fixture_token(post_id), post_id
    assert [js_radix_string(x) for x in (0.5, 35, 36, 1e21)] == radix


# -- helpers on their own ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://x.com/wahlinfo_de/status/1892265389061046272",
            ("wahlinfo_de", "1892265389061046272"),
        ),
        ("https://twitter.com/a_b/status/20?s=20&t=abc", ("a_b", "20")),
        ("https://mobile.x.com/Someone/status/123/photo/1", ("Someone", "123")),
        ("https://twitter.com/#!/jack/status/20", ("jack", "20")),
        ("https://x.com/i/web/status/1892265389061046272", (None, "1892265389061046272")),
        ("https://x.com/wahlinfo_de", None),
        ("https://x.com/search?q=status/1", None),
        ("https://x.com/i/status/notanumber", None),
    ],
)
def test_post_urls(url: str, expected: tuple[str | None, str] | None) -> None:
    assert parse_post_url(url) == expected


@pytest.mark.parametrize(
    ("notice", "status"),
    [
        ("This Post is from a suspended account. Learn more", "account_suspended"),
        ("This Post was deleted by the Post author. Learn more", "removed"),
        ("This Post is unavailable. Learn more", "removed"),
        ("This Post violated the X Rules. Learn more", "removed"),
        (
            "This Post from @x has been withheld in Germany in response to a legal demand.",
            "geo_blocked",
        ),
        (
            "You're unable to view this Post because this account owner limits who can view "
            "their Posts. Learn more",
            "account_private",
        ),
        ("Age-restricted adult content. This content might not be appropriate", "age_restricted"),
        ("Suspended", "account_suspended"),  # GraphQL's TweetUnavailable reasons
        ("NsfwLoggedOut", "age_restricted"),
        ("Protected", "account_private"),
        ("Something nobody has seen before", "unknown"),
        (None, "unknown"),
    ],
)
def test_notices_map_to_states(notice: str | None, status: str) -> None:
    assert status_for_notice(notice) == status


def test_snowflake_times_agree() -> None:
    for post in POSTS.values():
        assert snowflake_time(post.id) == post.created == parsed_snowflake_time(post.id)
    assert parsed_snowflake_time("20") is None  # 2006: before snowflakes


def test_listing_discovery_maps_edits_to_their_first_id() -> None:
    html = (
        '<article data-testid="tweet"><a href="/a/status/3">x</a>'
        '<div data-testid="quoteTweet"><a href="/b/status/1">q</a></div></article>'
        '<article data-testid="tweet"><a href="/a/status/2">y</a></article>'
        '<a href="/c/status/9">outside any article</a>'
    )
    timeline = json.dumps(
        {"entries": [{"rest_id": "3", "edit_control": {"initial_tweet_id": "1"}}]}
    ).encode()
    assert discover_posts(html, [timeline, b"not json"]) == [
        ("a", "3", "1"),
        ("b", "1", "1"),
        ("a", "2", "2"),
    ]
    variants = [
        {"content_type": "application/x-mpegURL", "url": "m3u8"},
        {"bitrate": 256000, "content_type": "video/mp4", "url": "low"},
        {"bitrate": 832000, "content_type": "video/mp4", "url": "high"},
    ]
    assert best_mp4(variants)["url"] == "high"


def test_settings() -> None:
    spec = get_source("x")
    assert spec.prepare == "records.posts.watch:prepare_x"
    assert spec.records == "records.posts.parse:parse_run"
    settings = settings_for_run(
        spec,
        {"hashtags": ["#btw25"]},
        [
            "account=@wahlinfo_de",
            "account=https://x.com/kreativkampagne",
            "url=https://twitter.com/a/status/1",
            "searches=Briefwahl 2025",
        ],
    )
    assert isinstance(settings, XSettings)
    assert settings.accounts == ["wahlinfo_de", "kreativkampagne"]
    assert settings.hashtags == ["btw25"] and settings.searches == ["Briefwahl 2025"]
    assert settings.uses_browser(False)
    assert settings.scrapy_settings()["BROWSER_LOCALE"] == "de-DE"
    for bad in (["account=@this_handle_is_too_long"], ["url=https://x.com/a"], ["country=de"]):
        with pytest.raises(Exception, match=r"invalid|not the URL|pattern"):
            settings_for_run(spec, {}, bad)
    with pytest.raises(Exception, match="credentials"):
        settings_for_run(spec, {}, ["guest_bearer=abc"])
    with pytest.raises(InputError, match="nothing to capture"):
        settings_for_run(spec, {}, []).spider_arguments()


# -- the parser on archived snapshots (no crawl) ----------------------------------------------
def _parsed(evidence: Any, block: dict[str, Any], **data: Any) -> Any:
    """Archive a snapshot holding ``data`` (artifact name -> JSON) and parse it."""
    from evidence_store.archive import archive
    from records.posts.parse import PostCapture
    from records.posts.platforms.x import parse
    from schemas import Capture, CaptureArtifact

    artifacts = [
        CaptureArtifact(
            role="post-data",
            name=name.replace("_", "-") + ".json",
            media_type="application/json",
            data=json.dumps(value).encode(),
        )
        for name, value in data.items()
    ]
    artifacts.append(CaptureArtifact(role="dom", name="dom.html", data=b"<html></html>"))
    post = {"platform": "x", "kind": "post", "base_url": "https://x.com", "country": "DE"}
    post |= block
    snapshot = archive(
        evidence,
        Capture(
            collection="x", source_url=post.get("url"), metadata={"post": post}, artifacts=artifacts
        ),
    )
    manifest = parse_manifest(evidence.objects.get(snapshot.id))
    return parse(PostCapture(evidence, snapshot.id, manifest, post))


def test_the_parser_decides_states_from_xs_data(evidence: Any) -> None:
    post = POSTS["WAHLBETRUG"]
    tweet = fixture_content.syndication(post, 1, "https://x.com", set())
    graphql = {"data": fixture_content.gql_tweet(post, 1, "https://x.com")}
    block = {"post_id": post.id, "handle": post.handle, "syndication": {"status": 200}}
    record = _parsed(evidence, block, tweet_result=tweet, tweet_result_by_rest_id=graphql)
    assert record.status == "available" and record.text == post.text
    assert record.counts.views == 4000 and record.author.followers == 9120
    assert record.labels.paid_partnership is False  # a DOM was captured: no label on it
    # The widget has the post, X's client says "withheld in DE" (the capture's country).
    graphql["data"]["tweetResult"]["result"]["legacy"]["withheld_in_countries"] = ["DE", "FR"]
    record = _parsed(evidence, block, tweet_result=tweet, tweet_result_by_rest_id=graphql)
    assert record.status == "geo_blocked" and record.text == post.text
    assert record.extra["withheld_in_countries"] == ["DE", "FR"]
    # ... or tells a logged-out reader the post is behind an age gate.
    gate = {
        "data": {
            "tweetResult": {"result": {"__typename": "TweetUnavailable", "reason": "NsfwLoggedOut"}}
        }
    }
    record = _parsed(evidence, block, tweet_result=tweet, tweet_result_by_rest_id=gate)
    assert record.status == "age_restricted" and "NsfwLoggedOut" in record.status_detail
    # Only GraphQL answered, and it says the account is suspended.
    gone = {
        "data": {
            "tweetResult": {"result": {"__typename": "TweetUnavailable", "reason": "Suspended"}}
        }
    }
    record = _parsed(
        evidence, block | {"syndication": {"status": 500}}, tweet_result_by_rest_id=gone
    )
    assert record.status == "account_suspended"
    # The widget answered 404: the post does not exist (any more).
    record = _parsed(evidence, block | {"syndication": {"status": 404}}, tweet_result={})
    assert record.status == "removed" and "404" in record.status_detail
    # An error answer holds nothing of the post: nothing to parse.
    error = {"error": "Invalid token"}
    assert _parsed(evidence, block | {"syndication": {"status": 400}}, tweet_result=error) is None


# -- end to end --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crawled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Two runs of the source over the fixture's three accounts, a hashtag and a search:
    day 1, then day 2 with every watched post due again (recapture_hours 0)."""
    if shutil.which("ffprobe") is None:
        pytest.fail("ffmpeg (ffprobe) is not installed: make setup installs it")
    root = tmp_path_factory.mktemp("x")
    with XSite() as site:
        configured = {
            "base_url": site.base_url,
            "syndication_url": site.base_url,
            "api_url": site.base_url,
            "graphql_query_id": "2ICDjqPd81tulZcYrtpTuQ",
            "accounts": ["@wahlinfo_de", "@kreativkampagne", "@staatsfunk_intl"],
            "hashtags": ["btw25"],
            "searches": ["Briefwahl"],
            "recapture_hours": 0,
            "backoff": 0.5,
        }
        days = []
        for day in (1, 2):
            site.day = day
            site.reset_hits()
            # Day 1 also asks for one post by a URL on another host, one that never existed.
            arguments = (
                [f"url=https://twitter.com/wahlinfo_de/status/{MISSING_ID}"] if day == 1 else []
            )
            result = run_crawl(root, configured, arguments)
            days.append(
                {"result": result, "hits": dict(site.hits), "requests": list(site.requests)}
            )
        # Day 2 again, for one post only, whose JSON is refused 429 and not asked again.
        site.rate_limit_again()
        alone = {
            k: v for k, v in configured.items() if k not in ("accounts", "hashtags", "searches")
        }
        limited = run_crawl(
            root,
            alone | {"recapture_hours": 1000, "max_retries": 0},
            [f"url={site.post_url('DANKE')}"],
        )
        settings = load_settings(
            data_dir=root / "data", db_url=f"sqlite:///{root / 'index.sqlite'}"
        )
        yield {
            "root": root,
            "settings": settings,
            "days": days,
            "limited": limited,
            "base": site.base_url,
            "guest_tokens": list(site.guest_tokens),
        }


def _outcomes(run: dict[str, Any], base: str) -> dict[str, dict[str, Any]]:
    return {
        o["url"].removeprefix(base): o for o in run["result"]["outcomes"] if o["mode"] != "robots"
    }


def _manifest(crawled: dict[str, Any], snapshot: str) -> Any:
    evidence = open_evidence(crawled["settings"])
    return evidence, parse_manifest(evidence.objects.get(snapshot))


def _artifact(evidence: Any, manifest: Any, role: str, name: str | None = None) -> bytes:
    entry = next(
        a for a in manifest.artifacts if a.role == role and (name is None or a.name == name)
    )
    return evidence.objects.get(entry.sha256)


def _path(key: str) -> str:
    post = POSTS[key]
    return f"/{post.handle}/status/{post.id}"


def _posts(crawled: dict[str, Any]) -> dict[str, dict[str, Any]]:
    evidence = open_evidence(crawled["settings"])
    with evidence.index.session() as session:
        found = {}
        for post in session.scalars(select(Post)):
            versions = session.scalars(
                select(PostVersion)
                .where(PostVersion.post_pk == post.id)
                .order_by(PostVersion.number)
            ).all()
            counts = session.scalars(
                select(PostCount)
                .where(PostCount.post_pk == post.id)
                .order_by(PostCount.captured_at)
            ).all()
            found[post.post_id] = {
                "row": post,
                "versions": [(v.status, v.fields, v.snapshot_id) for v in versions],
                "counts": [
                    (c.likes, c.comments, c.views, c.reposts, c.quotes, c.saves) for c in counts
                ],
            }
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium is not installed")
def test_day_one_listings_discover_and_capture_every_post(crawled: dict[str, Any]) -> None:
    base = crawled["base"]
    run = crawled["days"][0]
    outcomes = _outcomes(run, base)
    for handle in ("wahlinfo_de", "kreativkampagne", "staatsfunk_intl"):
        assert outcomes[f"/{handle}"]["outcome"] == "archived"
    for key in ("WAHLAUFRUF", "STIMMZETTEL", "PARTNERSCHAFT", "WAHLBETRUG", "SENDUNG"):
        assert outcomes[_path(key)]["outcome"] == "archived" and outcomes[_path(key)]["snapshot"]
    # X shows a logged-out browser a login wall for hashtags and searches: outcomes, not
    # snapshots; after the first, the other is not even asked for.
    walls = [o for o in run["result"]["outcomes"] if o["outcome"] == "login-wall"]
    assert len(walls) == 2 and not any(o["snapshot"] for o in walls)
    assert "not asked" in next(o for o in walls if "/search" in o["url"])["error"]
    assert sum(1 for r in run["requests"] if r.path == "/search") == 0
    assert run["result"]["status"] == "partial"
    stats = run["result"]["records_stats"]["posts"]
    assert stats["new"] == 6 and stats["new_versions"] == 0
    # The listing snapshot says what it showed and what was new.
    _, listing = _manifest(crawled, outcomes["/wahlinfo_de"]["snapshot"])
    block = listing.capture["post"]
    assert block["kind"] == "listing" and block["watched_by"] == "account:@wahlinfo_de"
    assert set(block["new"]) == {POSTS["WAHLAUFRUF"].id, POSTS["STIMMZETTEL"].id}
    # The post asked for by its twitter.com URL was taken onto base_url.
    missing = outcomes[f"/wahlinfo_de/status/{MISSING_ID}"]
    assert missing["outcome"] == "archived"
    _, shown = _manifest(crawled, missing["snapshot"])
    assert shown.capture["post"]["asked_url"].startswith("https://twitter.com/")


@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium is not installed")
def test_a_post_is_archived_with_its_json_and_video(crawled: dict[str, Any]) -> None:
    base = crawled["base"]
    snapshot = _outcomes(crawled["days"][0], base)[_path("WAHLAUFRUF")]["snapshot"]
    evidence, manifest = _manifest(crawled, snapshot)
    roles = {(a.role, a.name) for a in manifest.artifacts}
    assert {
        ("warc", "capture.warc.gz"),
        ("screenshot", "screenshot.png"),
        ("pdf", "page.pdf"),
    } <= roles
    assert {("dom", "dom.html"), ("post-data", "tweet-result.json")} <= roles
    assert ("post-data", "tweet-result-by-rest-id.json") in roles
    # The syndication JSON as the server sent it, byte for byte.
    post = POSTS["WAHLAUFRUF"]
    features = set(SYNDICATION_FEATURES.split(";"))
    sent = json.dumps(fixture_content.syndication(post, 1, base, features), ensure_ascii=False)
    assert _artifact(evidence, manifest, "post-data", "tweet-result.json") == sent.encode()
    # The largest MP4 variant, whose digest is the fixture file's; ffprobe's facts.
    video = _artifact(evidence, manifest, "media", "video-01.mp4")
    assert (
        hashlib.sha256(video).hexdigest()
        == hashlib.sha256(media_bytes("wahlaufruf-320x240.mp4")).hexdigest()
    )
    facts = {m["artifact"]: m for m in manifest.capture["post"]["media"]}
    probe = facts["video-01.mp4"]["ffprobe"]
    assert (probe["width"], probe["height"], probe["codec"]) == (320, 240, "h264")
    assert probe["duration"] == pytest.approx(2.0, abs=0.1)
    assert facts["video-01.mp4"]["bitrate"] == 832000
    assert facts["cover-01.jpeg"]["kind"] == "cover"
    # The syndication request carried the widget's token (redacted in the archive as every
    # `token` parameter is: it is computed from the id, so nothing is lost).
    asked = [r for r in crawled["days"][0]["requests"] if r.path == "/tweet-result"]
    assert any(r.query.get("token") == [syndication_token(post.id)] for r in asked)
    # The browser presented itself as a German user would be seen.
    assert manifest.capture["browser"]["locale"] == "de-DE"
    assert manifest.capture["browser"]["timezone"] == "Europe/Berlin"


@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium is not installed")
def test_normalised_fields_and_labels(crawled: dict[str, Any]) -> None:
    posts = _posts(crawled)
    first = {
        key: posts[POSTS[key].id]["versions"][0][1] for key in POSTS if POSTS[key].first_day == 1
    }
    wahl = first["WAHLAUFRUF"]
    assert wahl["author"] == {
        "id": "1457303180270776320",
        "handle": "wahlinfo_de",
        "name": "Wahlinfo Deutschland",
        "verified": True,
        "private": False,
        "followers": 48210,
    }
    assert wahl["created_at"].startswith("2025-02-19T17:30:00")
    assert wahl["text"] == POSTS["WAHLAUFRUF"].text
    assert wahl["hashtags"] == ["Bundestagswahl", "btw25"]
    assert wahl["mentions"] == ["Bundeswahlleiter"] and wahl["language"] == "de"
    assert wahl["labels"]["community_note"] == fixture_content.NOTE
    assert wahl["labels"]["sensitive_interstitial"] is False
    video = next(m for m in wahl["media"] if m["kind"] == "video")
    assert video["artifact"] == "video-01.mp4" and video["width"] == 320
    assert video["sha256"] == hashlib.sha256(media_bytes("wahlaufruf-320x240.mp4")).hexdigest()
    assert video["duration"] == pytest.approx(2.0, abs=0.1)
    assert first["STIMMZETTEL"]["labels"]["sensitive_interstitial"] is True
    assert first["STIMMZETTEL"]["reply_to"] == POSTS["WAHLAUFRUF"].id
    assert [m["kind"] for m in first["STIMMZETTEL"]["media"]] == ["image"]
    partner = first["PARTNERSCHAFT"]
    assert partner["labels"]["paid_partnership"] is True
    assert partner["labels"]["content_disclosure"] == "Paid partnership"
    assert partner["quoted"] == POSTS["WAHLAUFRUF"].id
    assert first["SENDUNG"]["labels"]["state_affiliated"] == "Russia state-affiliated media"
    assert first["SENDUNG"]["language"] == "en"
    # Counts from syndication and guest GraphQL: likes, replies, views, reposts, quotes, saves.
    assert posts[POSTS["WAHLAUFRUF"].id]["counts"][0] == (120, 8, 5400, 30, 4, 6)
    missing = posts[MISSING_ID]["row"]
    assert missing.status == "removed"


@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium is not installed")
def test_day_two_versions_counts_and_removals(crawled: dict[str, Any]) -> None:
    base = crawled["base"]
    day2 = crawled["days"][1]
    outcomes = _outcomes(day2, base)
    posts = _posts(crawled)
    # Every watched post was captured again (recapture_hours 0).
    for key in ("WAHLAUFRUF", "STIMMZETTEL", "PARTNERSCHAFT", "WAHLBETRUG", "SENDUNG"):
        assert outcomes[_path(key)]["outcome"] == "archived"
    # The edit: a new version of the post (keyed by its first id) with the new text.
    wahl = posts[POSTS["WAHLAUFRUF"].id]
    assert [v[0] for v in wahl["versions"]] == ["available", "available"]
    edited = wahl["versions"][1][1]
    assert edited["text"] == POSTS["WAHLAUFRUF_EDIT"].text
    assert edited["extra"]["edit"]["ids"] == [POSTS["WAHLAUFRUF"].id, POSTS["WAHLAUFRUF_EDIT"].id]
    assert edited["created_at"] == wahl["versions"][0][1]["created_at"]
    assert [c[0] for c in wahl["counts"]] == [120, 480]
    assert POSTS["WAHLAUFRUF_EDIT"].id not in posts  # the latest version is not a post of its own
    # The account page lists the latest version; the timeline JSON maps it to the post known.
    assert _path("WAHLAUFRUF_EDIT") not in outcomes
    evidence, snap = _manifest(crawled, outcomes[_path("WAHLAUFRUF")]["snapshot"])
    assert any(a.name == "tweet-result-latest.json" for a in snap.artifacts)
    # Counts moved, nothing else: no new version, one more point in the series.
    partner = posts[POSTS["PARTNERSCHAFT"].id]
    assert len(partner["versions"]) == 1 and [c[0] for c in partner["counts"]] == [40, 95]
    # Deleted, suspended, withheld: each a state, proven by the snapshot of the notice, next
    # to the last snapshot that showed the post.
    for key, status, words in (
        ("STIMMZETTEL", "removed", "This Post was deleted by the Post author"),
        ("SENDUNG", "account_suspended", "This Post is from a suspended account"),
        ("WAHLBETRUG", "geo_blocked", "has been withheld in Germany"),
    ):
        post = posts[POSTS[key].id]
        assert post["row"].status == status, key
        (was, shown, _), (now, gone, proof) = post["versions"]
        assert (was, now) == ("available", status)
        assert words in gone["status_detail"]
        assert gone["text"] == shown["text"]  # what it was stays; the version says it is gone
        assert proof == outcomes[_path(key)]["snapshot"]
        _, manifest = _manifest(crawled, proof)
        dom = _artifact(evidence, manifest, "dom").decode()
        assert words in dom
        assert len(post["counts"]) == 1  # a gone post has no counts
    # The suspended account's page, archived: it says so.
    _, listing = _manifest(crawled, outcomes["/staatsfunk_intl"]["snapshot"])
    assert "Account suspended" in _artifact(evidence, listing, "dom").decode()
    assert listing.capture["post"]["discovered"] == []
    # A new post on day 2, whose JSON came after a 429 waited out.
    danke = outcomes[_path("DANKE")]
    assert danke["outcome"] == "archived"
    _, manifest = _manifest(crawled, danke["snapshot"])
    attempts = manifest.capture["post"]["syndication"]["attempts"]
    assert attempts[0]["status"] == 429 and attempts[0]["waited_s"] == pytest.approx(1.0)
    assert posts[POSTS["DANKE"].id]["row"].watched_by == "account:@kreativkampagne"
    stats = day2["result"]["records_stats"]["posts"]
    assert stats["status_changes"] == 3 and stats["new"] == 1
    # Known posts are not new again: the day-2 listings found one new post only.
    _, listing = _manifest(crawled, outcomes["/kreativkampagne"]["snapshot"])
    assert listing.capture["post"]["new"] == [POSTS["DANKE"].id]
    # What the CLI shows of the edited post.
    env = {
        "EVIDENCE_DATA_DIR": str(crawled["settings"].data_path),
        "EVIDENCE_DB_URL": crawled["settings"].database_url,
    }
    shown = json.loads(
        run_cli(
            "posts", "show", f"x:{POSTS['WAHLAUFRUF'].id}", "--json", env=env, check=True
        ).stdout
    )
    assert len(shown["versions"]) == 2 and "text" in shown["versions"][1]["changed"]


@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium is not installed")
def test_a_rate_limit_is_an_outcome_not_a_snapshot(crawled: dict[str, Any]) -> None:
    result = crawled["limited"]
    [outcome] = [o for o in result["outcomes"] if o["mode"] != "robots"]
    assert outcome["outcome"] == "rate-limited" and outcome["snapshot"] is None
    assert "429" in outcome["error"] and result["status"] == "failed"


def _plain(data: bytes) -> bytes:
    if data[:2] != b"\x1f\x8b":
        return data
    out, rest = b"", data
    while rest:  # a WARC is one gzip member per record
        inflater = zlib.decompressobj(31)
        out += inflater.decompress(rest)
        rest = inflater.unused_data
    return out


@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Chromium is not installed")
def test_no_guest_token_or_bearer_in_any_stored_byte(crawled: dict[str, Any]) -> None:
    tokens = crawled["guest_tokens"]
    assert tokens  # the guest GraphQL was used
    secrets = [t.encode() for t in tokens] + [GUEST_BEARER.encode(), GUEST_BEARER[-30:].encode()]
    checked = 0
    for path in (crawled["root"] / "data").rglob("*"):
        if not path.is_file():
            continue
        data = _plain(path.read_bytes())
        checked += 1
        for secret in secrets:
            assert secret not in data, f"{secret[:12]!r}… in {path}"
    assert checked > 50
    # The guest token header is there, as a name with its value redacted.
    evidence = open_evidence(crawled["settings"])
    snapshot = _outcomes(crawled["days"][0], crawled["base"])[_path("SENDUNG")]["snapshot"]
    manifest = parse_manifest(evidence.objects.get(snapshot))
    warc = _plain(_artifact(evidence, manifest, "warc"))
    assert b"x-guest-token: redacted" in warc.lower()
