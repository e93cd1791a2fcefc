"""`transparency-reports`: the platforms' DSA transparency reports (Art. 15, 24 and 42).

Each configured index page (TikTok's online-safety hub, X's transparency centre, Meta's
regulatory reports, the Commission's list of VLOP reports, ...) is captured as a snapshot,
rendered by Chromium by default: some hubs build their list of reports with JavaScript, so
links are read from the rendered DOM. Every link on it to a report file (``.pdf``, ``.zip``,
``.xlsx``, ``.csv`` by default) is then captured with plain HTTP, as the server sent it, one
snapshot per file. A file linked from two index pages is fetched once per run.

The capture metadata says what each snapshot is, under ``transparency_report``: ``role``
(``index`` or ``file``), the ``platform`` of the index page, and for a file the
``index_page`` that linked it and the ``link_text``; an index page lists the report
``links`` it had. A response of 400 or more is archived (it is evidence that the link was
broken) with the outcome ``http-error``, which makes the run partial.

After the run, ``records.reports.parse:parse_run`` reads the archived files: new reports,
new versions of known ones, the text of their PDFs and the cells of their tables.

Settings: ``index_pages`` (a list of {platform, url[, browser]} or a table platform = url),
``browser``, ``extensions``, ``link_pattern``, ``max_links``, ``obey_robots``, ``timeout``,
``max_bytes``. See ``ReportsSettings``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

import scrapy
from pydantic import BaseModel, ConfigDict, Field, field_validator
from scrapy.crawler import Crawler
from scrapy.http import Response, TextResponse
from scrapy.selector import Selector
from twisted.python.failure import Failure

from crawlers.items import PageCapture
from crawlers.spiders.pages import PagesSpider
from crawlers.urls import AddressPolicy, url_problem
from schemas import SourceSettings, SourceSpec, utc_now

METADATA_KEY = "transparency_report"  # the key of this source's facts in capture metadata
REPORT_META = "evidence_report_link"  # request.meta: what the file request is for
INDEX_META = "evidence_report_index"  # request.meta: the index page a request captures
HTTP_ERROR = "http-error"
MAX_LISTED_LINKS = 500  # links recorded in an index page's metadata

# The best-known public pages listing each platform's DSA reports (checked 2025); a user
# points the source at others with `index_pages`.
DEFAULT_INDEX_PAGES = [
    {"platform": "tiktok", "url": "https://www.tiktok.com/transparency/en/dsa-transparency/"},
    {"platform": "x", "url": "https://transparency.x.com/en/reports/dsa-transparency-report"},
    {
        "platform": "meta",
        "url": "https://transparency.meta.com/reports/regulatory-transparency-reports/",
    },
    {
        "platform": "commission",
        "url": "https://digital-strategy.ec.europa.eu/en/policies/dsa-brings-transparency",
    },
]


def report_links(
    html: str,
    base_url: str,
    *,
    extensions: Iterable[str],
    pattern: str | None = None,
    limit: int | None = None,
) -> list[tuple[str, str]]:
    """(absolute URL, link text) of every link in ``html`` to a file with one of the
    ``extensions`` (matched on the URL's path, case-insensitively), first occurrence first;
    with ``pattern``, only links whose URL or text matches it."""
    selector = Selector(text=html or "<html></html>")
    base = urljoin(base_url, (selector.css("base::attr(href)").get() or "").strip())
    endings = tuple(e.lower() for e in extensions)
    matcher = re.compile(pattern, re.IGNORECASE) if pattern else None
    found: dict[str, str] = {}
    for anchor in selector.css("a[href]"):
        href = (anchor.attrib.get("href") or "").strip()
        url = urldefrag(urljoin(base, href))[0]
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or url in found:
            continue
        if not unquote(parts.path).lower().endswith(endings):
            continue
        text = " ".join(anchor.xpath("string()").get("").split())
        text = text or anchor.attrib.get("title") or anchor.attrib.get("aria-label") or ""
        if matcher is not None and not matcher.search(f"{url} {text}"):
            continue
        found[url] = text[:500]
        if limit is not None and len(found) >= limit:
            break
    return list(found.items())


class ReportsSpider(PagesSpider):
    """Index pages (browser or plain HTTP) and the report files they link (plain HTTP).

    It reuses the `pages` spider's request building and capture callbacks: an index page is
    captured exactly as `evidence capture` would capture it, a report file as a plain-HTTP
    capture, and both carry this source's facts in their metadata.
    """

    name = "transparency-reports"

    def __init__(
        self,
        index_pages: list[dict[str, Any]] | None = None,
        browser: Any = True,
        extensions: Iterable[str] = (".pdf", ".zip", ".xlsx", ".csv"),
        link_pattern: str | None = None,
        max_links: int = 100,
        obey_robots: Any = True,
        **kwargs: Any,
    ) -> None:
        # Not PagesSpider.__init__: that one wants a URL list; ours comes from index pages.
        scrapy.Spider.__init__(self, **kwargs)
        pages = [IndexPage.model_validate(p) for p in index_pages or []]
        if not pages:
            raise ValueError("no index pages to read: give index_pages")
        default_browser = str(browser).lower() not in ("0", "false", "no")
        self.index_pages = [
            p.model_copy(update={"browser": default_browser if p.browser is None else p.browser})
            for p in pages
        ]
        self.extensions = tuple(extensions)
        self.link_pattern = link_pattern
        self.max_links = int(max_links)
        self.mode = "http"  # how plain requests are labelled; browser captures label themselves
        self.obey_robots = str(obey_robots).lower() not in ("0", "false", "no")
        self.robots_exchanges: list = []
        self.policy = AddressPolicy()
        self.requested: set[str] = set()  # report files asked for in this run

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> ReportsSpider:
        # Scrapy's own from_crawler, not PagesSpider's (which sets up its browser by `mode`).
        spider = super(PagesSpider, cls).from_crawler(crawler, *args, **kwargs)
        spider.policy = AddressPolicy.from_settings(crawler.settings)
        if any(page.browser for page in spider.index_pages):
            from crawlers.browser import BrowserCapture
            from crawlers.chromium import PLAYWRIGHT_HANDLER

            handlers = crawler.settings.getdict("DOWNLOAD_HANDLERS")
            if handlers.get("http") != PLAYWRIGHT_HANDLER:
                raise ValueError(
                    "index pages in the browser need the Playwright settings: run the source "
                    "through `evidence crawl transparency-reports` (or set browser = false)"
                )
            spider.browser = BrowserCapture(crawler.settings)
        return spider

    # -- index pages ---------------------------------------------------------------------
    async def start(self) -> AsyncIterator[scrapy.Request | PageCapture]:
        for page in self.index_pages:
            facts = {"role": "index", "platform": page.platform}
            refused = url_problem(page.url, policy=self.policy)
            if refused is not None:
                now = utc_now()
                yield PageCapture(
                    requested_url=refused.url,
                    mode="browser" if page.browser else "http",
                    outcome=refused.outcome,
                    started_at=now,
                    finished_at=now,
                    error=refused.message,
                    details={METADATA_KEY: facts},
                )
            elif page.browser:
                request = self.make_browser_request(page.url, await self.browser.contexts.acquire())
                request.meta[INDEX_META] = facts
                yield request
            else:
                request = self.make_request(page.url)
                request.meta[INDEX_META] = facts
                yield request.replace(callback=self.parse_index)

    async def parse_browser(self, response: Response) -> AsyncIterator[Any]:
        """An index page Chromium rendered: its capture, then a request per report link."""
        facts = dict(response.meta[INDEX_META])
        async for capture in super().parse_browser(response):
            dom = next((r.data for r in capture.resources if r.role == "dom"), None)
            if dom is not None:
                html = dom.decode("utf-8", "replace")
            else:  # no DOM (rendering stopped): the document as Chromium received it
                html = response.text if isinstance(response, TextResponse) else ""
            for item in self._index_items(capture, facts, html, capture.final_url or response.url):
                yield item

    def parse_index(self, response: Response) -> Iterator[Any]:
        """An index page fetched with plain HTTP: its capture, then a request per link."""
        facts = dict(response.meta[INDEX_META])
        html = response.text if isinstance(response, TextResponse) else ""
        for capture in super().parse(response):
            yield from self._index_items(capture, facts, html, response.url)

    def _index_items(
        self, capture: PageCapture, facts: dict[str, Any], html: str, base_url: str
    ) -> Iterator[Any]:
        _label_http_error(capture)
        links: list[tuple[str, str]] = []
        if capture.outcome == "archived":
            links = report_links(
                html,
                base_url,
                extensions=self.extensions,
                pattern=self.link_pattern,
                limit=self.max_links,
            )
        facts["links"] = [{"url": u, "text": t} for u, t in links[:MAX_LISTED_LINKS]]
        capture.details[METADATA_KEY] = facts
        yield capture
        for url, text in links:
            if url in self.requested:
                continue  # linked from another index page too: one capture per run
            self.requested.add(url)
            refused = url_problem(url, policy=self.policy)
            link = {
                "role": "file",
                "platform": facts["platform"],
                "index_page": capture.requested_url,
                "link_text": text,
            }
            if refused is not None:
                now = utc_now()
                yield PageCapture(
                    requested_url=refused.url,
                    mode="http",
                    outcome=refused.outcome,
                    started_at=now,
                    finished_at=now,
                    error=refused.message,
                    details={METADATA_KEY: link},
                )
                continue
            request = self.make_request(url)
            request.meta[REPORT_META] = link
            yield request.replace(callback=self.parse_file)

    async def failed_browser(self, failure: Failure) -> AsyncIterator[PageCapture]:
        """An index page Chromium could not load: what it recorded, labelled."""
        facts = failure.request.meta.get(INDEX_META)  # type: ignore[attr-defined]
        async for capture in super().failed_browser(failure):
            capture.details[METADATA_KEY] = dict(facts or {}, links=[])
            yield capture

    # -- report files --------------------------------------------------------------------
    def parse_file(self, response: Response) -> Iterator[PageCapture]:
        """A report file as the server sent it (an error status is labelled ``http-error``)."""
        for capture in super().parse(response):
            _label_http_error(capture)
            capture.details[METADATA_KEY] = dict(response.meta[REPORT_META])
            yield capture

    def failed(self, failure: Failure) -> Iterator[PageCapture]:
        """A file or plain-HTTP index page that did not arrive: the `pages` outcome, labelled."""
        meta = failure.request.meta  # type: ignore[attr-defined]
        facts = meta.get(REPORT_META) or dict(meta.get(INDEX_META) or {}, links=[])
        for capture in super().failed(failure):
            capture.details[METADATA_KEY] = dict(facts)
            yield capture


def _label_http_error(capture: PageCapture) -> None:
    # A 404 for a linked report is archived as evidence of the broken link, but it is not
    # the report: the run must say so (partial), as it does for a login wall.
    if capture.outcome == "archived" and capture.status is not None and capture.status >= 400:
        capture.outcome = HTTP_ERROR
        capture.error = f"the server answered {capture.status}"


class IndexPage(BaseModel):
    """One page listing a platform's reports."""

    model_config = ConfigDict(extra="forbid")

    platform: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")
    url: str
    browser: bool | None = None  # None: the source's `browser` setting


class ReportsSettings(SourceSettings):
    """The `transparency-reports` source: index pages, and which of their links to capture."""

    index_pages: list[IndexPage] = Field(
        default_factory=lambda: [dict(p) for p in DEFAULT_INDEX_PAGES],
        description="pages listing reports: a list of {platform, url[, browser]}, or a table "
        "platform = url; -a index_page=platform=url",
    )
    browser: bool = Field(
        default=True,
        description="render index pages with Chromium (links built by JavaScript are found); "
        "report files are always fetched with plain HTTP",
    )
    extensions: list[str] = Field(
        default_factory=lambda: [".pdf", ".zip", ".xlsx", ".csv"],
        description="a link is a report file when its URL path ends with one of these",
    )
    link_pattern: str | None = Field(
        default=None,
        description="a regular expression the link's URL or text must match (e.g. dsa|transparen)",
    )
    max_links: int = Field(default=100, ge=1, description="report links followed per index page")
    obey_robots: bool = Field(default=True, description="obey robots.txt (archived either way)")
    timeout: float = Field(default=120, ge=1, le=3600, description="seconds allowed per request")
    max_bytes: int = Field(
        default=200 * 1024 * 1024, ge=1024, description="largest file accepted, in bytes"
    )

    @field_validator("index_pages", mode="before")
    @classmethod
    def _index_pages(cls, value: Any) -> Any:
        if isinstance(value, dict):  # [sources.transparency-reports.index_pages] tiktok = "…"
            return [{"platform": k, "url": v} for k, v in value.items()]
        if isinstance(value, list):
            return [_index_page_item(item) for item in value]
        return value

    @field_validator("extensions")
    @classmethod
    def _extensions(cls, value: list[str]) -> list[str]:
        cleaned = [f".{e.strip().lower().lstrip('.')}" for e in value if e.strip().strip(".")]
        if not cleaned:
            raise ValueError("give at least one file extension, e.g. .pdf")
        return cleaned

    @field_validator("link_pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value

    def uses_browser(self, default: bool) -> bool:
        return any(self.browser if p.browser is None else p.browser for p in self.index_pages)

    def scrapy_settings(self) -> dict[str, Any]:
        limits = super().scrapy_settings()
        return limits | {"DOWNLOAD_TIMEOUT": self.timeout, "DOWNLOAD_MAXSIZE": self.max_bytes}

    def spider_arguments(self) -> dict[str, Any]:
        return {
            "index_pages": [p.model_dump() for p in self.index_pages],
            "browser": self.browser,
            "extensions": list(self.extensions),
            "link_pattern": self.link_pattern,
            "max_links": self.max_links,
            "obey_robots": self.obey_robots,
        }


def _index_page_item(item: Any) -> Any:
    # From the command line an entry arrives as text: "platform=url".
    if isinstance(item, str):
        platform, equals, url = item.partition("=")
        if not equals or "://" in platform:
            raise ValueError(f"index page {item!r}: give platform=url, e.g. tiktok=https://…")
        return {"platform": platform.strip(), "url": url.strip()}
    return item


SOURCE = SourceSpec(
    name="transparency-reports",
    kind="spider",
    description="platforms' DSA transparency reports (Art. 15, 24, 42): index pages (browser) "
    "and the PDF, ZIP, XLSX and CSV reports they link, parsed into reports and versions",
    settings=ReportsSettings,
    collection="transparency-reports",
    browser=True,
    spider=ReportsSpider,
    records="records.reports.parse:parse_run",
)
