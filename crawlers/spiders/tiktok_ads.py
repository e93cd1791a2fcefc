"""`tiktok-ads`: ads from TikTok's Commercial Content Library API, archived page by page.

Authentication: a client access token from ``POST {token_url}`` (``client_key`` and
``client_secret``, ``grant_type=client_credentials``), sent as ``Authorization: Bearer``.
The token request is not archived (it holds nothing but credentials); a token the API stops
accepting (``access_token_invalid``, or past its ``expires_in``) is replaced once, and a
run whose new token is refused too ends with the outcome ``auth-failed``.

One query per country and search term: ``POST {api_base}/v2/research/adlib/ad/query/`` with
``fields`` in the query string and the filters in the JSON body (``ad_published_date_range``
as YYYYMMDD, ``country_code``, ``advertiser_business_ids``; ``search_term`` and
``search_type`` beside them), ``max_count`` up to 50, paged by sending back ``search_id``
until ``has_more`` is false (``true``, ``"true"`` and ``1`` all mean more). For the ads of
each page (at most ``max_details`` a run), ``POST /v2/research/adlib/ad/detail/`` gives the
targeting and the reach by country. A page's answer and its ads' detail answers are archived
together as one snapshot (one WARC), before anything is parsed; its ``ads`` block lists the
ads whose detail is in it (``details``), so that the records step takes those ads from their
detail and the others from the page. 429 answers are waited out (``Retry-After``).

Client key, secret and every token of the run are scrubbed from everything archived.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit

import scrapy
from pydantic import Field, SecretStr, field_validator
from scrapy.crawler import Crawler
from scrapy.http import Response

from crawlers.items import PageCapture
from crawlers.middlewares import EXCHANGES
from crawlers.spiders.adlib import (
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
from crawlers.spiders.pages import REQUESTED
from crawlers.urls import AddressPolicy, url_problem
from schemas import SourceSettings, SourceSpec, utc_now

SOURCE_NAME = "tiktok-ads"
PLATFORM = "tiktok"
API_BASE = "https://open.tiktokapis.com"
TOKEN_PATH = "/v2/oauth/token/"
QUERY_PATH = "/v2/research/adlib/ad/query/"
DETAIL_PATH = "/v2/research/adlib/ad/detail/"
ENV = "EVIDENCE_SOURCES__TIKTOK_ADS__"
EARLIEST = date(2022, 10, 1)  # the library's first day ("min" must be after 2022-10-01)

QUERY_FIELDS = [
    "ad.id",
    "ad.first_shown_date",
    "ad.last_shown_date",
    "ad.status",
    "ad.status_statement",
    "ad.videos",
    "ad.image_urls",
    "ad.reach",
    "advertiser.business_id",
    "advertiser.business_name",
    "advertiser.paid_for_by",
]
DETAIL_FIELDS = [
    *QUERY_FIELDS,
    "ad.title",
    "ad.external_url",
    "ad.call_to_action",
    "ad.advertising_objective",
    "advertiser.follower_count",
    "advertiser.avatar_url",
    "advertiser.profile_url",
    "ad_group.targeting_info",
]
AUTH_CODES = frozenset(
    {"access_token_invalid", "access_token_expired", "invalid_token", "token_expired"}
)
RATE_CODES = frozenset({"rate_limit_exceeded", "daily_quota_limit_exceeded", "too_many_requests"})
TRANSIENT_CODES = frozenset({"internal_error", "service_unavailable", "timeout"})


def truthy(value: Any) -> bool:
    """``has_more`` as the API writes it: true, "true", 1, "1" (and "false", 0, ...)."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def tiktok_error(response: Response) -> dict[str, Any]:
    """The ``error`` object of an answer ({} if none); OAuth errors are flat strings."""
    data = json_of(response.body)
    if not isinstance(data, dict):
        return {}
    error = data.get("error")
    if isinstance(error, dict):
        return error
    if isinstance(error, str):  # /v2/oauth/token/: {"error": "invalid_client", ...}
        return {"code": error, "message": data.get("error_description") or ""}
    return {}


class TikTokAdsSpider(scrapy.Spider):
    """Query pages and their ads' details, one snapshot per page (plain HTTP)."""

    name = SOURCE_NAME

    def __init__(
        self,
        api_base: str = API_BASE,
        token_url: str | None = None,
        client_key: SecretStr | str | None = None,
        client_secret: SecretStr | str | None = None,
        countries: list[str] | None = None,
        search_terms: list[str] | None = None,
        search_type: str | None = None,
        advertiser_business_ids: list[str] | None = None,
        date_min: date | str = EARLIEST,
        date_max: date | str | None = None,
        max_count: int = 50,
        details: bool = True,
        max_details: int | None = 1000,
        backoff: float = 30.0,
        max_wait: float = 3600.0,
        max_retries: int = 8,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.api_base = api_base.rstrip("/")
        self.token_url = token_url or f"{self.api_base}{TOKEN_PATH}"
        self.client_key = _secret(client_key)
        self.client_secret = _secret(client_secret)
        self.countries = list(countries or ["DE"])
        self.search_terms = list(search_terms or [])
        self.search_type = search_type
        self.business_ids = [str(b) for b in advertiser_business_ids or []]
        self.date_min = str(date_min)
        self.date_max = str(date_max) if date_max else None
        self.max_count = int(max_count)
        self.details = bool(details)
        self.detail_budget = None if max_details is None else int(max_details)
        self.backoff, self.max_wait = float(backoff), float(max_wait)
        self.max_retries = int(max_retries)
        self.policy = AddressPolicy()
        self.client: ApiClient | None = None
        self.token: str | None = None
        self.tokens: list[str] = []  # every token of the run: all scrubbed
        self.token_expires = 0.0
        self.generation = 0
        self.refused: str | None = None  # why the API stopped accepting us

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> TikTokAdsSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        spider.policy = AddressPolicy.from_settings(crawler.settings)
        spider.client = ApiClient(
            spider,
            backoff=spider.backoff,
            max_wait=spider.max_wait,
            max_retries=spider.max_retries,
        )
        return spider

    @property
    def secrets(self) -> dict[str, str]:
        found = {f"access_token_{n}": t for n, t in enumerate(self.tokens, 1)}
        if self.client_key:
            found["client_key"] = self.client_key
        if self.client_secret:
            found["client_secret"] = self.client_secret
        return found

    # -- queries -----------------------------------------------------------------------------
    def queries(self) -> list[dict[str, Any]]:
        """What each query asks for: the parameters its sightings are keyed by."""
        found = []
        for country in self.countries:
            for term in self.search_terms or [None]:
                query: dict[str, Any] = {
                    "country": country,
                    "search_term": term,
                    "search_type": self.search_type if term else None,
                    "advertiser_business_ids": sorted(self.business_ids) or None,
                    "date_min": self.date_min,
                    # "today" rather than the date: the same query on another day keeps its key
                    "date_max": self.date_max or "today",
                }
                found.append({k: v for k, v in query.items() if v is not None})
        return found

    def query_body(self, query: dict[str, Any], search_id: str | None) -> dict[str, Any]:
        """The JSON body of a query page."""
        high = query["date_max"]
        if high == "today":
            high = datetime.now(UTC).date().isoformat()
        filters: dict[str, Any] = {
            "ad_published_date_range": {
                "min": query["date_min"].replace("-", ""),
                "max": high.replace("-", ""),
            },
            "country_code": query["country"],
        }
        if "advertiser_business_ids" in query:
            filters["advertiser_business_ids"] = [int(b) for b in query["advertiser_business_ids"]]
        body: dict[str, Any] = {"filters": filters, "max_count": self.max_count}
        if "search_term" in query:
            body["search_term"] = query["search_term"]
        if "search_type" in query:
            body["search_type"] = query["search_type"]
        if search_id:
            body["search_id"] = search_id
        return body

    async def start(self) -> AsyncIterator[scrapy.Request | PageCapture]:
        async for item in self.queries_run():
            yield item
        await items_settled(self)

    async def queries_run(self) -> AsyncIterator[scrapy.Request | PageCapture]:
        """The token, then every query page by page with its ads' details."""
        query_url = f"{self.api_base}{QUERY_PATH}"
        if not self.client_key or not self.client_secret:
            yield failed_capture(
                query_url,
                AUTH_FAILED,
                "no client credentials for tiktok-ads: set [sources.tiktok-ads] client_key and "
                f"client_secret in evidence.toml or {ENV}CLIENT_KEY and {ENV}CLIENT_SECRET",
            )
            return
        for url in (query_url, self.token_url):
            refused = url_problem(url, policy=self.policy)
            if refused is not None:
                yield failed_capture(refused.url, refused.outcome, refused.message)
                return
        if not await self.renew_token():
            yield self._auth_failed(self.token_url)
            return
        for query in self.queries():
            if self.refused:
                break
            label = f"{query_url}#{urlencode(query, doseq=True)}"
            async for item in guarded(self.run_query(query), label, self.secrets):
                yield item

    async def run_query(self, query: dict[str, Any]) -> AsyncIterator[PageCapture]:
        """Every page of one query with its ads' details, each page one snapshot."""
        key = query_key(SOURCE_NAME, query)
        url = f"{self.api_base}{QUERY_PATH}?{urlencode({'fields': ','.join(QUERY_FIELDS)})}"
        search_id: str | None = None
        page = 0
        while True:
            page += 1
            started = utc_now()
            exchanges: list[Any] = []
            fetched = await self.call(url, self.query_body(query, search_id), exchanges)
            facts: dict[str, Any] = {"query": query, "page": page}
            if not fetched.ok:
                yield self._failed_page(fetched, url, started, facts)
                return
            assert fetched.response is not None
            answer = json_of(fetched.response.body)
            data = answer.get("data") if isinstance(answer, dict) else None
            ads = data.get("ads") if isinstance(data, dict) else None
            block: dict[str, Any] = {
                "platform": PLATFORM,
                "kind": "page",
                "query_key": key,
                "page": page,
                "query": query,
            }
            if not isinstance(ads, list):
                # Archived as it came; the records step reports it unparseable. Without a
                # search_id the query cannot go on, and without "pages" nothing is removed.
                yield self._page(fetched, url, started, block, facts, "the page is no ads list")
                return
            more = truthy(data.get("has_more")) and bool(ads)
            next_id = data.get("search_id")
            detailed, failures = await self.fetch_details(ads, exchanges, fetched)
            if detailed:
                block["details"] = detailed
            if failures:
                facts["detail_failures"] = failures
            if not more or not next_id:
                block["pages"] = page
            stop = None
            if more and not next_id:
                stop = "has_more without a search_id"
                block.pop("pages")
            facts["ads"] = len(ads)
            yield self._page(fetched, url, started, block, facts, stop)
            if not more or not next_id or self.refused:
                return
            search_id = str(next_id)

    async def fetch_details(
        self, ads: list[Any], exchanges: list[Any], page: Fetched
    ) -> tuple[list[str], list[dict[str, Any]]]:
        """Each ad's detail answer (within the run's budget), into the page's exchanges;
        the ids whose detail arrived, and what failed."""
        detailed: list[str] = []
        failures: list[dict[str, Any]] = []
        if not self.details:
            return detailed, failures
        url = f"{self.api_base}{DETAIL_PATH}?{urlencode({'fields': ','.join(DETAIL_FIELDS)})}"
        for item in ads:
            ad = item.get("ad") if isinstance(item, dict) else None
            ad_id = (ad or item).get("id") if isinstance(item, dict) else None
            if ad_id is None or self.refused:
                continue
            if self.detail_budget is not None and self.detail_budget <= 0:
                break
            if self.detail_budget is not None:
                self.detail_budget -= 1
            fetched = await self.call(url, {"ad_id": int(ad_id)}, exchanges)
            page.attempts.extend(fetched.attempts)
            if fetched.ok:
                detailed.append(str(ad_id))
            else:
                failures.append({"ad_id": str(ad_id), "error": fetched.verdict.message[:300]})
        return detailed, failures

    def _page(
        self,
        fetched: Fetched,
        url: str,
        started: Any,
        block: dict[str, Any],
        facts: dict[str, Any],
        stopped: str | None,
    ) -> PageCapture:
        if stopped:
            facts = facts | {"stopped": stopped}
        return api_capture(
            fetched,
            url=url,
            started_at=started,
            ads=block,
            secrets=self.secrets,
            details={"tiktok_ads": facts},
        )

    def _failed_page(
        self, fetched: Fetched, url: str, started: Any, facts: dict[str, Any]
    ) -> PageCapture:
        verdict = fetched.verdict
        if verdict.kind == "auth":
            return self._auth_failed(url)
        if fetched.response is None and not fetched.exchanges:
            return failed_capture(url, fetched.outcome or "failed", verdict.message)
        if fetched.response is None:
            outcome = fetched.outcome or "failed"
        else:
            outcome = RATE_LIMITED if verdict.kind == "retry" else API_ERROR
        # The refusals are evidence: archived, without an ``ads`` block (nothing to parse).
        return api_capture(
            fetched,
            url=url,
            started_at=started,
            ads=None,
            secrets=self.secrets,
            outcome=outcome,
            error=verdict.message,
            details={"tiktok_ads": facts},
        )

    def _auth_failed(self, url: str) -> PageCapture:
        capture = failed_capture(
            url,
            AUTH_FAILED,
            f"TikTok refused the client credentials or token ({self.refused}); check "
            f"[sources.tiktok-ads] client_key and client_secret ({ENV}CLIENT_KEY, "
            f"{ENV}CLIENT_SECRET) and the project's access to the Commercial Content API",
        )
        scrub_capture(capture, self.secrets)
        return capture

    # -- requests ----------------------------------------------------------------------------
    async def call(self, url: str, body: dict[str, Any], exchanges: list[Any]) -> Fetched:
        """One API request with the current token; a refused token is replaced once."""
        assert self.client is not None
        renewed = False
        while True:
            expired = self.token is None or time.monotonic() >= self.token_expires
            if expired and not await self.renew_token():
                return Fetched(None, Verdict("auth", self.refused or ""), exchanges)
            generation = self.generation
            request = scrapy.Request(
                url,
                method="POST",
                body=json.dumps(body),
                headers={
                    "Authorization": f"Bearer {self.token}",
                    "Content-Type": "application/json",
                    "Accept-Encoding": "identity",
                },
                meta={EXCHANGES: exchanges, REQUESTED: url},
            )
            fetched = await self.client.fetch(request, self.classify)
            if fetched.verdict.kind != "auth":
                return fetched
            if renewed:
                self.refused = f"a new token was refused too: {fetched.verdict.message}"
                return fetched
            renewed = True
            # Another request may have renewed it meanwhile: then just ask again.
            if self.generation == generation and not await self.renew_token():
                return Fetched(fetched.response, fetched.verdict, exchanges, fetched.attempts)

    async def renew_token(self) -> bool:
        """A new client access token; False (with ``refused`` set) if TikTok refuses."""
        assert self.client is not None
        form = {
            "client_key": self.client_key,
            "client_secret": self.client_secret,
            "grant_type": "client_credentials",
        }
        request = scrapy.Request(
            self.token_url,
            method="POST",
            body=urlencode(form),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept-Encoding": "identity",
                "Cache-Control": "no-cache",
            },
            meta={EXCHANGES: []},  # credentials only: not archived
        )
        fetched = await self.client.fetch(request, self.classify)
        data = json_of(fetched.response.body) if fetched.response is not None else None
        token = data.get("access_token") if isinstance(data, dict) else None
        if not fetched.ok or not isinstance(token, str) or not token:
            message = fetched.verdict.message or "no access_token in the answer"
            self.refused = f"token request: {message}"
            return False
        self.token = token
        self.tokens.append(token)
        self.generation += 1
        try:
            lifetime = float(data.get("expires_in") or 7200)
        except (TypeError, ValueError):
            lifetime = 7200.0
        self.token_expires = time.monotonic() + max(lifetime - 60, 1)
        return True

    def classify(self, response: Response) -> Verdict:
        """What an answer means: ok, retry (429, 5xx), auth (token refused) or error."""
        error = tiktok_error(response)
        code = str(error.get("code") or "").strip().lower()
        message = f"HTTP {response.status} {code or ''}: {error.get('message') or ''}".strip()
        if 200 <= response.status < 300 and code in ("", "ok"):
            return Verdict("ok")
        hint = retry_after(response.headers.get("Retry-After"))
        if code in RATE_CODES or response.status == 429:
            return Verdict("retry", message, hint)
        if response.status == 401 or code in AUTH_CODES or code == "invalid_client":
            return Verdict("auth", message)
        if code in TRANSIENT_CODES or response.status >= 500:
            return Verdict("retry", message, hint)
        return Verdict("error", message)


def _secret(value: SecretStr | str | None) -> str | None:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    return value or None


class TikTokAdsSettings(SourceSettings):
    """The `tiktok-ads` source: credentials, the query, details, rate limits."""

    api_base: str = Field(default=API_BASE, description="the TikTok API host")
    token_url: str | None = Field(
        default=None,
        description=f"client token endpoint (default: api_base + {TOKEN_PATH})",
    )
    client_key: SecretStr | None = Field(
        default=None, description=f"research client key (evidence.toml or {ENV}CLIENT_KEY only)"
    )
    client_secret: SecretStr | None = Field(
        default=None,
        description=f"research client secret (evidence.toml or {ENV}CLIENT_SECRET only)",
    )
    countries: list[str] = Field(
        default_factory=lambda: ["DE"],
        description="country_code filter, one query per country (ALL: every country)",
    )
    search_terms: list[str] = Field(
        default_factory=list, description="one query per term (up to 50 characters)"
    )
    search_type: Literal["exact_phrase", "fuzzy_phrase"] | None = Field(
        default=None, description="how a term matches (TikTok's default: exact_phrase)"
    )
    advertiser_business_ids: list[str] = Field(
        default_factory=list,
        description="advertisers' business ids (TikTok ignores them when a term is given)",
    )
    date_min: date = Field(
        default=EARLIEST, description="ad_published_date_range min (from 2022-10-01)"
    )
    date_max: date | None = Field(
        default=None, description="ad_published_date_range max (default: the day of the run)"
    )
    max_count: int = Field(default=50, ge=1, le=50, description="ads per page (at most 50)")
    details: bool = Field(
        default=True, description="ask /ad/detail/ for each ad's targeting and reach by country"
    )
    max_details: int | None = Field(
        default=1000,
        ge=0,
        description="detail requests per run at most (the API has a daily quota); none: all",
    )
    backoff: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="seconds to wait after a 429 without Retry-After, doubled per try",
    )
    max_wait: float = Field(default=3600.0, gt=0, description="longest single wait, seconds")
    max_retries: int = Field(
        default=8, ge=0, le=100, description="repetitions of a rate-limited or failed request"
    )
    timeout: float = Field(default=60, ge=1, le=3600, description="seconds allowed per request")

    @field_validator("countries")
    @classmethod
    def _countries(cls, value: list[str]) -> list[str]:
        import re

        codes = [c.strip().upper() for c in value if c.strip()]
        for code in codes:
            if not re.match(r"^(?:[A-Z]{2}|ALL)$", code):
                raise ValueError(f"{code!r} is not an ISO 3166 country code (e.g. DE) or ALL")
        if not codes:
            raise ValueError("give at least one country (or ALL)")
        return list(dict.fromkeys(codes))

    @field_validator("search_terms")
    @classmethod
    def _terms(cls, value: list[str]) -> list[str]:
        for term in value:
            if len(term) > 50:
                raise ValueError(f"search term {term[:20]!r}…: TikTok takes at most 50 characters")
        return [t for t in value if t.strip()]

    @field_validator("advertiser_business_ids")
    @classmethod
    def _ids(cls, value: list[str]) -> list[str]:
        ids = [str(v).strip() for v in value if str(v).strip()]
        for business_id in ids:
            if not business_id.isdigit():
                raise ValueError(f"business id {business_id!r} is not a number")
        return ids

    @field_validator("date_min")
    @classmethod
    def _date_min(cls, value: date) -> date:
        if value < EARLIEST:
            raise ValueError("the library starts on 2022-10-01: give a later date_min")
        return value

    @field_validator("api_base", "token_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value

    def scrapy_settings(self) -> dict[str, Any]:
        return super().scrapy_settings() | {"DOWNLOAD_TIMEOUT": self.timeout}

    def spider_arguments(self) -> dict[str, Any]:
        values = self.model_dump(exclude=set(SourceSettings.model_fields) | {"timeout"})
        values["client_key"], values["client_secret"] = self.client_key, self.client_secret
        return values


SOURCE = SourceSpec(
    name=SOURCE_NAME,
    kind="api",
    description="TikTok Commercial Content Library API: ads shown in the EU with advertiser, "
    "payer, reach by country and targeting (client-token auth), page by page",
    settings=TikTokAdsSettings,
    collection="ads-tiktok",
    timestamp_mode="merkle",
    spider=TikTokAdsSpider,
    records="records.ads.parse:parse_run",
)
