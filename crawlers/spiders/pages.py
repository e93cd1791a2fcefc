"""`pages`: capture a list of URLs, each as one snapshot (registered as the source `pages`).

Settings (``[sources.pages]``, ``-a`` on the command line, options of `evidence capture`):
``urls`` (a list), ``urls_file`` (one URL per line, ``#`` comments), ``mode`` (``http``;
``browser`` renders with Chromium), ``obey_robots`` (default true), ``timeout`` and
``max_bytes`` per request. See ``PagesSettings``.

Browser mode needs the Playwright settings that ``crawlers.runner.capture_settings`` adds for
it (``evidence capture --browser``); the capture itself is in ``crawlers/browser.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

import scrapy
from pydantic import Field, model_validator
from scrapy.crawler import Crawler
from scrapy.exceptions import CannotResolveHostError
from scrapy.http import Response
from twisted.internet.error import (
    ConnectionLost,
    ConnectionRefusedError,
    DNSLookupError,
    TCPTimedOutError,
    TimeoutError,
)
from twisted.python.failure import Failure

from crawlers.detect import looks_like_login_wall
from crawlers.items import PageCapture
from crawlers.middlewares import EXCHANGES, RequestRefused
from crawlers.resolver import policy_resolver
from crawlers.urls import PRIVATE_ADDRESS, UNSUPPORTED_SCHEME, AddressPolicy, url_problem
from schemas import SourceSettings, SourceSpec, utc_now

STARTED_AT = "evidence_started_at"
REQUESTED = "evidence_requested_url"  # survives redirects: meta is copied to each hop


def read_urls(urls: Any = None, urls_file: str | None = None) -> list[str]:
    """URLs from an argument (list or whitespace-separated string) and/or a file."""
    found: list[str] = []
    if isinstance(urls, str):
        found.extend(urls.split())
    elif urls:
        found.extend(urls)
    if urls_file:
        for line in Path(urls_file).read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                found.append(line)
    return found


def classify_failure(failure: Failure) -> tuple[str, str]:
    """(outcome, message) for a request that ended without a usable response."""
    from scrapy.downloadermiddlewares.robotstxt import IgnoreRequest
    from twisted.internet.error import SSLError

    exc = failure.value
    if isinstance(exc, RequestRefused):
        return exc.refusal.outcome, exc.refusal.message
    message = f"{type(exc).__name__}: {exc}".strip()
    text = str(exc).lower()
    kind = type(exc).__name__
    if kind == "DownloadTimeoutError":
        return "timeout", message
    if kind == "DownloadCancelledError" and "max size" in text:
        return "too-large", message
    if isinstance(exc, DNSLookupError | CannotResolveHostError):
        # The resolver answers "no address" for a name it refused: say why.
        resolver = policy_resolver()
        request = getattr(failure, "request", None)
        host = urlsplit(request.url).hostname if request is not None else None
        refusal = resolver.refusal(host) if resolver is not None and host else None
        if refusal is not None:
            return PRIVATE_ADDRESS, refusal
        return "dns-error", message
    if isinstance(exc, TimeoutError | TCPTimedOutError):
        return "timeout", message
    if isinstance(exc, SSLError) or "ssl" in text or "certificate" in text:
        return "tls-error", message
    if isinstance(exc, IgnoreRequest):
        if "robots.txt" in text:
            return "robots-disallowed", message
        if "redirect" in text:
            return "redirect-loop", message
        if "size" in text or "maxsize" in text:
            return "too-large", message
    if "maxsize" in text or "exceeds" in text or ("cancelled" in text and "size" in text):
        return "too-large", message
    if isinstance(exc, ConnectionRefusedError | ConnectionLost) or "connection" in text:
        return "connection-error", message
    return "failed", message


class PagesSpider(scrapy.Spider):
    name = "pages"
    browser: Any = None  # crawlers.browser.BrowserCapture in browser mode

    def __init__(
        self,
        urls: Any = None,
        urls_file: str | None = None,
        mode: str = "http",
        obey_robots: Any = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.start_urls_list = read_urls(urls, urls_file)
        if not self.start_urls_list:
            raise ValueError("no URLs to capture: give urls or urls_file")
        if mode not in ("http", "browser"):
            raise ValueError(f"unknown capture mode {mode!r}: use http or browser")
        self.mode = mode
        self.obey_robots = str(obey_robots).lower() not in ("0", "false", "no")
        self.robots_exchanges: list = []
        self.policy = AddressPolicy()

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> PagesSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        spider.policy = AddressPolicy.from_settings(crawler.settings)
        if spider.mode == "browser":
            from crawlers.browser import BrowserCapture
            from crawlers.chromium import PLAYWRIGHT_HANDLER

            handlers = crawler.settings.getdict("DOWNLOAD_HANDLERS")
            if handlers.get("http") != PLAYWRIGHT_HANDLER:
                raise ValueError(
                    "browser mode needs the Playwright settings: run it through "
                    "crawlers.runner.capture_pages (evidence capture --browser)"
                )
            spider.browser = BrowserCapture(crawler.settings)
        return spider

    async def start(self) -> AsyncIterator[scrapy.Request | PageCapture]:
        for url in self.start_urls_list:
            refused = url_problem(url, policy=self.policy)
            if refused is not None:
                # No request, no browser context: the URL's outcome goes straight to the
                # pipeline, which reports it like any other (nothing to archive).
                now = utc_now()
                yield PageCapture(
                    requested_url=refused.url,
                    mode=self.mode,
                    outcome=refused.outcome,
                    started_at=now,
                    finished_at=now,
                    error=refused.message,
                )
            elif self.browser is None:
                yield self.make_request(url)
            else:
                # One page per browser context at a time: wait here for a free one, so that
                # no page waits inside the browser (where the navigation timeout runs).
                yield self.make_browser_request(url, await self.browser.contexts.acquire())

    def make_request(self, url: str) -> scrapy.Request:
        meta: dict[str, Any] = {STARTED_AT: utc_now(), EXCHANGES: [], REQUESTED: url}
        if not self.obey_robots:
            meta["dont_obey_robotstxt"] = True
        return scrapy.Request(
            url, callback=self.parse, errback=self.failed, meta=meta, dont_filter=True
        )

    def make_browser_request(self, url: str, context: str) -> scrapy.Request:
        """A request rendered by Chromium in the browser context ``context``."""
        request = self.make_request(url)
        request.meta.update(self.browser.request_meta(context))
        return request.replace(callback=self.parse_browser, errback=self.failed_browser)

    async def parse_browser(self, response: Response) -> AsyncIterator[PageCapture]:
        """A page Chromium loaded: render, scroll, screenshot, print, DOM (crawlers.browser)."""
        try:
            capture = await self.browser.capture(
                response,
                requested_url=response.meta.get(REQUESTED, response.url),
                started_at=response.meta.get(STARTED_AT, utc_now()),
            )
        finally:
            self.browser.contexts.release(response.meta.get("playwright_context"))
        yield capture

    async def failed_browser(self, failure: Failure) -> AsyncIterator[PageCapture]:
        """A page Chromium could not load: what it recorded, and the error."""
        from crawlers.browser import classify_browser_failure

        request = failure.request  # type: ignore[attr-defined]
        outcome, message = classify_browser_failure(failure) or classify_failure(failure)
        try:
            capture = await self.browser.capture_failure(
                request,
                outcome=outcome,
                message=message,
                requested_url=request.meta.get(REQUESTED, request.url),
                started_at=request.meta.get(STARTED_AT, utc_now()),
            )
        finally:
            self.browser.contexts.release(request.meta.get("playwright_context"))
        yield capture

    def parse(self, response: Response) -> Iterator[PageCapture]:
        exchanges = response.meta.get(EXCHANGES, [])
        outcome = "archived"
        error = None
        location = response.headers.get("Location") if 300 <= response.status < 400 else None
        target = urljoin(response.url, location.decode("latin-1")) if location else None
        if target is not None and urlsplit(target).scheme.lower() not in ("http", "https"):
            # Scrapy does not follow such a redirect; the redirect itself is archived, and the
            # outcome says that the page it points to (a local file, say) was not fetched.
            outcome = UNSUPPORTED_SCHEME
            scheme = urlsplit(target).scheme.lower() or "?"
            error = f"redirect to a {scheme}: URL not followed: only http and https are captured"
        elif exchanges and looks_like_login_wall(response.body):
            outcome = "login-wall"
        yield PageCapture(
            requested_url=response.meta.get(REQUESTED, response.url),
            mode=self.mode,
            outcome=outcome,
            started_at=response.meta.get(STARTED_AT, utc_now()),
            finished_at=utc_now(),
            exchanges=exchanges,
            final_url=response.url,
            status=response.status,
            error=error,
        )

    def failed(self, failure: Failure) -> Iterator[PageCapture]:
        request = failure.request  # type: ignore[attr-defined]
        outcome, message = classify_failure(failure)
        exchanges = request.meta.get(EXCHANGES, [])
        if exchanges and outcome == "failed" and len(exchanges) >= 2:
            outcome = "redirect-loop"  # redirects recorded, then the chain was cut
        yield PageCapture(
            requested_url=request.meta.get(REQUESTED, request.url),
            mode=self.mode,
            outcome=outcome,
            started_at=request.meta.get(STARTED_AT, utc_now()),
            finished_at=utc_now(),
            exchanges=exchanges,
            final_url=exchanges[-1].url if exchanges else None,
            status=exchanges[-1].status if exchanges else None,
            error=message,
        )


class PagesSettings(SourceSettings):
    """The `pages` source: a list of URLs (a watchlist in evidence.toml, or given per run)."""

    urls: list[str] = Field(default_factory=list, description="URLs to capture, one snapshot each")
    urls_file: Path | None = Field(
        default=None, description="a file with one URL per line (# comments)"
    )
    mode: Literal["http", "browser"] = Field(
        default="http", description="http, or browser: rendered by Chromium (screenshot, PDF, DOM)"
    )
    obey_robots: bool = Field(default=True, description="obey robots.txt (archived either way)")
    timeout: float = Field(default=30, ge=1, le=3600, description="seconds allowed per request")
    max_bytes: int = Field(
        default=50 * 1024 * 1024, ge=1024, description="largest response accepted, in bytes"
    )

    @model_validator(mode="after")
    def _some_urls(self) -> PagesSettings:
        if self.urls_file is not None:
            try:
                self.urls = read_urls(self.urls, str(self.urls_file))
            except (OSError, UnicodeDecodeError) as exc:
                reason = getattr(exc, "strerror", None) or str(exc)
                raise ValueError(f"cannot read urls_file {self.urls_file}: {reason}") from None
            self.urls_file = None
        if not self.urls:
            raise ValueError("no URLs to capture: give URLs (urls, -a url=…) or a urls_file")
        return self

    def uses_browser(self, default: bool) -> bool:
        return self.mode == "browser"

    def scrapy_settings(self) -> dict[str, Any]:
        limits = super().scrapy_settings()
        return limits | {"DOWNLOAD_TIMEOUT": self.timeout, "DOWNLOAD_MAXSIZE": self.max_bytes}

    def spider_arguments(self) -> dict[str, Any]:
        return {"urls": list(self.urls), "mode": self.mode, "obey_robots": self.obey_robots}

    def work_items(self) -> list[dict[str, Any]]:
        return [{"url": url} for url in self.urls]

    def for_items(self, items: list[dict[str, Any]]) -> PagesSettings:
        return self.model_copy(update={"urls": [item["url"] for item in items]})


SOURCE = SourceSpec(
    name="pages",
    kind="spider",
    description="public web pages by URL: every exchange into a WARC, plus screenshot, PDF "
    "and DOM in browser mode",
    settings=PagesSettings,
    collection="default",
    spider=PagesSpider,
)
