"""`tiktok`: TikTok posts from a watchlist, each with its video, its data and proof of its fate.

A run (``evidence crawl tiktok``, or the scheduler):

1. captures each watched listing in Chromium as a snapshot: account pages ``/@NAME``
   (``accounts``), tag pages ``/tag/NAME`` (``hashtags``), search pages ``/search?q=TERM``
   (``searches``). The browser scrolls, so the page's script loads further pages of its list
   API (``/api/post/item_list/``, ``/api/challenge/item_list/``, ``/api/search/…``); the posts on
   the listing are read from those recorded API answers, the page's embedded JSON and the
   rendered DOM's ``/@NAME/video/ID`` links. The snapshot's ``post`` block says
   ``{"kind": "listing", "watched_by": "account:@NAME", "found": [...], "new": [...]}``.
2. captures every *new* post (an id not in ``known``, which the source's prepare step fills
   with the ids the archive already has; at most ``max_new_per_listing`` per listing), every
   post URL in ``urls`` (``-a url=…``) and in ``recapture`` (the watched posts the prepare step
   found due: last captured longer than ``recapture_hours`` ago).

A post capture is the browser capture (WARC of every exchange, screenshot, PDF, DOM) plus, as
artifacts of the same snapshot, as received:

- the platform's data: the ``<script id="__UNIVERSAL_DATA_FOR_REHYDRATION__">`` JSON
  (``universal-data.json``; ``__DEFAULT_SCOPE__["webapp.video-detail"]`` holds ``statusCode``
  and ``itemInfo.itemStruct``) or the older ``<script id="SIGI_STATE">`` (``sigi-state.json``),
  cut from the document as the server sent it (role ``platform-data``);
- the media (role ``media``): the video at the ``bitrateInfo`` play address with the highest
  ``Bitrate`` (else ``playAddr``, else ``downloadAddr``), the cover, and the images of a photo
  post, fetched with the page's cookies (``tt_chain_token``, ``ttwid``, …: TikTok's CDN answers
  403 without them) and ``Referer: BASE/``; ffprobe's reading of each file (duration, frame
  size, codecs) goes into the metadata next to the artifact name.

The snapshot's ``post`` block (``records.posts.parse`` reads it) names the platform, the post
id, what watched it, the data artifact with TikTok's ``statusCode``/``statusMsg``, and each
media file (URL with its signature redacted, artifact, SHA-256, size, ffprobe, the *names* of
the cookies sent). A removed, private or geo-blocked post is captured all the same: the page
saying so is the proof, and TikTok's status code says which.

Not archived as what was asked for: a login wall (a redirect to ``/login``), TikTok's WAF
challenge page ("Please wait…") and a 429 are outcomes (``login-wall``, ``challenge``,
``rate-limited``) with nothing stored; the run waits (``backoff``, doubled per block in a row,
up to ``max_backoff``), asks once more (``block_retries``), and the run ends partial so that an
alert goes out. A post whose video could not be fetched is archived with the outcome
``media-missing``.

Cookies never reach the archive: the WARC redacts ``Cookie`` and ``Set-Cookie`` values, the
DOM is scrubbed of every cookie value, and the metadata lists cookie names only; TikTok's
token parameters in URLs (``msToken``, ``X-Bogus``, ``signature``, ``x-signature``, …) are
redacted wherever a URL is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import scrapy
from pydantic import Field, field_validator, model_validator
from scrapy.crawler import Crawler
from scrapy.http import Response
from twisted.python.failure import Failure

from crawlers.items import PageCapture, Resource
from crawlers.media import cookies_from_exchanges, fetch_media, probe_async
from crawlers.spiders.pages import PagesSpider
from crawlers.urls import AddressPolicy, url_problem
from schemas import SourceSettings, SourceSpec, format_rfc3339, utc_now

SOURCE_NAME = "tiktok"
PLATFORM = "tiktok"
BASE_URL = "https://www.tiktok.com"
POST_KEY = "post"  # capture metadata: what records.posts.parse reads
DATA_ROLE = "platform-data"
UNIVERSAL = "__UNIVERSAL_DATA_FOR_REHYDRATION__"
SIGI = ("SIGI_STATE", "sigi-persisted-data")
DATA_NAMES = {UNIVERSAL: "universal-data.json", "SIGI_STATE": "sigi-state.json"}
LOGIN_WALL, CHALLENGE, RATE_LIMITED = "login-wall", "challenge", "rate-limited"
MEDIA_MISSING = "media-missing"
BLOCKED = frozenset({LOGIN_WALL, CHALLENGE, RATE_LIMITED})
WORK = "evidence_tiktok_work"  # request.meta: what a request is for
# TikTok's request-signing and session parameters: tokens, never archived in a URL.
REDACT_QUERY_PARAMS = [
    "msToken",
    "X-Bogus",
    "X-Gnarly",
    "_signature",
    "x-signature",
    "verifyFp",
    "device_id",
    "odinId",
]
LISTING_SCOPES = ("webapp.user-detail", "webapp.challenge-detail", "webapp.search-detail")

_SCRIPT = re.compile(
    rb"<script\b[^>]*\bid\s*=\s*[\"']("
    + "|".join(re.escape(n) for n in (UNIVERSAL, *SIGI)).encode()
    + rb")[\"'][^>]*>(.*?)</script\s*>",
    re.DOTALL | re.IGNORECASE,
)
_POST_PATH = re.compile(r"^/@([^/?#]+)/(?:video|photo)/(\d{6,25})/?$")
_POST_LINK = re.compile(
    r"""href\s*=\s*["'](?:https?://[^"'/]+)?/@([A-Za-z0-9_.-]+)/(?:video|photo)/(\d{6,25})"""
)
# TikTok's WAF challenge ("Please wait…" with the answer cookie's name in #wci) and its
# slider CAPTCHA: pages that are not the page asked for.
_CHALLENGE = re.compile(
    rb"""id\s*=\s*["']wci["']|_wafchallengeid|captcha[-_]verify|secsdk-captcha|verify-bar-close""",
    re.IGNORECASE,
)


# -- reading pages ---------------------------------------------------------------------------
def embedded_data(html: bytes) -> tuple[str, bytes] | None:
    """(script id, the JSON's bytes as sent) of the page's embedded data: the universal
    rehydration data if present, else the older SIGI state; None if the page has neither."""
    found = {m.group(1).decode(): m.group(2) for m in _SCRIPT.finditer(html or b"")}
    if UNIVERSAL in found:
        return UNIVERSAL, found[UNIVERSAL].strip()
    for name in SIGI:
        if name in found:
            return name, found[name].strip()
    return None


def _json(data: bytes | str | None) -> Any:
    if not data:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return None


def post_id_of(url: str | None) -> str | None:
    """The post id in a post URL (``/@NAME/video/ID``), or None."""
    if not url:
        return None
    match = _POST_PATH.match(urlsplit(url).path)
    return match.group(2) if match else None


def rebase(url: str, base_url: str) -> str:
    """A post URL moved onto ``base_url`` (``-a url=`` takes TikTok's URL whatever base the
    run uses), without its query (share parameters); other URLs as given."""
    parts = urlsplit(url.strip())
    if _POST_PATH.match(parts.path):
        return base_url + parts.path
    return url.strip()


def post_url(base_url: str, handle: str, post_id: str) -> str:
    """``BASE/@handle/video/ID``."""
    return f"{base_url}/@{handle}/video/{post_id}"


def detail_of(data: Any, scope: str) -> dict[str, Any]:
    """``__DEFAULT_SCOPE__[scope]`` of universal data ({} if absent)."""
    if not isinstance(data, dict):
        return {}
    found = (data.get("__DEFAULT_SCOPE__") or {}).get(scope)
    return found if isinstance(found, dict) else {}


def post_item(
    script: str, data: Any, post_id: str | None
) -> tuple[dict[str, Any], int | None, str]:
    """(itemStruct, statusCode, statusMsg) of a post page's data, in either layout."""
    if not isinstance(data, dict):
        return {}, None, ""
    if script == UNIVERSAL:
        detail = detail_of(data, "webapp.video-detail")
        item = (detail.get("itemInfo") or {}).get("itemStruct") or {}
        code, message = detail.get("statusCode"), detail.get("statusMsg")
    else:
        modules = data.get("ItemModule") or {}
        item = modules.get(post_id or "") or next(iter(modules.values()), {})
        page = data.get("VideoPage") or {}
        code, message = page.get("statusCode", 0), page.get("statusMsg")
    try:
        status = int(code) if code is not None else None
    except (TypeError, ValueError):
        status = None
    return (item if isinstance(item, dict) else {}), status, str(message or "")


def _items_in(value: Any) -> Iterator[dict[str, Any]]:
    """Post items of a list API answer or listing data: ``itemList``, ``item_list``,
    ``items``, ``data[].item``, ``userInfo.itemList``, SIGI's ``ItemModule``."""
    if isinstance(value, dict):
        for key in ("itemList", "item_list", "items"):
            items = value.get(key)
            if isinstance(items, list):
                yield from (i for i in items if isinstance(i, dict))
        data = value.get("data")
        if isinstance(data, list):
            yield from (
                e["item"] for e in data if isinstance(e, dict) and isinstance(e.get("item"), dict)
            )
        modules = value.get("ItemModule")
        if isinstance(modules, dict):
            yield from (i for i in modules.values() if isinstance(i, dict))
        scope = value.get("__DEFAULT_SCOPE__")
        if isinstance(scope, dict):
            for name in LISTING_SCOPES:
                yield from _items_in((scope.get(name) or {}).get("userInfo") or {})


def _handle_of(item: dict[str, Any]) -> str | None:
    author = item.get("author")
    if isinstance(author, dict):
        return author.get("uniqueId") or None
    return author if isinstance(author, str) and author else None


def discover(html: bytes | str, bodies: Iterable[bytes], base_url: str) -> list[tuple[str, str]]:
    """(handle, post id) of every post a listing showed, first seen first: from the JSON the
    page received (its list API answers, its embedded data) and from the rendered links."""
    found: dict[str, str] = {}
    for body in bodies:
        for item in _items_in(_json(body)):
            post_id, handle = str(item.get("id") or ""), _handle_of(item)
            if post_id.isdigit() and handle and post_id not in found:
                found[post_id] = handle
    text = html.decode("utf-8", "replace") if isinstance(html, bytes) else html
    for handle, post_id in _POST_LINK.findall(text or ""):
        found.setdefault(post_id, unquote(handle))
    return [(handle, post_id) for post_id, handle in found.items()]


def _absolute(url: Any) -> str | None:
    if not isinstance(url, str) or not url.strip():
        return None
    url = url.strip()
    return "https:" + url if url.startswith("//") else url


def media_urls(item: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(kind, URL, facts) of the media of a post: the video (the ``bitrateInfo`` entry with
    the highest ``Bitrate``, else ``playAddr``, else ``downloadAddr``), the cover, and each
    image of a photo post."""
    found: list[tuple[str, str, dict[str, Any]]] = []
    video = item.get("video") if isinstance(item.get("video"), dict) else {}
    infos = [b for b in video.get("bitrateInfo") or [] if isinstance(b, dict)]

    def rate(info: dict[str, Any]) -> int:
        try:
            return int(info.get("Bitrate") or 0)
        except (TypeError, ValueError):
            return 0

    for info in sorted(infos, key=rate, reverse=True):
        urls = (info.get("PlayAddr") or {}).get("UrlList") or []
        url = next((u for u in map(_absolute, urls) if u), None)
        if url:
            facts = {"source": "bitrateInfo", "bitrate": rate(info), "gear": info.get("GearName")}
            facts["codec"] = info.get("CodecType")
            found.append(("video", url, facts))
            break
    else:
        play = video.get("playAddr")
        if isinstance(play, list):  # an older shape: [{"src": ...}]
            play = next((p.get("src") for p in play if isinstance(p, dict) and p.get("src")), None)
        for source, url in (("playAddr", play), ("downloadAddr", video.get("downloadAddr"))):
            if _absolute(url):
                found.append(("video", _absolute(url), {"source": source}))  # type: ignore[arg-type]
                break
    cover = _absolute(video.get("cover")) or _absolute(video.get("originCover"))
    if cover:
        found.append(("cover", cover, {"source": "cover"}))
    images = ((item.get("imagePost") or {}).get("images")) or []
    for image in images:
        if not isinstance(image, dict):
            continue
        urls = ((image.get("imageURL") or {}).get("urlList")) or []
        url = next((u for u in map(_absolute, urls) if u), None)
        if url:
            found.append(("image", url, {"source": "imagePost"}))
    return found


def blocked(capture: PageCapture, html: bytes, has_data: bool) -> tuple[str, str] | None:
    """(outcome, message) when the page is not the page asked for: a login wall, the WAF
    challenge, a rate limit. Decided from what the page is, not from the status alone."""
    final = urlsplit(capture.final_url or "")
    if final.path.rstrip("/") in ("/login", "/signup") or (
        capture.outcome == LOGIN_WALL and not has_data
    ):
        return LOGIN_WALL, f"TikTok showed its login page instead ({final.path or '?'})"
    if capture.status == 429:
        return RATE_LIMITED, "TikTok answered 429 Too Many Requests"
    if not has_data and _CHALLENGE.search(html or b""):
        return CHALLENGE, "TikTok showed its security check (WAF challenge) instead of the page"
    return None


# -- the spider ------------------------------------------------------------------------------
@dataclass
class Work:
    """One page to capture: a listing or a post, and why it is watched."""

    kind: str  # listing or post
    url: str
    watched_by: str
    post_id: str | None = None
    listing: dict[str, str] | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)


class TikTokSpider(PagesSpider):
    """Listings and posts in Chromium, media over HTTP with the page's cookies."""

    name = SOURCE_NAME

    def __init__(
        self,
        base_url: str = BASE_URL,
        accounts: Iterable[str] = (),
        hashtags: Iterable[str] = (),
        searches: Iterable[str] = (),
        urls: Iterable[str] = (),
        recapture: Iterable[str] = (),
        known: Iterable[str] = (),
        max_new_per_listing: int = 20,
        download_media: bool = True,
        max_media_bytes: int = 200 * 1024 * 1024,
        backoff: float = 60.0,
        max_backoff: float = 900.0,
        block_retries: int = 1,
        obey_robots: Any = True,
        **kwargs: Any,
    ) -> None:
        # Not PagesSpider.__init__: that one wants a URL list; ours is built from the watchlist.
        scrapy.Spider.__init__(self, **kwargs)
        self.base_url = base_url.rstrip("/")
        self.referer = self.base_url + "/"
        self.known = {str(k) for k in known}
        self.max_new = int(max_new_per_listing)
        self.download_media = bool(download_media)
        self.max_media_bytes = int(max_media_bytes)
        self.backoff, self.max_backoff = float(backoff), float(max_backoff)
        self.block_retries = int(block_retries)
        self.mode = "browser"
        self.obey_robots = str(obey_robots).lower() not in ("0", "false", "no")
        self.robots_exchanges: list = []
        self.policy = AddressPolicy()
        self.scheduled: set[str] = set()  # post ids captured (or queued) in this run
        self.queue: asyncio.Queue[Work | None] | None = None
        self.open = 0  # requests out whose callback has not finished
        self.blocked_in_row = 0
        self.resume_at = 0.0
        self.work: list[Work] = []
        self.media_headers: dict[str, str] = {}
        for handle in accounts:
            handle = handle.lstrip("@")
            self.work.append(
                Work(
                    "listing",
                    f"{self.base_url}/@{handle}",
                    f"account:@{handle}",
                    listing={"type": "account", "value": f"@{handle}"},
                )
            )
        for tag in hashtags:
            tag = tag.lstrip("#")
            self.work.append(
                Work(
                    "listing",
                    f"{self.base_url}/tag/{quote(tag, safe='')}",
                    f"hashtag:{tag}",
                    listing={"type": "hashtag", "value": tag},
                )
            )
        for term in searches:
            self.work.append(
                Work(
                    "listing",
                    f"{self.base_url}/search?q={quote(term, safe='')}",
                    f"search:{term}",
                    listing={"type": "search", "value": term},
                )
            )
        for watched_by, given in (("url", urls), ("recapture", recapture)):
            for url in given:
                url = rebase(url, self.base_url)
                post_id = post_id_of(url)
                if post_id is not None and post_id in self.scheduled:
                    continue
                if post_id is not None:
                    self.scheduled.add(post_id)
                self.work.append(Work("post", url, watched_by, post_id=post_id))
        if not self.work:
            raise ValueError(
                "nothing to capture: give accounts, hashtags, searches or urls "
                "([sources.tiktok] or -a account=@NAME, -a url=…)"
            )

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> TikTokSpider:
        # Scrapy's own from_crawler, not PagesSpider's (which sets up its browser by `mode`).
        spider = super(PagesSpider, cls).from_crawler(crawler, *args, **kwargs)
        spider.policy = AddressPolicy.from_settings(crawler.settings)
        from crawlers.browser import BrowserCapture
        from crawlers.chromium import PLAYWRIGHT_HANDLER

        handlers = crawler.settings.getdict("DOWNLOAD_HANDLERS")
        if handlers.get("http") != PLAYWRIGHT_HANDLER:
            raise ValueError(
                "the tiktok source renders pages with Chromium: run it with `evidence crawl tiktok`"
            )
        spider.browser = BrowserCapture(crawler.settings)
        # The media requests speak the browser's language, as the page's player would.
        spider.media_headers = {"Accept-Language": crawler.settings.get("BROWSER_LOCALE") or "en"}
        return spider

    # -- the work queue ------------------------------------------------------------------
    async def start(self) -> AsyncIterator[scrapy.Request | PageCapture]:
        """Listings and posts one after another as contexts free up; posts a listing shows
        join the queue while the run goes on, so the run ends when nothing is left."""
        self.queue = asyncio.Queue()
        for work in self.work:
            self.queue.put_nowait(work)
        while not (self.queue.empty() and self.open == 0):
            work = await self.queue.get()
            if work is None:  # a callback finished: look again whether anything is left
                continue
            wait = self.resume_at - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            refused = url_problem(work.url, policy=self.policy)
            if refused is not None:
                now = utc_now()
                yield PageCapture(
                    requested_url=refused.url,
                    mode="browser",
                    outcome=refused.outcome,
                    started_at=now,
                    finished_at=now,
                    error=refused.message,
                    details={POST_KEY: self._block(work)},
                )
                continue
            request = self.make_browser_request(work.url, await self.browser.contexts.acquire())
            request.meta[WORK] = work
            self.open += 1
            yield request

    def _finished(self) -> None:
        self.open -= 1
        if self.queue is not None:
            self.queue.put_nowait(None)

    def _block(self, work: Work) -> dict[str, Any]:
        block: dict[str, Any] = {
            "platform": PLATFORM,
            "kind": work.kind,
            "watched_by": work.watched_by,
        }
        if work.post_id:
            block["post_id"] = work.post_id
        if work.listing:
            block["listing"] = dict(work.listing)
        if work.attempts:
            block["attempts"] = list(work.attempts)
        return block

    # -- callbacks -----------------------------------------------------------------------
    async def parse_browser(self, response: Response) -> AsyncIterator[Any]:
        """A page Chromium loaded: the capture, its data and media, or a blocked outcome."""
        work: Work = response.meta[WORK]
        try:
            # The page's cookies, read before the capture ends and clears them: the media
            # requests need them as the player would send them.
            cookies: list[dict[str, Any]] = []
            page = response.meta.get("playwright_page")
            if page is not None:
                with contextlib.suppress(Exception):
                    cookies = list(await asyncio.wait_for(page.context.cookies(), 10))
            async for capture in super().parse_browser(response):
                async for item in self._handle(work, capture, cookies):
                    yield item
        finally:
            self._finished()

    async def failed_browser(self, failure: Failure) -> AsyncIterator[PageCapture]:
        """A page Chromium could not load: what was recorded, labelled (nothing to parse)."""
        work: Work = failure.request.meta[WORK]  # type: ignore[attr-defined]
        try:
            async for capture in super().failed_browser(failure):
                block = self._block(work)
                if block["kind"] == "post":
                    block["kind"] = "failed"  # the page did not load: no post to read
                capture.details[POST_KEY] = block
                yield capture
        finally:
            self._finished()

    async def _handle(
        self, work: Work, capture: PageCapture, cookies: list[dict[str, Any]]
    ) -> AsyncIterator[PageCapture]:
        html = self._document(capture)
        dom = next((r.data for r in capture.resources if r.role == "dom"), b"")
        found = embedded_data(html) or embedded_data(dom)
        stop = blocked(capture, html or dom, found is not None)
        if stop is not None:
            async for item in self._blocked(work, capture, *stop):
                yield item
            return
        self.blocked_in_row = 0
        if capture.outcome == LOGIN_WALL:
            capture.outcome = "archived"  # TikTok's data is there: a login prompt on the page
        block = self._block(work)
        data = None
        if found is not None:
            script, raw = found
            name = DATA_NAMES.get(script, "sigi-state.json")
            capture.resources.append(Resource(DATA_ROLE, name, "application/json", raw))
            data = _json(raw)
            block["data"] = {"script": script, "artifact": name, "role": DATA_ROLE}
        if work.kind == "listing":
            self._listing(work, capture, block, data, dom or html)
        else:
            await self._post(work, capture, block, found[0] if found else None, data, cookies)
        capture.details[POST_KEY] = block
        yield capture

    async def _blocked(
        self, work: Work, capture: PageCapture, outcome: str, message: str
    ) -> AsyncIterator[PageCapture]:
        """Back off; ask again while retries last, else report the outcome with nothing kept."""
        self.blocked_in_row += 1
        wait = min(self.backoff * 2 ** (self.blocked_in_row - 1), self.max_backoff)
        self.resume_at = max(self.resume_at, time.monotonic() + wait)
        work.attempts.append(
            {
                "at": format_rfc3339(capture.started_at),
                "outcome": outcome,
                "message": message,
                "status": capture.status,
                "waited_s": round(wait, 3),
            }
        )
        self.logger.warning("%s: %s; waiting %.1f s", work.url, message, wait)
        if len(work.attempts) <= self.block_retries and self.queue is not None:
            self.queue.put_nowait(work)
            return
        # What TikTok showed instead of the page is not archived as the page: the outcome
        # is recorded (the run is partial, an alert goes out) and nothing is stored.
        yield PageCapture(
            requested_url=capture.requested_url,
            mode="browser",
            outcome=outcome,
            started_at=capture.started_at,
            finished_at=capture.finished_at,
            final_url=capture.final_url,
            status=capture.status,
            error=f"{message} ({len(work.attempts)} attempt(s))",
        )

    @staticmethod
    def _document(capture: PageCapture) -> bytes:
        """The main document's body as received (the last hop of its redirect chain)."""
        final = capture.final_url
        documents = [
            e
            for e in capture.exchanges
            if e.notes.get("resource_type") == "document" and isinstance(e.body, bytes)
        ]
        for exchange in reversed(documents):
            if final is None or exchange.url == final:
                return exchange.body  # type: ignore[return-value]
        return documents[0].body if documents else b""  # type: ignore[return-value]

    def _listing(
        self, work: Work, capture: PageCapture, block: dict[str, Any], data: Any, html: bytes
    ) -> None:
        bodies = [
            e.body
            for e in capture.exchanges
            if isinstance(e.body, bytes) and e.body[:1] in (b"{", b"[")
        ]
        posts = discover(html, bodies, self.base_url) if capture.outcome == "archived" else []
        for scope in LISTING_SCOPES:
            detail = detail_of(data, scope)
            if detail:
                block["status_code"] = detail.get("statusCode")
                block["status_msg"] = detail.get("statusMsg") or ""
        new, skipped = [], []
        for handle, post_id in posts:
            if post_id in self.known or post_id in self.scheduled:
                continue
            if len(new) >= self.max_new:
                skipped.append(post_id)
                continue
            new.append(post_id)
            self.scheduled.add(post_id)
            if self.queue is not None:
                self.queue.put_nowait(
                    Work("post", post_url(self.base_url, handle, post_id), work.watched_by, post_id)
                )
        block["found"] = [post_id for _, post_id in posts]
        block["new"] = new
        if skipped:
            block["not_captured"] = {
                "reason": f"more than {self.max_new} new posts",
                "ids": skipped,
            }

    async def _post(
        self,
        work: Work,
        capture: PageCapture,
        block: dict[str, Any],
        script: str | None,
        data: Any,
        cookies: list[dict[str, Any]],
    ) -> None:
        post_id = work.post_id or post_id_of(capture.final_url) or post_id_of(capture.requested_url)
        item, status, message = post_item(script or "", data, post_id)
        post_id = post_id or (str(item["id"]) if item.get("id") else None)
        block["post_id"] = post_id
        # A short link (vm.tiktok.com/…) lands on the post's page: that is the post's address.
        landed = capture.final_url if post_id_of(capture.final_url) else None
        block["url"] = rebase(landed, self.base_url) if landed else work.url
        if "data" in block:
            block["data"].update(status_code=status, status_msg=message)
        if capture.outcome not in ("archived",):
            block["kind"] = "failed"
            return
        if status != 0 or not item or not self.download_media:
            block["media"] = []
            return
        # Cookies set after they were read (by an API response of the page) count too.
        jar = cookies + cookies_from_exchanges(capture.exchanges)
        media: list[dict[str, Any]] = []
        missing: list[str] = []
        index = {"image": 0}
        for kind, url, facts in media_urls(item):
            number = None
            if kind == "image":
                index["image"] += 1
                number = index["image"]
            fetched = await fetch_media(
                self,
                url,
                kind=kind,
                index=number,
                cookies=jar,
                referer=self.referer,
                max_bytes=self.max_media_bytes,
                headers=self.media_headers,
            )
            capture.exchanges.extend(fetched.exchanges)
            if fetched.data is not None:
                fetched.probe = await probe_async(fetched.data)
                resource = fetched.resource()
                if resource is not None:
                    capture.resources.append(resource)
            else:
                missing.append(f"{kind}: {fetched.error or fetched.outcome}")
            media.append(fetched.facts() | {"chosen": facts})
        block["media"] = media
        if missing:
            capture.outcome = MEDIA_MISSING
            capture.error = "; ".join(missing)[:500]

    # Pages and plain requests of PagesSpider that this spider never makes.
    def parse(self, response: Response) -> Iterator[PageCapture]:  # pragma: no cover
        raise NotImplementedError("the tiktok source captures every page in the browser")


class TikTokSettings(SourceSettings):
    """The `tiktok` source: the watchlist, re-captures, media, and the browser's presence."""

    base_url: str = Field(
        default=BASE_URL,
        description="TikTok's web address (a mirror or the fixture in tests); -a url= takes "
        "TikTok post URLs and captures them on this base",
    )
    accounts: list[str] = Field(
        default_factory=list, description='accounts to watch, "@name" (-a account=@name)'
    )
    hashtags: list[str] = Field(
        default_factory=list, description="hashtags to watch, without # (-a hashtag=name)"
    )
    searches: list[str] = Field(
        default_factory=list, description="search terms to watch (-a searches=term)"
    )
    urls: list[str] = Field(
        default_factory=list, description="single posts to capture (-a url=https://…/video/ID)"
    )
    recapture: list[str] = Field(
        default_factory=list,
        description="internal: the watched posts due for another capture, filled before each "
        "run from the archive (records.posts.watch.prepare_tiktok); not a setting to give",
    )
    known: list[str] = Field(
        default_factory=list,
        description="internal: ids of the posts already in the archive, filled before each run "
        "(a listing's other posts are new); not a setting to give",
    )
    recapture_hours: float = Field(
        default=24,
        ge=0,
        description="capture a watched post again when its last capture is "
        "older than this many hours",
    )
    max_recaptures: int = Field(default=500, ge=0, description="re-captures per run at most")
    max_new_per_listing: int = Field(
        default=20, ge=0, description="new posts captured per listing and run at most"
    )
    download_media: bool = Field(
        default=True, description="fetch each post's video, cover and images as artifacts"
    )
    max_media_bytes: int = Field(
        default=200 * 1024 * 1024, ge=1024, description="largest media file accepted, in bytes"
    )
    backoff: float = Field(
        default=60,
        ge=0,
        le=3600,
        description="seconds to wait after a login wall, challenge or 429, doubled for each "
        "such page in a row",
    )
    max_backoff: float = Field(default=900, ge=0, description="longest single wait, seconds")
    block_retries: int = Field(
        default=1, ge=0, le=5, description="asks again for a page answered by a block"
    )
    obey_robots: bool = Field(default=True, description="obey robots.txt (archived either way)")
    timeout: float = Field(default=60, ge=1, le=3600, description="seconds allowed per page")
    browser_locale: str = Field(
        default="de-DE", description="the browser's language (Accept-Language, navigator.language)"
    )
    browser_timezone: str = Field(
        default="Europe/Berlin", description="the browser's time zone, as a German visitor's"
    )

    @field_validator("base_url")
    @classmethod
    def _base(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{value!r} is not an http(s) address")
        return f"{parts.scheme}://{parts.netloc}"

    @field_validator("accounts")
    @classmethod
    def _accounts(cls, value: list[str]) -> list[str]:
        handles = []
        for given in value:
            text = given.strip()
            match = re.search(r"/@([^/?#]+)", text)
            handle = (match.group(1) if match else text).lstrip("@")
            if not re.fullmatch(r"[A-Za-z0-9_.]{1,64}", handle):
                raise ValueError(f"{given!r} is not a TikTok account (give @name)")
            handles.append(f"@{handle}")
        return list(dict.fromkeys(handles))

    @field_validator("hashtags")
    @classmethod
    def _hashtags(cls, value: list[str]) -> list[str]:
        tags = []
        for given in value:
            text = given.strip()
            match = re.search(r"/tag/([^/?#]+)", text)
            tag = unquote(match.group(1)) if match else text.lstrip("#")
            if not tag or any(c.isspace() for c in tag):
                raise ValueError(f"{given!r} is not a hashtag (give it without #, one word)")
            tags.append(tag)
        return list(dict.fromkeys(tags))

    @field_validator("searches")
    @classmethod
    def _searches(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(v.strip() for v in value if v.strip()))

    @model_validator(mode="after")
    def _something_to_watch(self) -> TikTokSettings:
        if not (self.accounts or self.hashtags or self.searches or self.urls or self.recapture):
            raise ValueError(
                "nothing to watch: give accounts, hashtags, searches or urls ([sources.tiktok] "
                "in evidence.toml, or -a account=@NAME, -a hashtag=NAME, -a url=…)"
            )
        return self

    def uses_browser(self, default: bool) -> bool:
        return True

    def scrapy_settings(self) -> dict[str, Any]:
        return super().scrapy_settings() | {
            "DOWNLOAD_TIMEOUT": self.timeout,
            "BROWSER_LOCALE": self.browser_locale,
            "BROWSER_TIMEZONE": self.browser_timezone,
            "REDACT_QUERY_PARAMS": list(REDACT_QUERY_PARAMS),
        }

    def spider_arguments(self) -> dict[str, Any]:
        return self.model_dump(
            exclude=set(SourceSettings.model_fields)
            | {"recapture_hours", "max_recaptures", "timeout", "browser_locale", "browser_timezone"}
        )


SOURCE = SourceSpec(
    name=SOURCE_NAME,
    kind="spider",
    description="TikTok posts from watched accounts, hashtags and searches: the page in "
    "Chromium, TikTok's embedded data, the video and cover (ffprobe), re-captured to prove "
    "edits, removals and blocks",
    settings=TikTokSettings,
    collection="tiktok",
    browser=True,
    spider=TikTokSpider,
    records="records.posts.parse:parse_run",
    prepare="records.posts.watch:prepare_tiktok",
)
