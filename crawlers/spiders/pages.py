"""`pages`: capture a list of URLs, each as one snapshot.

Arguments (``-a`` on the command line, keywords from `evidence capture`):
``urls`` (a list, or a string of URLs separated by whitespace), ``urls_file`` (one URL per
line, ``#`` comments), ``mode`` (``http``; ``browser`` renders with Chromium),
``obey_robots`` (default true).

Browser mode needs the Playwright settings that ``crawlers.runner.capture_settings`` adds for
it (``evidence capture --browser``); the capture itself is in ``crawlers/browser.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import scrapy
from scrapy.crawler import Crawler
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
from crawlers.middlewares import EXCHANGES
from schemas import utc_now

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
    message = f"{type(exc).__name__}: {exc}".strip()
    text = str(exc).lower()
    kind = type(exc).__name__
    if kind == "DownloadTimeoutError":
        return "timeout", message
    if kind == "DownloadCancelledError" and "max size" in text:
        return "too-large", message
    if isinstance(exc, DNSLookupError):
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

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> PagesSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        if spider.mode == "browser":
            from crawlers.browser import PLAYWRIGHT_HANDLER, BrowserCapture

            handlers = crawler.settings.getdict("DOWNLOAD_HANDLERS")
            if handlers.get("http") != PLAYWRIGHT_HANDLER:
                raise ValueError(
                    "browser mode needs the Playwright settings: run it through "
                    "crawlers.runner.capture_pages (evidence capture --browser)"
                )
            spider.browser = BrowserCapture(crawler.settings)
        return spider

    async def start(self) -> AsyncIterator[scrapy.Request]:
        for url in self.start_urls_list:
            if self.browser is None:
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
        if exchanges and looks_like_login_wall(response.body):
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
