"""`google-ads`: Google's political-ads transparency bundle and Ads Transparency Center pages.

Google publishes no API for election ads; it publishes a bundle, a zip of CSV files
(``google-political-ads-transparency-bundle.zip``: creative-stats with one row per ad,
advertiser-stats, advertiser-weekly-spend, geo-spend, …), refreshed about weekly, and shows
each ad on a page of the Ads Transparency Center that JavaScript draws. Google stopped
serving political ads in the EU in October 2025; the bundle still holds the EU's history
(rows with ``Regions`` "EU,DE" …), until Google drops it.

A run:

1. streams the bundle to disk with plain HTTP (``crawlers.download``: hashed while it
   arrives, resumed with Range after a break, the URL policy on every hop, a 429/5xx waited
   out as Retry-After says), then archives it as one snapshot, the zip as the body of the
   WARC's response record, read from the file (never held in memory). Its capture metadata
   carries the ``ads`` block the records step reads (``records.ads.parse``: kind "page",
   ``pages: 1``, the ``regions`` asked for): the creative-stats rows of those regions become
   ads, and ads of earlier runs no longer in the bundle are marked unseen.
2. with ``render_creatives`` (default), renders the creative pages of at most
   ``max_creatives`` of the selected ads (most recently shown first) in Chromium, each as a
   snapshot with ``ads`` kind "creative" (screenshot, PDF, DOM, every exchange).

Settings: ``bundle_url``, ``transparency_base``, ``regions`` (``-a region=DE``; default EU:
every member state), ``render_creatives``, ``max_creatives``, ``creative_region``,
``obey_robots``, ``timeout``, ``attempts``, ``max_bytes``. See ``GoogleAdsSettings``.
"""

from __future__ import annotations

import asyncio
import csv
import io
import shutil
import tempfile
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import scrapy
from pydantic import Field, field_validator
from scrapy.crawler import Crawler
from scrapy.http import Response
from twisted.python.failure import Failure

from crawlers.download import Client, DownloadError
from crawlers.exchanges import Exchange, reason_phrase
from crawlers.items import PageCapture
from crawlers.spiders.adlib import ADS_KEY, failed_capture, query_key
from crawlers.spiders.pages import PagesSpider
from crawlers.urls import AddressPolicy, url_problem
from schemas import SourceSettings, SourceSpec, utc_now

SOURCE_NAME = "google-ads"
PLATFORM = "google"
BUNDLE_URL = (
    "https://storage.googleapis.com/political-csv/google-political-ads-transparency-bundle.zip"
)
TRANSPARENCY_BASE = "https://adstransparency.google.com"
CREATIVE_STATS = "google-political-ads-creative-stats.csv"
CREATIVE_META = "evidence_google_creative"  # request.meta: the ad whose page this is
FACTS = "google_ads"  # this source's facts in capture metadata
EU_MEMBERS = frozenset(
    {
        *("AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU"),
        *("IE", "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK"),
    }
)


def region_codes(regions: list[str]) -> frozenset[str]:
    """The ``Regions`` codes a creative-stats row may name to be selected ("EU": the region
    code EU and every member state)."""
    codes: set[str] = set()
    for region in regions:
        code = region.strip().upper()
        if code == "EU":
            codes |= EU_MEMBERS | {"EU"}
        elif code:
            codes.add("GR" if code == "EL" else code)
    return frozenset(codes)


def read_bundle(path: Path, regions: list[str]) -> dict[str, Any]:
    """What the spider needs to know of a downloaded bundle: its files, the date Google
    says it was updated, and the selected ads as (ad id, advertiser id, last day shown),
    most recently shown first. ``zipfile.BadZipFile`` or ``ValueError`` if it is not one."""
    wanted = region_codes(regions)
    with zipfile.ZipFile(path) as bundle:
        names = bundle.namelist()
        found: dict[str, Any] = {"files": names, "updated": None, "selected": 0}
        updated = next((n for n in names if n.endswith("google-political-ads-updated.csv")), None)
        if updated is not None:
            with bundle.open(updated) as raw:
                rows = list(csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8-sig")))
            found["updated"] = (rows[0].get("Report_Data_Updated_Date") or None) if rows else None
        member = next((n for n in names if n.rsplit("/", 1)[-1] == CREATIVE_STATS), None)
        if member is None:
            raise ValueError(f"no {CREATIVE_STATS} in the bundle")
        ads: dict[str, tuple[str, str, str]] = {}
        with bundle.open(member) as raw:
            for row in csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")):
                codes = {r.strip().upper() for r in (row.get("Regions") or "").split(",")}
                ad_id = (row.get("Ad_ID") or "").strip()
                if ad_id and codes & wanted and ad_id not in ads:
                    advertiser = (row.get("Advertiser_ID") or "").strip()
                    ads[ad_id] = (ad_id, advertiser, (row.get("Date_Range_End") or "").strip())
    found["selected"] = len(ads)
    found["ads"] = sorted(ads.values(), key=lambda a: (a[2], a[0]), reverse=True)
    return found


class GoogleAdsSpider(PagesSpider):
    """The bundle (streamed, plain HTTP) and creative pages (Chromium)."""

    name = SOURCE_NAME

    def __init__(
        self,
        bundle_url: str = BUNDLE_URL,
        transparency_base: str = TRANSPARENCY_BASE,
        regions: list[str] | None = None,
        render_creatives: bool = True,
        max_creatives: int = 25,
        creative_region: str = "DE",
        obey_robots: Any = True,
        timeout: float = 600.0,
        attempts: int = 4,
        max_bytes: int = 4 << 30,
        **kwargs: Any,
    ) -> None:
        # Not PagesSpider.__init__ (it wants URLs); its browser capture callbacks are reused.
        scrapy.Spider.__init__(self, **kwargs)
        self.bundle_url = bundle_url
        self.transparency_base = transparency_base.rstrip("/")
        self.regions = list(regions or ["EU"])
        self.render_creatives = bool(render_creatives) and int(max_creatives) > 0
        self.max_creatives = int(max_creatives)
        self.creative_region = creative_region
        self.obey_robots = str(obey_robots).lower() not in ("0", "false", "no")
        self.timeout, self.attempts, self.max_bytes = float(timeout), int(attempts), max_bytes
        self.mode = "http"
        self.robots_exchanges: list = []
        self.policy = AddressPolicy()
        self.user_agent: str | None = None
        self.workdir = Path(tempfile.mkdtemp(prefix="evidence-google-ads-"))
        self._open: list[BinaryIO] = []

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> GoogleAdsSpider:
        spider = super(PagesSpider, cls).from_crawler(crawler, *args, **kwargs)
        spider.policy = AddressPolicy.from_settings(crawler.settings)
        spider.user_agent = crawler.settings.get("USER_AGENT")
        if spider.render_creatives:
            from crawlers.browser import BrowserCapture
            from crawlers.chromium import PLAYWRIGHT_HANDLER

            if crawler.settings.getdict("DOWNLOAD_HANDLERS").get("http") != PLAYWRIGHT_HANDLER:
                raise ValueError(
                    "rendering creatives needs the Playwright settings: run the source through "
                    "`evidence crawl google-ads` (or set render_creatives = false)"
                )
            spider.browser = BrowserCapture(crawler.settings)
        return spider

    def closed(self, reason: str) -> None:
        """The bundle's file handles and scratch copy go when the run ends (archived by then)."""
        for handle in self._open:
            handle.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def query(self) -> dict[str, Any]:
        """What the bundle query asks for (the key of its sightings): the regions."""
        return {"regions": sorted({r.strip().upper() for r in self.regions})}

    # -- the bundle ----------------------------------------------------------------------
    async def start(self) -> AsyncIterator[scrapy.Request | PageCapture]:
        capture, found = await self.fetch_bundle()
        yield capture
        if found is None or not self.render_creatives:
            return
        for ad_id, advertiser_id, _ in found["ads"][: self.max_creatives]:
            async for item in self.render(ad_id, advertiser_id):
                yield item

    async def fetch_bundle(self) -> tuple[PageCapture, dict[str, Any] | None]:
        """The bundle, downloaded and described; (its capture, what it holds or None)."""
        client = Client(
            policy=self.policy,
            user_agent=self.user_agent or Client.user_agent,
            timeout=self.timeout,
            attempts=self.attempts,
            max_bytes=self.max_bytes,
        )
        name = urlsplit(self.bundle_url).path.rsplit("/", 1)[-1] or "bundle.zip"
        dest = self.workdir / name
        started = utc_now()
        facts: dict[str, Any] = {"role": "bundle", "regions": self.regions}
        try:
            # Blocking and long (the real bundle is hundreds of megabytes): off the reactor.
            answer = await asyncio.to_thread(client.download, self.bundle_url, dest)
        except DownloadError as exc:
            return failed_capture(self.bundle_url, exc.outcome, str(exc), **{FACTS: facts}), None
        received = utc_now()
        body = dest.open("rb")
        self._open.append(body)
        parts = urlsplit(answer.final_url)
        exchange = Exchange(
            method="GET",
            url=answer.final_url,
            # What crawlers.download sent (http.client adds Host; nothing else is sent).
            request_headers=[
                ("Host", parts.netloc),
                ("User-Agent", client.user_agent),
                ("Accept-Encoding", "identity"),
            ],
            request_body=b"",
            sent_at=started,
            status=answer.status,
            reason=reason_phrase(answer.status),
            response_headers=list(answer.headers.items()),
            body=body,  # a file: the WARC writer streams it
            received_at=received,
            ip=answer.server_ip,
            protocol="HTTP/1.1",
        )
        facts.update(size=answer.size, sha256=answer.sha256, redirects=answer.redirects or None)
        if answer.status == 206:
            # crawlers.download resumed a broken transfer: the file is whole, the last
            # answer was partial content.
            facts["resumed"] = True
        found: dict[str, Any] | None = None
        outcome, error = "archived", None
        try:
            found = await asyncio.to_thread(read_bundle, dest, self.regions)
        except (zipfile.BadZipFile, ValueError, csv.Error, UnicodeDecodeError, EOFError) as exc:
            # Archived all the same (it is what Google served); the records step reports it.
            facts["problem"] = f"{type(exc).__name__}: {exc}"
        else:
            facts.update(
                files=[n.rsplit("/", 1)[-1] for n in found["files"]],
                updated=found["updated"],
                selected_ads=found["selected"],
            )
        block = {
            "platform": PLATFORM,
            "kind": "page",
            "query_key": query_key(SOURCE_NAME, self.query),
            "page": 1,
            "pages": 1,
            "query": self.query,
            "regions": self.query["regions"],
        }
        capture = PageCapture(
            requested_url=self.bundle_url,
            mode="http",
            outcome=outcome,
            started_at=started,
            finished_at=utc_now(),
            exchanges=[exchange],
            final_url=answer.final_url,
            status=answer.status,
            error=error,
            details={ADS_KEY: block, FACTS: {k: v for k, v in facts.items() if v is not None}},
        )
        return capture, found

    # -- creative pages ------------------------------------------------------------------
    def creative_url(self, advertiser_id: str, ad_id: str) -> str:
        """The ad's page in the Ads Transparency Center, seen from ``creative_region``."""
        return (
            f"{self.transparency_base}/advertiser/{advertiser_id}/creative/{ad_id}"
            f"?region={self.creative_region}"
        )

    async def render(self, ad_id: str, advertiser_id: str) -> AsyncIterator[Any]:
        """A request that renders the ad's creative page in Chromium."""
        url = self.creative_url(advertiser_id, ad_id)
        facts = {"role": "creative", "ad_id": ad_id, "advertiser_id": advertiser_id}
        refused = url_problem(url, policy=self.policy)
        if refused is not None:
            yield failed_capture(refused.url, refused.outcome, refused.message, **{FACTS: facts})
            return
        request = self.make_browser_request(url, await self.browser.contexts.acquire())
        request.meta[CREATIVE_META] = facts
        yield request.replace(callback=self.parse_creative, errback=self.failed_creative)

    async def parse_creative(self, response: Response) -> AsyncIterator[PageCapture]:
        """The rendered page, labelled as the ad's creative when it is one."""
        facts = dict(response.meta[CREATIVE_META])
        async for capture in super().parse_browser(response):
            capture.details[FACTS] = facts
            if capture.status is not None and capture.status >= 400:
                capture.outcome = "http-error"
                capture.error = f"the Ads Transparency Center answered {capture.status}"
            elif capture.outcome == "archived":
                capture.details[ADS_KEY] = {
                    "platform": PLATFORM,
                    "kind": "creative",
                    "ad_id": facts["ad_id"],
                }
            yield capture

    async def failed_creative(self, failure: Failure) -> AsyncIterator[PageCapture]:
        """A creative page Chromium could not load: what it recorded, labelled."""
        facts = dict(failure.request.meta[CREATIVE_META])  # type: ignore[attr-defined]
        async for capture in super().failed_browser(failure):
            capture.details[FACTS] = facts
            yield capture


class GoogleAdsSettings(SourceSettings):
    """The `google-ads` source: where the bundle and the creative pages are, which regions."""

    bundle_url: str = Field(
        default=BUNDLE_URL, description="the political-ads transparency bundle (a zip of CSVs)"
    )
    transparency_base: str = Field(
        default=TRANSPARENCY_BASE,
        description="the Ads Transparency Center (creative pages under /advertiser/…/creative/…)",
    )
    regions: list[str] = Field(
        default_factory=lambda: ["EU"],
        description="ads whose Regions name one of these become records: EU (every member "
        "state) or country codes; -a region=DE",
    )
    render_creatives: bool = Field(
        default=True, description="render the selected ads' creative pages in Chromium"
    )
    max_creatives: int = Field(
        default=25, ge=0, description="creative pages rendered per run (most recent ads first)"
    )
    creative_region: str = Field(
        default="DE", description="the region= the creative pages are viewed from"
    )
    obey_robots: bool = Field(
        default=True, description="obey robots.txt for creative pages (archived either way)"
    )
    timeout: float = Field(
        default=600, ge=1, le=86_400, description="seconds allowed per request (the bundle)"
    )
    attempts: int = Field(default=4, ge=1, le=20, description="tries of a failing bundle download")
    max_bytes: int = Field(
        default=4 << 30, ge=1024, description="largest bundle accepted, in bytes"
    )

    @field_validator("bundle_url", "transparency_base")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.rstrip("/") if not parts.path.endswith(".zip") else value

    @field_validator("regions")
    @classmethod
    def _regions(cls, value: list[str]) -> list[str]:
        import re

        codes = [v.strip().upper() for v in value if v.strip()]
        for code in codes:
            if not re.fullmatch(r"[A-Z]{2}", code):
                raise ValueError(f"{code!r} is not a region code (EU, or a country such as DE)")
        if not codes:
            raise ValueError("give at least one region (EU, or a country code such as DE)")
        return list(dict.fromkeys(codes))

    @field_validator("creative_region")
    @classmethod
    def _creative_region(cls, value: str) -> str:
        code = value.strip().upper()
        if len(code) != 2 or not code.isalpha():
            raise ValueError(f"{value!r} is not a country code (e.g. DE)")
        return code

    def uses_browser(self, default: bool) -> bool:
        return self.render_creatives and self.max_creatives > 0

    def scrapy_settings(self) -> dict[str, Any]:
        # The browser's page loads use Scrapy's timeout; the bundle its own (crawlers.download).
        return super().scrapy_settings() | {"DOWNLOAD_TIMEOUT": min(self.timeout, 120)}

    def spider_arguments(self) -> dict[str, Any]:
        return self.model_dump(exclude=set(SourceSettings.model_fields))


SOURCE = SourceSpec(
    name=SOURCE_NAME,
    kind="api",
    description="Google political ads: the transparency bundle (zip of CSVs, streamed and "
    "archived; EU rows normalised) and Ads Transparency Center creative pages in Chromium",
    settings=GoogleAdsSettings,
    collection="ads-google",
    timestamp_mode="merkle",
    browser=True,
    spider=GoogleAdsSpider,
    records="records.ads.parse:parse_run",
)
