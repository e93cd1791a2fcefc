"""`x-ads`: the X Ads Repository (DSA Art. 39), one export per advertiser account.

X's repository answers per advertiser account, one EU country and a date range, and only as
an export: a job is created, polled until it is ready, and its CSV downloaded. X documents
no API for it; the endpoints (settings, with X's Ads API host as default) follow the X Ads
API's asynchronous jobs::

    POST {api_base}/ads_repository/export_jobs   {"advertiser", "country", "start_date",
                                                  "end_date"}            -> the job
    GET  {api_base}/ads_repository/export_jobs/<id>   until "status" is SUCCESS (with "url")
                                                      or FAILED
    GET  <url>                                    -> the CSV (often empty)

Every job is created first; then all are polled together, one round per ``poll_interval``,
and each CSV downloaded when its job is ready. Every answer (job created, each poll, the CSV)
is archived as its own snapshot, plain HTTP, before anything is parsed; a rate-limited
answer (429, or 5xx with Retry-After) sits in the same WARC before the answer that was used
(``crawlers.spiders.adlib``), after waiting as ``Retry-After`` (or ``x-rate-limit-reset``)
said; ``x-rate-limit-remaining: 0`` pauses the next request until the reset. A rate limit
never ends the run. The bearer token travels in the Authorization header only (redacted by
the archive) and is scrubbed from any body that would echo it.

The CSV's snapshot carries the ``ads`` block the records step reads (``records.ads.parse``):
one page per account, ``pages: 1`` when the export arrived whole. A header-only export is a
complete, empty answer (ads that the account's query returned before are then marked
unseen); a zero-byte one is archived without ``pages``, because it cannot be told from a
broken transfer. A refused token (401/403) ends the run with the outcome ``auth-failed`` (no
further request); a job that fails ends as ``export-failed``, one never ready as
``export-timeout``, an error answer as ``api-error``: the other accounts go on.

Settings: ``api_base``, ``bearer_token`` (evidence.toml or EVIDENCE_SOURCES__X_ADS__BEARER_TOKEN
only), ``accounts`` (``-a account=@handle`` or an account id, repeated), ``country``,
``date_from``, ``date_to``, ``poll_interval``, ``max_polls``, ``backoff``, ``max_retries``,
``max_wait``, ``timeout``, ``max_bytes``. See ``XAdsSettings``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import scrapy
from pydantic import Field, SecretStr, field_validator, model_validator
from scrapy.crawler import Crawler
from scrapy.http import Response

from crawlers.items import PageCapture
from crawlers.spiders.adlib import (
    API_ERROR,
    AUTH_FAILED,
    RATE_LIMITED,
    ApiClient,
    Fetched,
    Verdict,
    api_capture,
    failed_capture,
    json_of,
    query_key,
    retry_after,
    scrub_capture,
)
from crawlers.spiders.pages import REQUESTED
from crawlers.urls import AddressPolicy, url_problem
from evidence_store.errors import InputError
from schemas import SourceSettings, SourceSpec, utc_now

SOURCE_NAME = "x-ads"
PLATFORM = "x"
API_BASE = "https://ads-api.x.com/12"
JOBS_PATH = "/ads_repository/export_jobs"
TOKEN_ENV = "EVIDENCE_SOURCES__X_ADS__BEARER_TOKEN"
EXPORT_FAILED = "export-failed"  # the job ended FAILED (or without a file)
EXPORT_TIMEOUT = "export-timeout"  # the job was not ready after max_polls polls
# The DSA's obligations for very large platforms apply since 25 August 2023: the default
# start of the range asked for, so that a daily run asks for everything the repository has.
DSA_START = date(2023, 8, 25)
EU_COUNTRIES = frozenset(
    {
        *("AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU"),
        *("IE", "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK"),
    }
)
PENDING = frozenset({"QUEUED", "PROCESSING", "UPLOADING", "PENDING", "RUNNING", "IN_PROGRESS"})
FAILED = frozenset({"FAILED", "CANCELLED", "EXPIRED", "ERROR"})


class XAdsSettings(SourceSettings):
    """The `x-ads` source: which accounts, country and dates to export, and how patiently."""

    api_base: str = Field(
        default=API_BASE,
        description="the API the export jobs are created at (jobs under "
        "/ads_repository/export_jobs)",
    )
    bearer_token: SecretStr | None = Field(
        default=None,
        description="bearer token (evidence.toml or EVIDENCE_SOURCES__X_ADS__BEARER_TOKEN only)",
    )
    accounts: list[str] = Field(
        default_factory=list,
        description="advertiser accounts: @handle or account id (-a account=@spdde, repeated)",
    )
    country: str = Field(default="DE", description="the EU country the repository is asked for")
    date_from: date | None = Field(
        default=None, description=f"first day of the range (default {DSA_START}, the DSA's start)"
    )
    date_to: date | None = Field(
        default=None, description="last day of the range (default: yesterday, UTC)"
    )
    poll_interval: float = Field(
        default=10.0, ge=0.01, le=600, description="seconds between polls of a job"
    )
    max_polls: int = Field(
        default=90, ge=1, le=10_000, description="polls of one job before it is given up"
    )
    backoff: float = Field(
        default=15.0,
        gt=0,
        le=3600,
        description="seconds to wait after a rate-limit answer without a hint, doubled per try",
    )
    max_retries: int = Field(
        default=10, ge=0, le=1000, description="repetitions of a rate-limited request"
    )
    max_wait: float = Field(
        default=900.0, gt=0, le=86_400, description="longest single wait, seconds"
    )
    timeout: float = Field(default=60, ge=1, le=3600, description="seconds allowed per request")
    max_bytes: int = Field(
        default=500 * 1024 * 1024, ge=1024, description="largest answer accepted, in bytes"
    )

    @field_validator("api_base")
    @classmethod
    def _api_base(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"invalid api_base {value!r}: give http(s)://host/version")
        return value.rstrip("/")

    @field_validator("accounts")
    @classmethod
    def _accounts(cls, value: list[str]) -> list[str]:
        cleaned = [v.strip() for v in value if v.strip()]
        for account in cleaned:
            if any(c.isspace() for c in account) or account == "@":
                raise ValueError(f"invalid account {account!r}: give @handle or an account id")
        return list(dict.fromkeys(cleaned))

    @field_validator("country")
    @classmethod
    def _country(cls, value: str) -> str:
        code = value.strip().upper()
        code = "GR" if code == "EL" else code  # the EU writes Greece EL, ISO 3166 GR
        if code not in EU_COUNTRIES:
            raise ValueError(
                f"country {value!r} is not an EU member state (the repository covers the EU)"
            )
        return code

    @model_validator(mode="after")
    def _range(self) -> XAdsSettings:
        if self.date_from and self.date_to and self.date_to < self.date_from:
            raise ValueError(f"date_to {self.date_to} is before date_from {self.date_from}")
        return self

    def scrapy_settings(self) -> dict[str, Any]:
        limits = super().scrapy_settings()
        return limits | {"DOWNLOAD_TIMEOUT": self.timeout, "DOWNLOAD_MAXSIZE": self.max_bytes}

    def spider_arguments(self) -> dict[str, Any]:
        if not self.accounts:
            raise InputError(
                "x-ads: no advertiser accounts to export: give -a account=@handle (repeatable) "
                "or [sources.x-ads] accounts"
            )
        values = self.model_dump(
            exclude=set(SourceSettings.model_fields) | {"timeout", "max_bytes", "bearer_token"}
        )
        values["bearer_token"] = self.bearer_token  # a SecretStr, opened by the spider only
        return values


def x_errors(response: Response) -> str:
    """The ``errors`` of an X answer as one line ("" if there are none)."""
    data = json_of(response.body)
    errors = data.get("errors") if isinstance(data, dict) else None
    if not isinstance(errors, list):
        return ""
    return "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors if isinstance(e, dict))


def _reset_wait(response: Response) -> float | None:
    reset = (response.headers.get("x-rate-limit-reset") or b"").decode("latin-1").strip()
    if not reset.isdigit():
        return None
    return max(0.0, int(reset) - time.time())


def classify(response: Response) -> Verdict:
    """What an answer of the repository means: ok (perhaps with a pause), retry, auth, error."""
    status = response.status
    if 200 <= status < 300:
        remaining = (response.headers.get("x-rate-limit-remaining") or b"").strip()
        if remaining == b"0":
            # The window is used up: this answer is good, the next request waits for the reset.
            return Verdict("ok", "x-rate-limit-remaining: 0", None, _reset_wait(response) or 60.0)
        return Verdict("ok")
    message = f"HTTP {status}" + (f": {detail}" if (detail := x_errors(response)) else "")
    if status in (401, 403):
        return Verdict("auth", message)
    if status == 429:
        hint = retry_after(response.headers.get("Retry-After")) or _reset_wait(response)
        return Verdict("retry", message, hint)
    if status >= 500:
        return Verdict("retry", message, retry_after(response.headers.get("Retry-After")))
    return Verdict("error", message)


@dataclass
class ExportJob:
    """One account's export: what was asked, and where the job stands."""

    account: str
    query: dict[str, Any]
    query_key: str
    job_id: str | None = None
    polls: int = 0
    url: str | None = None

    def facts(self, role: str) -> dict[str, Any]:
        """The ``x_ads`` block of a capture's metadata."""
        facts: dict[str, Any] = {"role": role, "account": self.account, "query": self.query}
        if self.job_id:
            facts["job_id"] = self.job_id
        if role == "job-status":
            facts["poll"] = self.polls
        return facts


class XAdsSpider(scrapy.Spider):
    """Export jobs: all created, then polled together, each downloaded when ready."""

    name = SOURCE_NAME

    def __init__(
        self,
        api_base: str = API_BASE,
        bearer_token: SecretStr | str | None = None,
        accounts: list[str] | None = None,
        country: str = "DE",
        date_from: date | str | None = None,
        date_to: date | str | None = None,
        poll_interval: float = 10.0,
        max_polls: int = 90,
        backoff: float = 15.0,
        max_wait: float = 900.0,
        max_retries: int = 10,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(bearer_token, SecretStr):
            bearer_token = bearer_token.get_secret_value()
        self.token = bearer_token or None
        self.api_base = api_base.rstrip("/")
        self.accounts = list(accounts or [])
        self.country = country
        yesterday = datetime.now(UTC).date() - timedelta(days=1)
        self.start_date = date.fromisoformat(str(date_from)) if date_from else DSA_START
        self.end_date = date.fromisoformat(str(date_to)) if date_to else yesterday
        self.open_end = not date_to
        self.poll_interval = float(poll_interval)
        self.max_polls = int(max_polls)
        self.backoff, self.max_wait = float(backoff), float(max_wait)
        self.max_retries = int(max_retries)
        self.mode = "http"
        self.policy = AddressPolicy()
        self.client: ApiClient | None = None
        self.token_refused = False

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> XAdsSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        spider.policy = AddressPolicy.from_settings(crawler.settings)
        spider.client = ApiClient(
            spider, backoff=spider.backoff, max_wait=spider.max_wait, max_retries=spider.max_retries
        )
        return spider

    @property
    def secrets(self) -> dict[str, str]:
        return {"bearer_token": self.token} if self.token else {}

    def query(self, account: str) -> dict[str, Any]:
        """What defines an account's query (the key of its sightings): account, country and
        range; an open range ("until yesterday") is one query whatever day it runs on."""
        return {
            "account": account,
            "country": self.country,
            "date_from": self.start_date.isoformat(),
            "date_to": "open" if self.open_end else self.end_date.isoformat(),
        }

    # -- the flow ------------------------------------------------------------------------
    async def start(self) -> AsyncIterator[PageCapture]:
        endpoint = self.api_base + JOBS_PATH
        if not self.token:
            yield failed_capture(
                endpoint,
                AUTH_FAILED,
                f"no bearer token for x-ads: set [sources.x-ads] bearer_token in evidence.toml "
                f"or {TOKEN_ENV}",
            )
            return
        refused = url_problem(endpoint, policy=self.policy)
        if refused is not None:
            yield failed_capture(refused.url, refused.outcome, refused.message)
            return
        pending: list[ExportJob] = []
        for account in self.accounts:
            if self.token_refused:
                break
            query = self.query(account)
            job = ExportJob(account, query, query_key(SOURCE_NAME, query))
            async for item in self.create(job):
                yield item
            if job.job_id:
                pending.append(job)
        # All jobs are polled together, one round per interval: an account's slow export
        # does not hold up the others.
        while pending and not self.token_refused:
            await asyncio.sleep(self.poll_interval)
            for job in list(pending):
                if self.token_refused:
                    break
                done = False
                async for item in self.poll(job):
                    if isinstance(item, bool):
                        done = item
                    else:
                        yield item
                if done:
                    pending.remove(job)
                    if job.url:
                        async for item in self.download(job):
                            yield item

    def _request(self, url: str, *, body: Any = None, auth: bool = True) -> scrapy.Request:
        headers = {"Accept": "application/json, text/csv;q=0.9, */*;q=0.1"}
        if auth and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if body is not None:
            headers["Content-Type"] = "application/json"
        return scrapy.Request(
            url,
            method="POST" if body is not None else "GET",
            body=json.dumps(body, ensure_ascii=False).encode() if body is not None else None,
            headers=headers,
            meta={REQUESTED: url},
        )

    async def create(self, job: ExportJob) -> AsyncIterator[PageCapture]:
        """Ask for the account's export; the job id lands in ``job``."""
        assert self.client is not None
        url = self.api_base + JOBS_PATH
        body = {
            "advertiser": job.account,
            "country": self.country,
            "start_date": self.start_date.isoformat(),
            "end_date": self.end_date.isoformat(),
        }
        started = utc_now()
        fetched = await self.client.fetch(self._request(url, body=body), classify)
        facts = job.facts("create-job")
        if not fetched.ok:
            yield self._failed(fetched, url, started, facts)
            return
        data = _data(fetched)
        job_id = str(data.get("id_str") or data.get("id") or "") if data else ""
        if not job_id:
            yield self._archived(
                fetched, url, started, facts, API_ERROR, "the answer names no export job"
            )
            return
        job.job_id = job_id
        yield self._archived(fetched, url, started, job.facts("create-job"))

    async def poll(self, job: ExportJob) -> AsyncIterator[PageCapture | bool]:
        """One look at the job; yields True when it is settled (ready, failed, given up)."""
        assert self.client is not None
        url = f"{self.api_base}{JOBS_PATH}/{job.job_id}"
        job.polls += 1
        started = utc_now()
        fetched = await self.client.fetch(self._request(url), classify)
        facts = job.facts("job-status")
        if not fetched.ok:
            yield self._failed(fetched, url, started, facts)
            yield True
            return
        data = _data(fetched) or {}
        status = str(data.get("status") or "").upper()
        facts["status"] = status or None
        if status == "SUCCESS" and data.get("url"):
            job.url = str(data["url"])
            yield self._archived(fetched, url, started, facts)
            yield True
        elif status in FAILED or status == "SUCCESS":
            error = data.get("error")
            reason = error.get("message") if isinstance(error, dict) else error
            if status == "SUCCESS":
                reason = "the job succeeded without a file URL"
            message = f"the export job ended {status}: {reason or 'no reason given'}"
            yield self._archived(fetched, url, started, facts, EXPORT_FAILED, message)
            yield True
        elif status not in PENDING:
            message = f"unknown job status {status or '(none)'!r}"
            yield self._archived(fetched, url, started, facts, API_ERROR, message)
            yield True
        elif job.polls >= self.max_polls:
            message = f"the export job was still {status} after {job.polls} polls"
            yield self._archived(fetched, url, started, facts, EXPORT_TIMEOUT, message)
            yield True
        else:
            yield self._archived(fetched, url, started, facts)
            yield False

    async def download(self, job: ExportJob) -> AsyncIterator[PageCapture]:
        """The export's CSV, archived as received, with the ``ads`` block of its query."""
        assert self.client is not None and job.url is not None
        # The token goes only where it was issued for: a file host elsewhere gets none.
        same_origin = urlsplit(job.url)[:2] == urlsplit(self.api_base)[:2]
        refused = url_problem(job.url, policy=self.policy)
        facts = job.facts("export")
        if refused is not None:
            yield failed_capture(refused.url, refused.outcome, refused.message, x_ads=facts)
            return
        started = utc_now()
        fetched = await self.client.fetch(self._request(job.url, auth=same_origin), classify)
        if not fetched.ok:
            yield self._failed(fetched, job.url, started, facts)
            return
        assert fetched.response is not None
        body = fetched.response.body
        block: dict[str, Any] = {
            "platform": PLATFORM,
            "kind": "page",
            "query_key": job.query_key,
            "page": 1,
            "query": job.query,
            "account": job.account,
            "country": self.country,
        }
        if not body.strip():
            facts["empty_export"] = "zero-bytes"
        else:
            block["pages"] = 1  # the whole answer: the records step may notice removals
            if len(body.strip().splitlines()) == 1:
                facts["empty_export"] = "header-only"
        facts["bytes"] = len(body)
        yield api_capture(
            fetched,
            url=job.url,
            started_at=started,
            ads=block,
            secrets=self.secrets,
            details={"x_ads": facts},
        )

    # -- captures ------------------------------------------------------------------------
    def _archived(
        self,
        fetched: Fetched,
        url: str,
        started: Any,
        facts: dict[str, Any],
        outcome: str = "archived",
        error: str | None = None,
    ) -> PageCapture:
        # Job answers are evidence of what was asked and answered, not ads: no ``ads`` block.
        return api_capture(
            fetched,
            url=url,
            started_at=started,
            ads=None,
            secrets=self.secrets,
            outcome=outcome,
            error=error,
            details={"x_ads": facts},
        )

    def _failed(
        self, fetched: Fetched, url: str, started: Any, facts: dict[str, Any]
    ) -> PageCapture:
        verdict = fetched.verdict
        if fetched.response is None:  # the network failed: whatever was exchanged before
            outcome = fetched.outcome or "failed"
            if not fetched.exchanges:
                return failed_capture(url, outcome, verdict.message, x_ads=facts)
            return self._archived(fetched, url, started, facts, outcome, verdict.message)
        if verdict.kind == "auth":
            # Nothing of the ads in it, and the run cannot go on: an outcome, not a snapshot.
            self.token_refused = True
            message = (
                f"X refused the bearer token ({verdict.message}); renew it in "
                f"[sources.x-ads] bearer_token or {TOKEN_ENV}"
            )
            capture = failed_capture(url, AUTH_FAILED, message, x_ads=facts)
            scrub_capture(capture, self.secrets)
            return capture
        outcome = RATE_LIMITED if verdict.kind == "retry" else API_ERROR
        return self._archived(fetched, url, started, facts, outcome, verdict.message)


def _data(fetched: Fetched) -> dict[str, Any] | None:
    data = json_of(fetched.response.body) if fetched.response is not None else None
    inner = data.get("data") if isinstance(data, dict) else None
    return inner if isinstance(inner, dict) else None


SOURCE = SourceSpec(
    name=SOURCE_NAME,
    kind="api",
    description="X Ads Repository (DSA Art. 39): an export job per advertiser account, "
    "country and date range; every answer and the CSV archived, the ads normalised",
    settings=XAdsSettings,
    collection="ads-x",
    timestamp_mode="merkle",
    spider=XAdsSpider,
    records="records.ads.parse:parse_run",
)
