"""`meta-ads`: political and issue ads from Meta's Ad Library API, archived page by page.

One query per search term (or one without a term), each ``GET {api_base}/ads_archive`` with
``ad_reached_countries``, ``ad_type``, ``ad_active_status``, the delivery dates, ``fields``
and ``limit``, paged by ``paging.cursors.after`` until a page has no ``paging.next`` or no
ads. Every answer is archived as its own snapshot (plain HTTP, WARC) before anything is
parsed: the throttled answers of a page (error codes 4, 17, 32, 613, HTTP 429) sit in the same
WARC before the answer that was used, and the waits are listed under ``attempts``. The
capture metadata's ``ads`` block says what the snapshot is for ``records.ads.parse``.

The access token travels in the query string, as Meta requires. The archive redacts it from
URLs and headers; Meta also echoes it in the body (``ad_snapshot_url``, ``paging.next``), so
every body is scrubbed of it before it is archived (``redacted_body`` in the metadata). A
refused or expired token (error 190) ends the run with the outcome ``auth-failed``.

With ``render_creatives`` (default), the ad's snapshot page (``ad_snapshot_url``, a page
that draws the creative with JavaScript) is rendered by Chromium, at most ``max_creatives``
per run, and archived as a snapshot with ``ads`` kind ``creative``. Meta serves that page
only with the token, so it is requested with it; the token is then removed from everything
kept: URLs and headers by the archive, the DOM by the browser capture, and the exchange
bodies (the page's script embeds the token) and the details here. A screenshot or PDF that
would show the token is withheld.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import date
from typing import Any, Literal
from urllib.parse import parse_qs, urlencode, urlsplit

import scrapy
from pydantic import Field, SecretStr, field_validator
from scrapy.crawler import Crawler
from scrapy.http import Response
from twisted.python.failure import Failure

from crawlers.items import PageCapture
from crawlers.spiders.adlib import (
    ADS_KEY,
    API_ERROR,
    AUTH_FAILED,
    RATE_LIMITED,
    ApiClient,
    Fetched,
    Verdict,
    api_capture,
    failed_capture,
    guarded,
    items_settled,
    json_of,
    query_key,
    retry_after,
    scrub_capture,
)
from crawlers.spiders.pages import REQUESTED, PagesSpider
from crawlers.urls import AddressPolicy, url_problem
from schemas import SourceSettings, SourceSpec, utc_now

SOURCE_NAME = "meta-ads"
PLATFORM = "meta"
API_BASE = "https://graph.facebook.com/v23.0"
TOKEN_ENV = "EVIDENCE_SOURCES__META_ADS__ACCESS_TOKEN"
CREATIVE_META = "evidence_meta_creative"  # request.meta: the ad whose snapshot page this is
SECRET_PARAMS = ("access_token",)

DEFAULT_FIELDS = [
    "id",
    "ad_creation_time",
    "ad_creative_bodies",
    "ad_creative_link_captions",
    "ad_creative_link_descriptions",
    "ad_creative_link_titles",
    "ad_delivery_start_time",
    "ad_delivery_stop_time",
    "ad_snapshot_url",
    "age_country_gender_reach_breakdown",
    "beneficiary_payers",
    "bylines",
    "currency",
    "delivery_by_region",
    "demographic_distribution",
    "estimated_audience_size",
    "eu_total_reach",
    "impressions",
    "languages",
    "page_id",
    "page_name",
    "publisher_platforms",
    "spend",
    "target_ages",
    "target_gender",
    "target_locations",
]
# Graph API error codes (developers.facebook.com/docs/graph-api/overview/rate-limiting):
# 4 app, 17 user, 32 page, 613 custom rate limits, 80000-80014 business use case limits.
RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, *range(80000, 80015)})
TRANSIENT_CODES = frozenset({1, 2})  # "unknown error", "service temporarily unavailable"
AUTH_CODES = frozenset({102, 104, 190})  # session, missing token, invalid or expired token
USAGE_HEADERS = ("X-Business-Use-Case-Usage", "X-App-Usage", "X-Ad-Account-Usage")
_USAGE_KEYS = ("call_count", "total_cputime", "total_time", "acc_id_util_pct")


def usage_of(response: Response) -> tuple[float, float, str | None]:
    """(highest usage in percent, minutes until access is regained, header) of Meta's
    throttling headers; (0, 0, None) without them."""
    highest, regain, where = 0.0, 0.0, None
    for name in USAGE_HEADERS:
        raw = response.headers.get(name)
        data = json_of(raw) if raw else None
        if data is None:
            continue
        # X-App-Usage is one object; the business use case header maps ids to lists of them.
        entries: list[Any] = [data]
        if isinstance(data, dict) and not any(k in data for k in _USAGE_KEYS):
            entries = [e for v in data.values() for e in (v if isinstance(v, list) else [v])]
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            for key in _USAGE_KEYS:
                value = _number(entry.get(key))
                if value is not None and value > highest:
                    highest, where = value, name
            minutes = _number(entry.get("estimated_time_to_regain_access"))
            if minutes and minutes > regain:
                regain, where = minutes, name
    return highest, regain, where


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def meta_error(response: Response) -> dict[str, Any]:
    """The ``error`` object of a Graph API answer ({} if there is none)."""
    data = json_of(response.body)
    error = data.get("error") if isinstance(data, dict) else None
    return error if isinstance(error, dict) else {}


def describe_error(response: Response, error: dict[str, Any]) -> str:
    code, sub = error.get("code"), error.get("error_subcode")
    label = f"error {code}" + (f"/{sub}" if sub is not None else "") if code is not None else ""
    message = str(error.get("message") or "").strip() or f"HTTP {response.status}"
    return f"HTTP {response.status} {label}: {message}".replace("  ", " ")


class MetaAdsSpider(PagesSpider):
    """Ad Library API pages (plain HTTP) and the ads' snapshot pages (Chromium)."""

    name = SOURCE_NAME

    def __init__(
        self,
        api_base: str = API_BASE,
        access_token: SecretStr | str | None = None,
        countries: list[str] | None = None,
        search_terms: list[str] | None = None,
        search_page_ids: list[str] | None = None,
        search_type: str | None = None,
        ad_type: str = "POLITICAL_AND_ISSUE_ADS",
        ad_active_status: str = "ALL",
        date_min: date | str | None = None,
        date_max: date | str | None = None,
        fields: list[str] | None = None,
        limit: int = 100,
        render_creatives: bool = True,
        max_creatives: int = 50,
        backoff: float = 30.0,
        max_wait: float = 3600.0,
        max_retries: int = 8,
        throttle_at: float = 90.0,
        **kwargs: Any,
    ) -> None:
        # Not PagesSpider.__init__ (it wants URLs); its browser capture callbacks are reused.
        scrapy.Spider.__init__(self, **kwargs)
        if isinstance(access_token, SecretStr):
            access_token = access_token.get_secret_value()
        self.token = access_token or None
        self.api_base = api_base.rstrip("/")
        self.countries = list(countries or ["DE"])
        self.search_terms = list(search_terms or [])
        self.search_page_ids = list(search_page_ids or [])
        self.search_type = search_type
        self.ad_type = ad_type
        self.ad_active_status = ad_active_status
        self.date_min = str(date_min) if date_min else None
        self.date_max = str(date_max) if date_max else None
        self.fields = list(fields or DEFAULT_FIELDS)
        self.limit = int(limit)
        self.render_creatives = bool(render_creatives) and int(max_creatives) > 0
        self.max_creatives = int(max_creatives)
        self.backoff, self.max_wait = float(backoff), float(max_wait)
        self.max_retries, self.throttle_at = int(max_retries), float(throttle_at)
        self.mode = "http"
        self.obey_robots = False  # an API under Meta's terms, not pages for crawlers
        self.robots_exchanges: list = []
        self.policy = AddressPolicy()
        self.client: ApiClient | None = None
        self.rendered: set[str] = set()  # ads whose snapshot page was asked for in this run
        self.token_refused = False

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> MetaAdsSpider:
        spider = super(PagesSpider, cls).from_crawler(crawler, *args, **kwargs)
        spider.policy = AddressPolicy.from_settings(crawler.settings)
        spider.client = ApiClient(
            spider,
            backoff=spider.backoff,
            max_wait=spider.max_wait,
            max_retries=spider.max_retries,
        )
        if spider.render_creatives:
            from crawlers.browser import BrowserCapture
            from crawlers.chromium import PLAYWRIGHT_HANDLER

            if crawler.settings.getdict("DOWNLOAD_HANDLERS").get("http") != PLAYWRIGHT_HANDLER:
                raise ValueError(
                    "rendering creatives needs the Playwright settings: run the source through "
                    "`evidence crawl meta-ads` (or set render_creatives = false)"
                )
            spider.browser = BrowserCapture(crawler.settings)
        return spider

    # -- queries -----------------------------------------------------------------------------
    def queries(self) -> list[dict[str, Any]]:
        """What each query asks for: the parameters its sightings are keyed by (no token)."""
        found = []
        for term in self.search_terms or [None]:
            query: dict[str, Any] = {
                "countries": sorted(self.countries),
                "ad_type": self.ad_type,
                "ad_active_status": self.ad_active_status,
                "search_terms": term,
                "search_page_ids": sorted(self.search_page_ids) or None,
                "search_type": self.search_type if term else None,
                "date_min": self.date_min,
                "date_max": self.date_max,
            }
            found.append({k: v for k, v in query.items() if v is not None})
        return found

    def page_url(self, query: dict[str, Any], after: str | None = None) -> str:
        """The ads_archive URL of a query's page (the token last, as a parameter)."""
        params: dict[str, Any] = {
            "ad_reached_countries": json.dumps(query["countries"]),
            "ad_type": query["ad_type"],
            "ad_active_status": query["ad_active_status"],
        }
        if "search_terms" in query:
            params["search_terms"] = query["search_terms"]
        if "search_type" in query:
            params["search_type"] = query["search_type"]
        if "search_page_ids" in query:
            params["search_page_ids"] = json.dumps(query["search_page_ids"])
        if "date_min" in query:
            params["ad_delivery_date_min"] = query["date_min"]
        if "date_max" in query:
            params["ad_delivery_date_max"] = query["date_max"]
        params["fields"] = ",".join(self.fields)
        params["limit"] = str(self.limit)
        if after:
            params["after"] = after
        params["access_token"] = self.token or ""
        return f"{self.api_base}/ads_archive?{urlencode(params)}"

    @property
    def secrets(self) -> dict[str, str]:
        return {"access_token": self.token} if self.token else {}

    def redacted(self, url: str) -> str:
        """``url`` with the token's value replaced (for outcomes and request labels)."""
        capture = failed_capture(url, "", "")
        scrub_capture(capture, self.secrets, query_params=SECRET_PARAMS)
        return capture.requested_url

    async def start(self) -> AsyncIterator[scrapy.Request | PageCapture]:
        async for item in self.queries_run():
            yield item
        await items_settled(self)

    async def queries_run(self) -> AsyncIterator[scrapy.Request | PageCapture]:
        """Every query, page by page, and the creatives of their ads."""
        endpoint = f"{self.api_base}/ads_archive"
        if not self.token:
            yield failed_capture(
                endpoint,
                AUTH_FAILED,
                f"no access token for meta-ads: set [sources.meta-ads] access_token in "
                f"evidence.toml or {TOKEN_ENV}",
            )
            return
        refused = url_problem(endpoint, policy=self.policy)
        if refused is not None:
            yield failed_capture(refused.url, refused.outcome, refused.message)
            return
        for query in self.queries():
            if self.token_refused:
                break
            label = self.redacted(self.page_url(query))
            async for item in guarded(self.run_query(query), label, self.secrets):
                yield item

    async def run_query(self, query: dict[str, Any]) -> AsyncIterator[Any]:
        """Every page of one query, each archived as a snapshot; then its snapshot pages."""
        assert self.client is not None
        key = query_key(SOURCE_NAME, query)
        after: str | None = None
        page = 0
        while True:
            page += 1
            url = self.page_url(query, after)
            label = self.redacted(url)
            started = utc_now()
            request = scrapy.Request(
                url,
                headers={"Accept": "application/json", "Accept-Encoding": "identity"},
                meta={REQUESTED: label},
            )
            fetched = await self.client.fetch(request, self.classify)
            facts = {"query": query, "page": page}
            if not fetched.ok:
                yield self._failed_page(fetched, label, started, facts)
                return
            assert fetched.response is not None
            data = json_of(fetched.response.body)
            ads = data.get("data") if isinstance(data, dict) else None
            block: dict[str, Any] = {
                "platform": PLATFORM,
                "kind": "page",
                "query_key": key,
                "page": page,
                "query": query,
            }
            if not isinstance(ads, list):
                # Archived as it came; the records step reports it unparseable. Without a
                # cursor the query cannot go on, and without "pages" nothing reads as removed.
                yield api_capture(
                    fetched,
                    url=label,
                    started_at=started,
                    ads=block,
                    secrets=self.secrets,
                    query_params=SECRET_PARAMS,
                    details={"meta_ads": facts | {"stopped": "the page is not an ads list"}},
                )
                return
            after = _next_cursor(data) if ads else None
            if after is None:
                block["pages"] = page
            yield api_capture(
                fetched,
                url=label,
                started_at=started,
                ads=block,
                secrets=self.secrets,
                query_params=SECRET_PARAMS,
                details={"meta_ads": facts | {"ads": len(ads)}},
            )
            for ad in ads:
                async for item in self.render(ad):
                    yield item
            if after is None:
                return

    def _failed_page(
        self, fetched: Fetched, label: str, started: Any, facts: dict[str, Any]
    ) -> PageCapture:
        verdict = fetched.verdict
        if fetched.response is None:  # the network failed: whatever was exchanged before
            outcome = fetched.outcome or "failed"
            if not fetched.exchanges:
                return failed_capture(label, outcome, verdict.message, meta_ads=facts)
            return api_capture(
                fetched,
                url=label,
                started_at=started,
                ads=None,
                secrets=self.secrets,
                query_params=SECRET_PARAMS,
                outcome=outcome,
                error=verdict.message,
                details={"meta_ads": facts},
            )
        if verdict.kind == "auth":
            # Nothing of the ads in it, and the run cannot go on: an outcome, not a snapshot.
            self.token_refused = True
            message = (
                f"Meta refused the access token ({verdict.message}); renew it in "
                f"[sources.meta-ads] access_token or {TOKEN_ENV}"
            )
            capture = failed_capture(label, AUTH_FAILED, message, meta_ads=facts)
            scrub_capture(capture, self.secrets, query_params=SECRET_PARAMS)
            return capture
        outcome = RATE_LIMITED if verdict.kind == "retry" else API_ERROR
        # The refusals are evidence (of what the library answered and when): archived, but
        # without an ``ads`` block there is nothing for the records step to parse.
        return api_capture(
            fetched,
            url=label,
            started_at=started,
            ads=None,
            secrets=self.secrets,
            query_params=SECRET_PARAMS,
            outcome=outcome,
            error=verdict.message,
            details={"meta_ads": facts},
        )

    def classify(self, response: Response) -> Verdict:
        """What a Graph API answer means: ok (perhaps with a pause), retry, auth or error."""
        highest, regain, header = usage_of(response)
        if 200 <= response.status < 300:
            if regain > 0:
                return Verdict(
                    "ok", f"{header}: access regained in {regain:g} min", None, regain * 60
                )
            if highest >= self.throttle_at:
                return Verdict(
                    "ok", f"{header}: {highest:g}% of the limit used", None, self.backoff
                )
            return Verdict("ok")
        error = meta_error(response)
        message = describe_error(response, error)
        try:
            code = int(error.get("code")) if error.get("code") is not None else None
        except (TypeError, ValueError):
            code = None
        if code in AUTH_CODES or response.status == 401:
            return Verdict("auth", message)
        if code in RATE_LIMIT_CODES or response.status == 429:
            hint = retry_after(response.headers.get("Retry-After"))
            wait = max(hint or 0.0, regain * 60) or None
            return Verdict("retry", message, wait)
        if error.get("is_transient") or code in TRANSIENT_CODES or response.status >= 500:
            return Verdict("retry", message, retry_after(response.headers.get("Retry-After")))
        return Verdict("error", message)

    # -- creatives ---------------------------------------------------------------------------
    async def render(self, ad: Any) -> AsyncIterator[Any]:
        """A request that renders the ad's snapshot page, within the run's budget."""
        if not self.render_creatives or self.browser is None or not isinstance(ad, dict):
            return
        ad_id, url = str(ad.get("id") or ""), ad.get("ad_snapshot_url")
        if not ad_id or not isinstance(url, str) or ad_id in self.rendered:
            return
        if len(self.rendered) >= self.max_creatives:
            return
        self.rendered.add(ad_id)
        block = {"platform": PLATFORM, "kind": "creative", "ad_id": ad_id}
        refused = url_problem(url, policy=self.policy)
        if refused is not None:
            capture = failed_capture(refused.url, refused.outcome, refused.message)
            capture.details[ADS_KEY] = block
            scrub_capture(capture, self.secrets, query_params=SECRET_PARAMS)
            yield capture
            return
        request = self.make_browser_request(url, await self.browser.contexts.acquire())
        request.meta[REQUESTED] = self.redacted(url)
        request.meta[CREATIVE_META] = block
        request.meta["dont_obey_robotstxt"] = True
        yield request.replace(callback=self.parse_creative, errback=self.failed_creative)

    async def parse_creative(self, response: Response) -> AsyncIterator[PageCapture]:
        """The rendered snapshot page, scrubbed of the token, labelled as the ad's creative."""
        block = response.meta[CREATIVE_META]
        async for capture in super().parse_browser(response):
            yield self._creative(capture, block)

    async def failed_creative(self, failure: Failure) -> AsyncIterator[PageCapture]:
        """A snapshot page Chromium could not load: what it recorded, scrubbed."""
        block = failure.request.meta[CREATIVE_META]  # type: ignore[attr-defined]
        async for capture in super().failed_browser(failure):
            yield self._creative(capture, block)

    def _creative(self, capture: PageCapture, block: dict[str, Any]) -> PageCapture:
        names = scrub_capture(capture, self.secrets, query_params=SECRET_PARAMS)
        if names:
            capture.details["redacted_body"] = names
        capture.details[ADS_KEY] = dict(block)
        return capture


def _next_cursor(data: dict[str, Any]) -> str | None:
    """The cursor of the next page: only when the answer names a next page."""
    paging = data.get("paging")
    if not isinstance(paging, dict) or not paging.get("next"):
        return None
    cursors = paging.get("cursors")
    after = cursors.get("after") if isinstance(cursors, dict) else None
    if after:
        return str(after)
    # Some answers give the next URL only: its `after` parameter is the cursor.
    values = parse_qs(urlsplit(str(paging["next"])).query).get("after")
    return values[0] if values else None


COUNTRY = r"^(?:[A-Z]{2}|ALL)$"


class MetaAdsSettings(SourceSettings):
    """The `meta-ads` source: the Ad Library API query, the token, creatives, rate limits."""

    api_base: str = Field(
        default=API_BASE, description="the Graph API with its version (ads_archive is below it)"
    )
    access_token: SecretStr | None = Field(
        default=None,
        description=f"Ad Library API access token (evidence.toml or {TOKEN_ENV} only)",
    )
    countries: list[str] = Field(
        default_factory=lambda: ["DE"],
        description="ad_reached_countries: ISO country codes (or ALL); -a country=DE",
    )
    search_terms: list[str] = Field(
        default_factory=list,
        description="one query per term (search_terms); none: every ad of the countries",
    )
    search_page_ids: list[str] = Field(
        default_factory=list, description="search_page_ids: up to 10 page ids, in every query"
    )
    search_type: Literal["KEYWORD_UNORDERED", "KEYWORD_EXACT_PHRASE"] | None = Field(
        default=None, description="how search terms match (Meta's default: KEYWORD_UNORDERED)"
    )
    ad_type: Literal[
        "POLITICAL_AND_ISSUE_ADS",
        "ALL",
        "EMPLOYMENT_ADS",
        "FINANCIAL_PRODUCTS_AND_SERVICES_ADS",
        "HOUSING_ADS",
    ] = Field(default="POLITICAL_AND_ISSUE_ADS", description="ad_type")
    ad_active_status: Literal["ALL", "ACTIVE", "INACTIVE"] = Field(
        default="ALL", description="ad_active_status"
    )
    date_min: date | None = Field(default=None, description="ad_delivery_date_min (YYYY-MM-DD)")
    date_max: date | None = Field(default=None, description="ad_delivery_date_max (YYYY-MM-DD)")
    fields: list[str] = Field(
        default_factory=lambda: list(DEFAULT_FIELDS),
        description="fields asked for (default: every field, the EU ones included)",
    )
    limit: int = Field(default=100, ge=1, le=1000, description="ads per page")
    render_creatives: bool = Field(
        default=True, description="render each ad's snapshot page in Chromium and archive it"
    )
    max_creatives: int = Field(default=50, ge=0, description="snapshot pages rendered per run")
    backoff: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="seconds to wait after a rate-limit answer without a hint, doubled per try",
    )
    max_wait: float = Field(default=3600.0, gt=0, description="longest single wait, seconds")
    max_retries: int = Field(
        default=8, ge=0, le=100, description="repetitions of a rate-limited or failed request"
    )
    throttle_at: float = Field(
        default=90.0,
        gt=0,
        le=100,
        description="pause before the next request when a usage header reaches this percent",
    )
    timeout: float = Field(default=60, ge=1, le=3600, description="seconds allowed per request")

    @field_validator("countries")
    @classmethod
    def _countries(cls, value: list[str]) -> list[str]:
        import re

        codes = [c.strip().upper() for c in value if c.strip()]
        for code in codes:
            if not re.match(COUNTRY, code):
                raise ValueError(f"{code!r} is not an ISO 3166 country code (e.g. DE) or ALL")
        if not codes:
            raise ValueError("give at least one country (ad_reached_countries is required)")
        return list(dict.fromkeys(codes))

    @field_validator("search_page_ids")
    @classmethod
    def _page_ids(cls, value: list[str]) -> list[str]:
        ids = [str(v).strip() for v in value if str(v).strip()]
        if len(ids) > 10:
            raise ValueError("Meta takes at most 10 search_page_ids")
        for page_id in ids:
            if not page_id.isdigit():
                raise ValueError(f"page id {page_id!r} is not a number")
        return ids

    @field_validator("api_base")
    @classmethod
    def _api_base(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("http", "https"):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.rstrip("/")

    def uses_browser(self, default: bool) -> bool:
        return self.render_creatives and self.max_creatives > 0

    def scrapy_settings(self) -> dict[str, Any]:
        return super().scrapy_settings() | {"DOWNLOAD_TIMEOUT": self.timeout}

    def spider_arguments(self) -> dict[str, Any]:
        values = self.model_dump(exclude=set(SourceSettings.model_fields) | {"timeout"})
        values["access_token"] = self.access_token  # a SecretStr, opened by the spider only
        return values


SOURCE = SourceSpec(
    name=SOURCE_NAME,
    kind="api",
    description="Meta Ad Library API (ads_archive): political and issue ads with spend, reach, "
    "EU targeting and payers, page by page; creatives rendered in Chromium",
    settings=MetaAdsSettings,
    collection="ads-meta",
    timestamp_mode="merkle",
    browser=True,
    spider=MetaAdsSpider,
    records="records.ads.parse:parse_run",
)
