"""`x`: posts on X (formerly Twitter), watched, captured with their data and media.

A run, in this order (docs/posts-x.md):

1. **Listings.** Each watched account's page (``{base_url}/<handle>``) is captured in the
   browser as a snapshot (its ``post`` block says ``kind: listing``); the posts it shows are
   read from the rendered DOM (links to ``/<handle>/status/<id>`` in its articles) and from
   the timeline JSON the page loaded (``UserTweets``: an edited post's ``initial_tweet_id``).
   Hashtag and search pages are captured the same way, but X shows a logged-out browser a
   login wall there: that is the outcome ``login-wall``, not a snapshot, and the run does not
   ask for the remaining hashtag and search pages (one login wall is enough to know).
2. **Posts.** Every post a listing shows that the archive does not know yet (``known``, filled
   by the prepare step; at most ``max_new_per_listing`` per listing), every URL in ``urls``
   and every watched post due again (``recapture``, filled by the prepare step) is captured:
   the post page in the browser (WARC, screenshot, PDF, DOM), then with plain HTTP

   - the syndication JSON ``{syndication_url}/tweet-result?id=<id>&token=<token>&lang=en``,
     the embed widget's request (``syndication_token`` computes its token), kept as the
     artifact ``post-data/tweet-result.json`` as received; when it says that a newer version
     of an edited post exists, that version's JSON too (``tweet-result-latest.json``);
   - with ``guest_bearer`` set, the guest GraphQL ``TweetResultByRestId`` (views, reposts,
     quotes, bookmarks, ``TweetUnavailable`` reasons): ``tweet-result-by-rest-id.json``;
   - the media (``download_media``): the largest MP4 variant of each video or GIF, its
     poster, each photo; each its own artifact (role ``media``) with its digest and what
     ffprobe read (``crawlers.media``).

   All these exchanges join the page's WARC. The ``post`` block of the capture metadata
   (``kind: post``) names the post, who watched it, the data artifacts, the media facts and,
   for a post X no longer shows, the notice (tombstone text, or the 404). The records step
   (``records.posts.parse:parse_run`` → ``records.posts.platforms.x``) reads them.

A login wall on a post page, and a syndication answer still 429 after the retries, are
outcomes (``login-wall``, ``rate-limited``): nothing of such a capture is archived as the post.
The guest token never reaches the archive (scrubbed from headers and bodies); the syndication
``token`` is no secret (it is computed from the id) but is redacted like every parameter of
that name.

Settings: see ``XSettings``.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import scrapy
from pydantic import Field, SecretStr, field_validator
from scrapy.crawler import Crawler
from scrapy.http import Response
from scrapy.selector import Selector
from twisted.python.failure import Failure

from crawlers.items import PageCapture, Resource
from crawlers.media import MediaFile, fetch_media, probe_async
from crawlers.spiders.adlib import ApiClient, Fetched, Verdict, json_of, retry_after, scrub_capture
from crawlers.spiders.pages import REQUESTED, PagesSpider
from crawlers.urls import AddressPolicy, url_problem
from crawlers.x_token import syndication_token
from evidence_store.errors import InputError
from schemas import SourceSettings, SourceSpec, utc_now

SOURCE_NAME = "x"
PLATFORM = "x"
POST_KEY = "post"  # capture metadata: what records.posts.parse reads
DATA_ROLE = "post-data"  # artifact role of the platform's own JSON
SYNDICATION_ARTIFACT = "tweet-result.json"
LATEST_ARTIFACT = "tweet-result-latest.json"
GRAPHQL_ARTIFACT = "tweet-result-by-rest-id.json"
LOGIN_WALL = "login-wall"
RATE_LIMITED = "rate-limited"
SERVER_ERROR = "server-error"  # the syndication endpoint kept failing (5xx)
LISTING_META = "evidence_x_listing"
POST_META = "evidence_x_post"
TOKEN_ENV = "EVIDENCE_SOURCES__X__GUEST_BEARER"
HANDLE = re.compile(r"^[A-Za-z0-9_]{1,15}$")
# /<handle>/status/<id>, also /statuses/, the old /#!/ form and what follows (photo/1, …)
_STATUS_PATH = re.compile(r"^/(?:#!/)?([A-Za-z0-9_]{1,15})/status(?:es)?/(\d{1,20})(?:/|$)")
_WEB_STATUS_PATH = re.compile(r"^/i/(?:web/)?status/(\d{1,20})(?:/|$)")
_LOGIN_PATHS = ("/i/flow/login", "/login", "/i/flow/signup")
# The embed widget's features (vercel/react-tweet): without the birdwatch switch the answer
# carries no community note, without the edit switches no edit history.
SYNDICATION_FEATURES = ";".join(
    (
        "tfw_timeline_list:",
        "tfw_follower_count_sunset:true",
        "tfw_tweet_edit_backend:on",
        "tfw_refsrc_session:on",
        "tfw_fosnr_soft_interventions_enabled:on",
        "tfw_show_birdwatch_pivots_enabled:on",
        "tfw_show_business_verified_badge:on",
        "tfw_duplicate_scribes_to_settings:on",
        "tfw_use_profile_image_shape_enabled:on",
        "tfw_show_blue_verified_badge:on",
        "tfw_legacy_timeline_sunset:true",
        "tfw_show_gov_verified_badge:on",
        "tfw_show_business_affiliate_badge:on",
        "tfw_tweet_edit_frontend:on",
    )
)
# The web client's feature switches for TweetResultByRestId (a request without them is refused).
GRAPHQL_FEATURES = {
    "creator_subscriptions_tweet_preview_api_enabled": True,
    "communities_web_enable_tweet_community_results_fetch": True,
    "c9s_tweet_anatomy_moderator_badge_enabled": True,
    "articles_preview_enabled": True,
    "tweetypie_unmention_optimization_enabled": True,
    "responsive_web_edit_tweet_api_enabled": True,
    "graphql_is_translatable_rweb_tweet_is_translatable_enabled": True,
    "view_counts_everywhere_api_enabled": True,
    "longform_notetweets_consumption_enabled": True,
    "responsive_web_twitter_article_tweet_consumption_enabled": True,
    "tweet_awards_web_tipping_enabled": False,
    "creator_subscriptions_quote_tweet_preview_enabled": False,
    "freedom_of_speech_not_reach_fetch_enabled": True,
    "standardized_nudges_misinfo": True,
    "tweet_with_visibility_results_prefer_gql_limited_actions_policy_enabled": True,
    "rweb_video_timestamps_enabled": True,
    "longform_notetweets_rich_text_read_enabled": True,
    "longform_notetweets_inline_media_enabled": True,
    "responsive_web_graphql_exclude_directive_enabled": True,
    "verified_phone_label_enabled": False,
    "responsive_web_graphql_skip_user_profile_image_extensions_enabled": False,
    "responsive_web_graphql_timeline_navigation_enabled": True,
    "responsive_web_enhance_cards_enabled": False,
}


# -- URLs ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PostTarget:
    """A post to capture: its id, its author's handle (if known) and why it is captured."""

    post_id: str
    handle: str | None
    watched_by: str
    asked_url: str | None = None

    def url(self, base: str) -> str:
        """The post's page on ``base``."""
        if self.handle:
            return f"{base}/{self.handle}/status/{self.post_id}"
        return f"{base}/i/web/status/{self.post_id}"


def parse_post_url(url: str) -> tuple[str | None, str] | None:
    """(handle or None, post id) of a post URL on any host (x.com, twitter.com, a mirror)."""
    parts = urlsplit(url.strip())
    path = parts.path
    if parts.fragment.startswith("!/"):  # https://twitter.com/#!/user/status/1
        path = "/" + parts.fragment[2:]
    match = _STATUS_PATH.match(path)
    if match and match.group(1).lower() not in ("i", "intent", "search", "hashtag"):
        return match.group(1), match.group(2)
    web = _WEB_STATUS_PATH.match(path)
    if web:
        return None, web.group(1)
    return None


def discover_posts(html: str, bodies: Iterable[bytes] = ()) -> list[tuple[str, str, str]]:
    """(handle, id, initial id) of each post a listing shows, in page order.

    Ids come from the links of the rendered articles; the timeline JSON the page loaded maps
    an edited post's id to the id it started as (``edit_control.initial_tweet_id``), so that
    the latest version of a post already watched is not taken for a new post.
    """
    initial: dict[str, str] = {}
    for body in bodies:
        _initial_ids(json_of(body), initial)
    found: dict[str, tuple[str, str, str]] = {}
    selector = Selector(text=html or "<html></html>")
    hrefs = selector.css("article a[href*='/status/']::attr(href)").getall()
    for href in hrefs:
        parsed = parse_post_url(href if "://" in href else f"https://x.invalid{href}")
        if parsed is None or parsed[0] is None or parsed[1] in found:
            continue
        handle, post_id = parsed
        found[post_id] = (handle, post_id, initial.get(post_id, post_id))
    return list(found.values())


def _initial_ids(data: Any, into: dict[str, str], depth: int = 0) -> None:
    if depth > 40:
        return
    if isinstance(data, dict):
        edit = data.get("edit_control")
        rest_id = data.get("rest_id")
        if isinstance(edit, dict) and isinstance(rest_id, str):
            first = edit.get("initial_tweet_id")
            if first is None:
                ids = (edit.get("edit_tweet_ids") or [None])[:1]
                first = ids[0]
            if isinstance(first, str) and first.isdigit():
                into[rest_id] = first
        for value in data.values():
            _initial_ids(value, into, depth + 1)
    elif isinstance(data, list):
        for value in data:
            _initial_ids(value, into, depth + 1)


def best_mp4(variants: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    """The MP4 variant of a video with the highest bitrate (HLS playlists left aside)."""
    mp4 = [
        v
        for v in variants
        if isinstance(v, dict) and v.get("content_type") == "video/mp4" and v.get("url")
    ]
    return max(mp4, key=lambda v: int(v.get("bitrate") or 0), default=None)


# -- answers ---------------------------------------------------------------------------------
def classify_syndication(response: Response) -> Verdict:
    """The syndication endpoint: a post, a tombstone or a 404 are answers to keep; a rate
    limit or a server error is asked again; anything else is an error (archived as such)."""
    status = response.status
    if status == 200 or status == 404:
        return Verdict("ok")
    if status == 429 or status >= 500:
        return Verdict("retry", f"HTTP {status}", retry_after(response.headers.get("Retry-After")))
    return Verdict("error", f"HTTP {status}")


def classify_graphql(response: Response) -> Verdict:
    """The guest GraphQL: ok, a rate limit to wait out, or a refused (guest) token."""
    status = response.status
    if status == 200:
        return Verdict("ok")
    if status == 429 or status >= 500:
        reset = (response.headers.get("x-rate-limit-reset") or b"").decode("latin-1")
        hint = retry_after(response.headers.get("Retry-After"))
        if hint is None and reset.isdigit():
            hint = max(0.0, int(reset) - time.time())
        return Verdict("retry", f"HTTP {status}", hint)
    if status in (401, 403):
        return Verdict("auth", f"HTTP {status}")
    return Verdict("error", f"HTTP {status}")


# -- the spider ------------------------------------------------------------------------------
class XSpider(PagesSpider):
    """Listings and posts in the browser; each post's data and media with plain HTTP."""

    name = SOURCE_NAME

    def __init__(
        self,
        base_url: str = "https://x.com",
        syndication_url: str = "https://cdn.syndication.twimg.com",
        api_url: str = "https://api.x.com",
        guest_bearer: SecretStr | str | None = None,
        graphql_query_id: str = "2ICDjqPd81tulZcYrtpTuQ",
        accounts: Iterable[str] = (),
        hashtags: Iterable[str] = (),
        searches: Iterable[str] = (),
        urls: Iterable[str] = (),
        recapture: Iterable[str] = (),
        known: Iterable[str] = (),
        max_new_per_listing: int = 20,
        download_media: bool = True,
        max_media_bytes: int = 200 * 1024 * 1024,
        country: str = "DE",
        obey_robots: Any = False,
        backoff: float = 30.0,
        max_retries: int = 3,
        max_wait: float = 300.0,
        **kwargs: Any,
    ) -> None:
        scrapy.Spider.__init__(self, **kwargs)  # not PagesSpider's: no URL list to read
        if isinstance(guest_bearer, SecretStr):
            guest_bearer = guest_bearer.get_secret_value()
        self.base_url = base_url.rstrip("/")
        self.syndication_url = syndication_url.rstrip("/")
        self.api_url = api_url.rstrip("/")
        self.guest_bearer = guest_bearer or None
        self.graphql_query_id = graphql_query_id
        self.accounts = [a.lstrip("@") for a in accounts]
        self.hashtags = [h.lstrip("#") for h in hashtags]
        self.searches = list(searches)
        self.urls = list(urls)
        self.recapture = list(recapture)
        self.known = set(known)
        self.max_new = int(max_new_per_listing)
        self.download_media = str(download_media).lower() not in ("0", "false", "no")
        self.max_media_bytes = int(max_media_bytes)
        self.country = country
        self.mode = "browser"
        self.obey_robots = str(obey_robots).lower() not in ("0", "false", "no")
        self.robots_exchanges: list = []
        self.policy = AddressPolicy()
        self.backoff, self.max_retries, self.max_wait = float(backoff), int(max_retries), max_wait
        self.client: ApiClient | None = None
        self.requested: set[str] = set()  # post ids asked for in this run
        self.discovered: asyncio.Queue[PostTarget | None] = asyncio.Queue()
        self.open_listings = 0
        self.walled: str | None = None  # the login wall a hashtag or search page showed
        self.gate_done = asyncio.Event()
        self.guest_token: str | None = None
        self.guest_tokens: list[str] = []  # every guest token of the run, to scrub
        self.guest_lock = asyncio.Lock()  # one activation at a time, shared by the captures

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> XSpider:
        spider = super(PagesSpider, cls).from_crawler(crawler, *args, **kwargs)
        spider.policy = AddressPolicy.from_settings(crawler.settings)
        from crawlers.browser import BrowserCapture
        from crawlers.chromium import PLAYWRIGHT_HANDLER

        if crawler.settings.getdict("DOWNLOAD_HANDLERS").get("http") != PLAYWRIGHT_HANDLER:
            raise ValueError("the x source needs the browser: run it with `evidence crawl x`")
        spider.browser = BrowserCapture(crawler.settings)
        spider.client = ApiClient(
            spider, backoff=spider.backoff, max_wait=spider.max_wait, max_retries=spider.max_retries
        )
        return spider

    @property
    def secrets(self) -> dict[str, str]:
        found = {f"guest_token_{n}": t for n, t in enumerate(self.guest_tokens)}
        if self.guest_bearer:
            found["guest_bearer"] = self.guest_bearer
        return found

    # -- what to capture -----------------------------------------------------------------
    def _listings(
        self,
    ) -> tuple[list[tuple[str, dict[str, Any]]], list[tuple[str, dict[str, Any]]]]:
        """(account pages, pages behind X's login: hashtags and searches), as (URL, facts)."""
        accounts = [
            (f"{self.base_url}/{h}", {"watched_by": f"account:@{h}", "listing": "account"})
            for h in self.accounts
        ]
        gated = [
            (
                f"{self.base_url}/hashtag/{quote(t, safe='')}?src=hashtag_click&f=live",
                {"watched_by": f"hashtag:{t}", "listing": "hashtag"},
            )
            for t in self.hashtags
        ] + [
            (
                f"{self.base_url}/search?{urlencode({'q': q, 'src': 'typed_query', 'f': 'live'})}",
                {"watched_by": f"search:{q}", "listing": "search"},
            )
            for q in self.searches
        ]
        return accounts, gated

    def _asked(self, urls: Iterable[str], watched_by: str) -> Iterable[PostTarget | PageCapture]:
        for url in urls:
            parsed = parse_post_url(url)
            if parsed is None:
                now = utc_now()
                yield PageCapture(
                    requested_url=url,
                    mode="browser",
                    outcome="invalid-url",
                    started_at=now,
                    finished_at=now,
                    error="not the URL of a post on X (…/<handle>/status/<id>)",
                )
                continue
            handle, post_id = parsed
            yield PostTarget(post_id, handle, watched_by, asked_url=url)

    async def start(self) -> AsyncIterator[scrapy.Request | PageCapture]:
        accounts, gated = self._listings()
        self.open_listings = len(accounts) + len(gated)
        for url, facts in accounts:
            async for item in self._listing_request(url, facts):
                yield item
        for target in [*self._asked(self.urls, "url"), *self._asked(self.recapture, "recapture")]:
            if isinstance(target, PageCapture):
                yield target
            else:
                async for item in self._post_request(target):
                    yield item
        # Hashtag and search pages: the first is asked alone; if X shows it a login wall, the
        # others are not asked (each says why), as a person would not try them all either.
        for n, (url, facts) in enumerate(gated):
            if n == 1:
                await self.gate_done.wait()
            if self.walled is not None:
                yield self._walled_outcome(url, facts, requested=False)
                self._listing_done()
                continue
            async for item in self._listing_request(url, facts):
                yield item
        while self.open_listings > 0 or not self.discovered.empty():
            target = await self.discovered.get()
            if target is not None:
                async for item in self._post_request(target):
                    yield item

    async def _listing_request(
        self, url: str, facts: dict[str, Any]
    ) -> AsyncIterator[scrapy.Request | PageCapture]:
        refused = url_problem(url, policy=self.policy)
        if refused is not None:
            now = utc_now()
            yield PageCapture(
                requested_url=refused.url,
                mode="browser",
                outcome=refused.outcome,
                started_at=now,
                finished_at=now,
                error=refused.message,
                details={POST_KEY: self._listing_block(facts)},
            )
            self._listing_done(facts)
            return
        request = self.make_browser_request(url, await self.browser.contexts.acquire())
        request.meta[LISTING_META] = facts
        yield request.replace(callback=self.parse_listing, errback=self.failed_listing)

    async def _post_request(
        self, target: PostTarget
    ) -> AsyncIterator[scrapy.Request | PageCapture]:
        if target.post_id in self.requested:
            return
        self.requested.add(target.post_id)
        url = target.url(self.base_url)
        refused = url_problem(url, policy=self.policy)
        if refused is not None:
            now = utc_now()
            yield PageCapture(
                requested_url=refused.url,
                mode="browser",
                outcome=refused.outcome,
                started_at=now,
                finished_at=now,
                error=refused.message,
                details={POST_KEY: self._post_block(target, kind="post-failed")},
            )
            return
        request = self.make_browser_request(url, await self.browser.contexts.acquire())
        request.meta[POST_META] = target
        yield request.replace(callback=self.parse_post, errback=self.failed_post)

    def _listing_done(self, facts: dict[str, Any] | None = None) -> None:
        self.open_listings -= 1
        if facts is not None and facts.get("listing") in ("hashtag", "search"):
            self.gate_done.set()
        self.discovered.put_nowait(None)  # wakes start() to look at open_listings again

    # -- blocks of capture metadata ------------------------------------------------------
    def _listing_block(self, facts: dict[str, Any], **more: Any) -> dict[str, Any]:
        return {"platform": PLATFORM, "kind": "listing", **facts, **more}

    def _post_block(self, target: PostTarget, *, kind: str = "post") -> dict[str, Any]:
        block: dict[str, Any] = {
            "platform": PLATFORM,
            "kind": kind,
            "post_id": target.post_id,
            "handle": target.handle,
            "watched_by": target.watched_by,
            "url": target.url(self.base_url),
            "base_url": self.base_url,
            "country": self.country,
        }
        if target.asked_url and target.asked_url != block["url"]:
            block["asked_url"] = target.asked_url
        return block

    def _walled_outcome(
        self,
        url: str,
        facts: dict[str, Any],
        *,
        requested: bool,
        capture: PageCapture | None = None,
    ) -> PageCapture:
        """A login wall: an outcome with nothing archived (it is not what was asked for)."""
        now = utc_now()
        if requested:
            error = (
                f"X showed a login wall instead of the {facts.get('listing', 'post')} page "
                "(a logged-out browser is sent to the login flow)"
            )
        else:
            error = f"not asked: X showed a login wall for {self.walled} earlier in this run"
        return PageCapture(
            requested_url=url,
            mode="browser",
            outcome=LOGIN_WALL,
            started_at=capture.started_at if capture else now,
            finished_at=now,
            final_url=capture.final_url if capture else None,
            status=capture.status if capture else None,
            error=error,
        )

    @staticmethod
    def _is_login_wall(capture: PageCapture) -> bool:
        final = urlsplit(capture.final_url or "").path
        return capture.outcome == LOGIN_WALL or final.startswith(_LOGIN_PATHS)

    # -- listings ------------------------------------------------------------------------
    async def parse_listing(self, response: Response) -> AsyncIterator[PageCapture]:
        """A listing page: its capture (or the login wall), and its new posts queued."""
        facts = dict(response.meta[LISTING_META])
        try:
            async for capture in super().parse_browser(response):
                if self._is_login_wall(capture):
                    if facts["listing"] in ("hashtag", "search"):
                        self.walled = self.walled or facts["watched_by"]
                    yield self._walled_outcome(
                        capture.requested_url, facts, requested=True, capture=capture
                    )
                    continue
                dom = next((r.data for r in capture.resources if r.role == "dom"), b"")
                bodies = [
                    e.body
                    for e in capture.exchanges
                    if isinstance(e.body, bytes) and "json" in (e.header("Content-Type") or "")
                ]
                found = discover_posts(dom.decode("utf-8", "replace"), bodies)
                new: list[PostTarget] = []
                for handle, post_id, initial in found:
                    if {post_id, initial} & (self.known | self.requested):
                        continue
                    if len(new) < self.max_new and post_id not in {t.post_id for t in new}:
                        new.append(PostTarget(post_id, handle, facts["watched_by"]))
                capture.details[POST_KEY] = self._listing_block(
                    facts,
                    discovered=[post_id for _, post_id, _ in found],
                    new=[t.post_id for t in new],
                )
                yield capture
                for target in new:
                    self.discovered.put_nowait(target)
        finally:
            self._listing_done(facts)

    async def failed_listing(self, failure: Failure) -> AsyncIterator[PageCapture]:
        """A listing page Chromium could not load: what it recorded, labelled."""
        facts = dict(failure.request.meta.get(LISTING_META) or {})  # type: ignore[attr-defined]
        try:
            async for capture in super().failed_browser(failure):
                capture.details[POST_KEY] = self._listing_block(facts, discovered=[], new=[])
                yield capture
        finally:
            self._listing_done(facts)

    # -- posts ---------------------------------------------------------------------------
    async def parse_post(self, response: Response) -> AsyncIterator[PageCapture]:
        """A post page: the browser capture, then its JSON and media, in one snapshot."""
        target: PostTarget = response.meta[POST_META]
        async for capture in super().parse_browser(response):
            if self._is_login_wall(capture):
                yield self._walled_outcome(
                    capture.requested_url, {}, requested=True, capture=capture
                )
                continue
            if capture.outcome != "archived":
                capture.details[POST_KEY] = self._post_block(target, kind="post-failed")
                yield capture
                continue
            yield await self._with_data(capture, target)

    async def failed_post(self, failure: Failure) -> AsyncIterator[PageCapture]:
        """A post page Chromium could not load: what it recorded (not parsed as the post)."""
        target: PostTarget = failure.request.meta[POST_META]  # type: ignore[attr-defined]
        async for capture in super().failed_browser(failure):
            capture.details[POST_KEY] = self._post_block(target, kind="post-failed")
            yield capture

    async def _with_data(self, capture: PageCapture, target: PostTarget) -> PageCapture:
        block = self._post_block(target)
        referer = capture.final_url or target.url(self.base_url)
        fetched, data = await self._syndication(target.post_id)
        capture.exchanges.extend(fetched.exchanges)
        status = fetched.response.status if fetched.response is not None else None
        block["syndication"] = {
            "status": status,
            "outcome": fetched.outcome or fetched.verdict.kind,
            "artifact": SYNDICATION_ARTIFACT if fetched.response is not None else None,
        }
        if fetched.attempts:
            block["syndication"]["attempts"] = fetched.attempts
        if fetched.verdict.kind == "retry":
            # Still refused after every retry: no data, so no post (the page alone would be
            # archived as if it were the capture of the post). The next run asks again.
            return self._refused(capture, status, fetched.verdict.message)
        if fetched.response is not None:
            capture.resources.append(
                Resource(DATA_ROLE, SYNDICATION_ARTIFACT, "application/json", fetched.response.body)
            )
        if fetched.verdict.kind == "error" and fetched.response is None:
            block["syndication"]["error"] = fetched.verdict.message
        tweet = data if isinstance(data, dict) and data.get("__typename") == "Tweet" else None
        if isinstance(data, dict) and data.get("__typename") == "TweetTombstone":
            notice = ((data.get("tombstone") or {}).get("text") or {}).get("text")
            block["unavailable"] = notice or "TweetTombstone"
        elif status == 404:
            block["unavailable"] = "not found: the syndication endpoint answered 404"
        if tweet is not None:
            tweet = await self._latest_version(capture, block, tweet)
        if self.guest_bearer:
            await self._graphql(capture, block, target.post_id)
        if tweet is not None and self.download_media:
            block["media"] = await self._media(capture, tweet, referer)
        capture.details[POST_KEY] = block
        names = scrub_capture(capture, self.secrets)
        if names:
            capture.details["redacted_body"] = names
        return capture

    def _refused(self, capture: PageCapture, status: int | None, message: str) -> PageCapture:
        return PageCapture(
            requested_url=capture.requested_url,
            mode="browser",
            outcome=RATE_LIMITED if status == 429 else SERVER_ERROR,
            started_at=capture.started_at,
            finished_at=utc_now(),
            final_url=capture.final_url,
            status=capture.status,
            error=f"the syndication endpoint kept answering {message} (asked "
            f"{self.max_retries + 1} times): the post is captured again next run",
        )

    def _json_request(
        self, url: str, headers: dict[str, str] | None = None, **kw: Any
    ) -> scrapy.Request:
        sent = {
            "Accept": "application/json, */*;q=0.1",
            "Accept-Language": "de-DE,de;q=0.9,en;q=0.8",
            "Referer": "https://platform.twitter.com/",
            "Origin": "https://platform.twitter.com",
        }
        sent.update(headers or {})
        return scrapy.Request(
            url, headers=sent, meta={REQUESTED: url, "dont_merge_cookies": True}, **kw
        )

    async def _syndication(self, post_id: str) -> tuple[Fetched, Any]:
        assert self.client is not None
        query = urlencode(
            {
                "id": post_id,
                "lang": "en",
                "features": SYNDICATION_FEATURES,
                "token": syndication_token(post_id),
            }
        )
        url = f"{self.syndication_url}/tweet-result?{query}"
        fetched = await self.client.fetch(self._json_request(url), classify_syndication)
        data = json_of(fetched.response.body) if fetched.response is not None else None
        return fetched, data

    async def _latest_version(
        self, capture: PageCapture, block: dict[str, Any], tweet: dict[str, Any]
    ) -> dict[str, Any]:
        """An edited post: when a newer version exists, its JSON too; the tweet to read."""
        ids = [str(i) for i in ((tweet.get("edit_control") or {}).get("edit_tweet_ids") or [])]
        if len(ids) < 2:
            return tweet
        block["edit"] = {"edit_ids": ids, "initial_id": ids[0], "latest_id": ids[-1]}
        if ids[-1] == str(tweet.get("id_str")):
            return tweet
        fetched, data = await self._syndication(ids[-1])
        capture.exchanges.extend(fetched.exchanges)
        if fetched.response is not None and fetched.response.status == 200:
            capture.resources.append(
                Resource(DATA_ROLE, LATEST_ARTIFACT, "application/json", fetched.response.body)
            )
            block["edit"]["artifact"] = LATEST_ARTIFACT
            if isinstance(data, dict) and data.get("__typename") == "Tweet":
                return data
        else:
            block["edit"]["error"] = fetched.verdict.message or "no answer"
        return tweet

    async def _graphql(self, capture: PageCapture, block: dict[str, Any], post_id: str) -> None:
        """The guest GraphQL ``TweetResultByRestId``: a guest token (once per run), the post."""
        assert self.client is not None
        facts: dict[str, Any] = {"artifact": None}
        block["graphql"] = facts
        for attempt in range(2):
            async with self.guest_lock:
                if self.guest_token is None and not await self._activate(capture, facts):
                    return
            assert self.guest_token is not None
            variables = {
                "tweetId": post_id,
                "withCommunity": False,
                "includePromotedContent": False,
                "withVoice": False,
            }
            query = urlencode(
                {
                    "variables": json.dumps(variables, separators=(",", ":")),
                    "features": json.dumps(GRAPHQL_FEATURES, separators=(",", ":")),
                }
            )
            url = f"{self.api_url}/graphql/{self.graphql_query_id}/TweetResultByRestId?{query}"
            headers = {
                "Authorization": f"Bearer {self.guest_bearer}",
                "x-guest-token": self.guest_token,
                "Content-Type": "application/json",
            }
            fetched = await self.client.fetch(self._json_request(url, headers), classify_graphql)
            capture.exchanges.extend(fetched.exchanges)
            facts["status"] = fetched.response.status if fetched.response is not None else None
            if fetched.verdict.kind == "auth" and attempt == 0:
                self.guest_token = None  # expired (they last hours): one new token, once
                continue
            if fetched.ok:
                capture.resources.append(
                    Resource(DATA_ROLE, GRAPHQL_ARTIFACT, "application/json", fetched.response.body)
                )
                facts["artifact"] = GRAPHQL_ARTIFACT
            else:
                facts["error"] = fetched.verdict.message or fetched.outcome or "no answer"
            return

    async def _activate(self, capture: PageCapture, facts: dict[str, Any]) -> bool:
        """A guest token for the run (the exchange joins this capture's WARC, scrubbed)."""
        assert self.client is not None
        activation = await self.client.fetch(
            self._json_request(
                f"{self.api_url}/1.1/guest/activate.json",
                {"Authorization": f"Bearer {self.guest_bearer}"},
                method="POST",
                body=b"",
            ),
            classify_graphql,
        )
        capture.exchanges.extend(activation.exchanges)
        body = json_of(activation.response.body) if activation.ok else None
        token = body.get("guest_token") if isinstance(body, dict) else None
        if not token:
            facts["error"] = f"no guest token: {activation.verdict.message or 'no answer'}"
            return False
        self.guest_token = str(token)
        self.guest_tokens.append(self.guest_token)
        return True

    async def _media(
        self, capture: PageCapture, tweet: dict[str, Any], referer: str
    ) -> list[dict[str, Any]]:
        """Each photo, each video's largest MP4 and its poster: artifacts, with ffprobe."""
        found: list[dict[str, Any]] = []
        for n, item in enumerate(tweet.get("mediaDetails") or [], start=1):
            if not isinstance(item, dict):
                continue
            kind = item.get("type")
            wanted: list[tuple[str, str, dict[str, Any]]] = []
            if kind == "photo" and item.get("media_url_https"):
                wanted.append(("image", item["media_url_https"], {}))
            elif kind in ("video", "animated_gif"):
                info = item.get("video_info") or {}
                variant = best_mp4(info.get("variants") or [])
                if variant is not None:
                    extra = {
                        "bitrate": variant.get("bitrate"),
                        "duration_millis": info.get("duration_millis"),
                    }
                    wanted.append(("video" if kind == "video" else "gif", variant["url"], extra))
                if item.get("media_url_https"):
                    wanted.append(("cover", item["media_url_https"], {}))
            for media_kind, url, extra in wanted:
                media = await fetch_media(
                    self,
                    url,
                    kind=media_kind,
                    index=n,
                    referer=referer,
                    max_bytes=self.max_media_bytes,
                )
                facts = await self._media_facts(media)
                facts.update(
                    {
                        "index": n,
                        "x_type": kind,
                        **{k: v for k, v in extra.items() if v is not None},
                    }
                )
                found.append(facts)
                capture.exchanges.extend(media.exchanges)
                resource = media.resource()
                if resource is not None:
                    capture.resources.append(resource)
        return found

    @staticmethod
    async def _media_facts(media: MediaFile) -> dict[str, Any]:
        if media.data is not None:
            media.probe = await probe_async(media.data)
        return media.facts()


# -- settings --------------------------------------------------------------------------------
def _handle(value: str) -> str:
    handle = value.strip().removeprefix("https://x.com/").removeprefix("https://twitter.com/")
    handle = handle.strip("/").lstrip("@")
    if not HANDLE.match(handle):
        raise ValueError(
            f"invalid account {value!r}: give @handle (letters, digits, _; 15 at most)"
        )
    return handle


class XSettings(SourceSettings):
    """The `x` source: watched accounts, hashtags, searches and posts, and the endpoints."""

    base_url: str = Field(
        default="https://x.com", description="X's web address (post and profile pages)"
    )
    syndication_url: str = Field(
        default="https://cdn.syndication.twimg.com",
        description="the embed widget's JSON endpoint (tweet-result)",
    )
    api_url: str = Field(
        default="https://api.x.com",
        description="the API host of the guest GraphQL (used only with guest_bearer)",
    )
    guest_bearer: SecretStr | None = Field(
        default=None,
        description="the web app's public bearer token; when set, each post is also asked of "
        f"the guest GraphQL TweetResultByRestId (views, reposts, quotes, bookmarks) "
        f"(evidence.toml or {TOKEN_ENV} only)",
    )
    graphql_query_id: str = Field(
        default="2ICDjqPd81tulZcYrtpTuQ",
        pattern=r"^[A-Za-z0-9_-]{10,40}$",
        description="the query id of TweetResultByRestId in the web client (changes with releases)",
    )
    accounts: list[str] = Field(
        default_factory=list, description="accounts whose page is watched (-a account=@handle)"
    )
    hashtags: list[str] = Field(
        default_factory=list,
        description="hashtag pages (-a hashtag=btw25); X shows logged-out browsers a login wall",
    )
    searches: list[str] = Field(
        default_factory=list,
        description="search pages (-a searches=…); X shows logged-out browsers a login wall",
    )
    urls: list[str] = Field(
        default_factory=list,
        description="posts to capture (-a url=https://x.com/<handle>/status/<id>; any host: the "
        "path is taken onto base_url)",
    )
    recapture: list[str] = Field(
        default_factory=list,
        description="internal: watched posts due again, filled before each run by the prepare "
        "step (records.posts.watch)",
    )
    known: list[str] = Field(
        default_factory=list,
        description="internal: ids of the posts the archive has, filled before each run by the "
        "prepare step (a listing's other posts are new)",
    )
    recapture_hours: float = Field(
        default=24.0,
        ge=0,
        le=24 * 365,
        description="capture a watched post again after this many hours",
    )
    max_recaptures: int = Field(
        default=500, ge=0, description="watched posts captured again per run, at most"
    )
    max_new_per_listing: int = Field(
        default=20, ge=0, le=1000, description="new posts taken from one listing page"
    )
    download_media: bool = Field(
        default=True, description="keep each post's videos, GIFs, posters and photos"
    )
    max_media_bytes: int = Field(
        default=200 * 1024 * 1024, ge=1024, description="largest media file kept, in bytes"
    )
    country: str = Field(
        default="DE",
        pattern=r"^[A-Z]{2}$",
        description="the country X sees the capture come from (posts withheld there: geo-blocked)",
    )
    browser_locale: str = Field(default="de-DE", description="the browser's language (locale)")
    browser_timezone: str = Field(default="Europe/Berlin", description="the browser's time zone")
    obey_robots: bool = Field(
        default=False,
        description="obey robots.txt (X's forbids every page to all but search engines; posts "
        "kept as evidence are asked one by one, as a person would)",
    )
    timeout: float = Field(
        default=60, ge=1, le=3600, description="seconds allowed per page or request"
    )
    backoff: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="seconds to wait after a 429 without Retry-After, doubled",
    )
    max_retries: int = Field(
        default=3, ge=0, le=20, description="repetitions of a rate-limited request"
    )

    @field_validator("base_url", "syndication_url", "api_url")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise ValueError(f"invalid endpoint {value!r}: give http(s)://host[/path]")
        return value.rstrip("/")

    @field_validator("accounts")
    @classmethod
    def _accounts(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(_handle(v) for v in value if v.strip()))

    @field_validator("hashtags")
    @classmethod
    def _hashtags(cls, value: list[str]) -> list[str]:
        cleaned = [v.strip().lstrip("#") for v in value if v.strip().lstrip("#")]
        for tag in cleaned:
            if any(c.isspace() for c in tag):
                raise ValueError(f"invalid hashtag {tag!r}: one word, without spaces")
        return list(dict.fromkeys(cleaned))

    @field_validator("searches")
    @classmethod
    def _searches(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(v.strip() for v in value if v.strip()))

    @field_validator("urls")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if parse_post_url(url) is None:
                raise ValueError(f"not the URL of a post on X: {url!r} (…/<handle>/status/<id>)")
        return list(dict.fromkeys(value))

    def uses_browser(self, default: bool) -> bool:
        return True

    def scrapy_settings(self) -> dict[str, Any]:
        limits = super().scrapy_settings()
        return limits | {
            "DOWNLOAD_TIMEOUT": self.timeout,
            "BROWSER_LOCALE": self.browser_locale,
            "BROWSER_TIMEZONE": self.browser_timezone,
            # The guest token travels in this header: redacted like Authorization.
            "REDACT_HEADERS": ["x-guest-token"],
        }

    def spider_arguments(self) -> dict[str, Any]:
        if not (self.accounts or self.hashtags or self.searches or self.urls or self.recapture):
            raise InputError(
                "x: nothing to capture: give accounts, hashtags, searches or urls "
                "([sources.x] or -a account=@handle, -a url=…); no watched post is due"
            )
        values = self.model_dump(
            exclude=set(SourceSettings.model_fields)
            | {
                "guest_bearer",
                "timeout",
                "recapture_hours",
                "max_recaptures",
                "browser_locale",
                "browser_timezone",
            }
        )
        values["guest_bearer"] = self.guest_bearer  # a SecretStr, opened by the spider only
        values["max_wait"] = 300.0
        return values


SOURCE = SourceSpec(
    name=SOURCE_NAME,
    kind="spider",
    description="posts on X: watched accounts (and hashtags, searches: behind a login wall), "
    "each post's page in the browser with its syndication JSON, video and images; versions, "
    "counts and removals in the posts index",
    settings=XSettings,
    collection="x",
    browser=True,
    spider=XSpider,
    records="records.posts.parse:parse_run",
    prepare="records.posts.watch:prepare_x",
)
