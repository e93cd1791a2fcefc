"""Shared parts of the ad-library API spiders (`meta-ads`, `tiktok-ads`, ...).

Small and generic on purpose; each spider keeps what is particular to its library:

- ``query_key``: the key of a query's sightings, the same function as
  ``records.ads.store.query_key`` (crawlers sit below records and may not import it).
- ``ApiClient.fetch``: one API request, waited out and repeated while the library says "too
  many requests" (a classifier per library reads the answer: ``Verdict``). Every attempt is
  recorded in the same exchange list, so the snapshot of a page shows the throttled answers
  before the one that was used, and ``attempts`` lists each wait.
- ``api_capture``: the ``PageCapture`` of one API page (all its exchanges in one WARC) with
  the ``ads`` block that tells the records step what it is, scrubbed of the secrets first.
- ``guarded``, ``items_settled``: a query that raises ends with an outcome, and a run whose
  captures come from ``start()`` ends as soon as the last is archived.
- ``scrub_capture``: a credential that a library echoes in a response body (Meta's
  ``ad_snapshot_url`` and ``paging.next`` carry ``access_token``) is removed from every byte of
  a capture before it is archived; URLs and headers are redacted by the archive anyway.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import logging
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import rfc8785
import scrapy
from scrapy.http import Response
from twisted.python.failure import Failure

from crawlers.items import PageCapture
from crawlers.middlewares import EXCHANGES
from crawlers.redaction import Redactor
from crawlers.spiders.pages import classify_failure
from schemas import format_rfc3339, utc_now

log = logging.getLogger(__name__)
ADS_KEY = "ads"  # capture metadata: what the records step reads (records/ads/parse.py)
RATE_LIMITED = "rate-limited"  # the library kept refusing after every retry
AUTH_FAILED = "auth-failed"  # missing, invalid or expired credentials
API_ERROR = "api-error"  # any other error answer (archived as evidence)
# Network failures worth another attempt (the outcomes of crawlers.spiders.pages).
TRANSIENT_OUTCOMES = frozenset({"timeout", "connection-error"})


def query_key(source: str, parameters: Mapping[str, Any]) -> str:
    """The key of a query's sightings: ``records.ads.store.query_key`` (same bytes hashed)."""
    payload = {"source": source, "query": dict(parameters)}
    return hashlib.sha256(rfc8785.dumps(payload)).hexdigest()


@dataclass(frozen=True)
class Verdict:
    """What a library's answer means for the client.

    ``kind``: ``ok`` (use it), ``retry`` (rate limit or a transient error: wait, ask again),
    ``auth`` (credentials refused), ``error`` (anything else). ``wait`` is the library's own
    hint in seconds (Retry-After, Meta's estimated_time_to_regain_access); ``pause`` asks for a
    pause before the *next* request after an ``ok`` answer (usage near the limit).
    """

    kind: str
    message: str = ""
    wait: float | None = None
    pause: float | None = None


@dataclass
class Fetched:
    """The result of ``ApiClient.fetch``: the last answer (None after a network failure),
    what it meant, every exchange, and every wait."""

    response: Response | None
    verdict: Verdict
    exchanges: list[Any]
    attempts: list[dict[str, Any]] = field(default_factory=list)
    outcome: str | None = None  # the network outcome when response is None

    @property
    def ok(self) -> bool:
        return self.response is not None and self.verdict.kind == "ok"


def retry_after(value: str | bytes | None, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (delta seconds or an HTTP date); None if absent."""
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    text = text.strip()
    if not text:
        return None
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - (now or utc_now())).total_seconds())


def json_of(body: bytes) -> Any:
    """The JSON of a body, or None if it is not JSON."""
    try:
        return json.loads(body)
    except ValueError:
        return None


class ApiClient:
    """Requests of one spider run through Scrapy's downloader (URL policy, exchange recorder),
    repeated after rate-limit and transient answers with waits that never end a run early.

    A wait is the library's hint, else ``backoff`` doubled per attempt; each is capped at
    ``max_wait``. After ``max_retries`` repetitions the last answer is returned as it is.
    """

    def __init__(
        self,
        spider: scrapy.Spider,
        *,
        backoff: float,
        max_wait: float,
        max_retries: int,
    ) -> None:
        self.spider = spider
        self.backoff = backoff
        self.max_wait = max_wait
        self.max_retries = max_retries
        self._resume_at = 0.0  # monotonic time before which no request leaves

    def delay(self, attempt: int, hint: float | None) -> float:
        """Seconds to wait before repetition ``attempt`` (0-based)."""
        wait = hint if hint else self.backoff * (2**attempt)
        return min(max(wait, 0.0), self.max_wait)

    def pause(self, seconds: float) -> None:
        """Let no request leave for ``seconds`` (capped at ``max_wait``)."""
        seconds = min(max(seconds, 0.0), self.max_wait)
        self._resume_at = max(self._resume_at, time.monotonic() + seconds)

    async def _pace(self) -> None:
        wait = self._resume_at - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)

    async def fetch(
        self, request: scrapy.Request, classify: Callable[[Response], Verdict]
    ) -> Fetched:
        """Send ``request`` (again after each rate-limit or transient answer); the outcome."""
        exchanges = request.meta.setdefault(EXCHANGES, [])
        request.meta.setdefault("dont_obey_robotstxt", True)  # an API, not pages to crawl
        attempts: list[dict[str, Any]] = []
        engine = self.spider.crawler.engine
        attempt = 0
        while True:
            await self._pace()
            sent = request.replace(dont_filter=True)  # meta (and the exchange list) shared
            try:
                response = await engine.download_async(sent)
            except Exception as exc:  # the network failed: no answer to classify
                outcome, message = classify_failure(Failure(exc))
                if outcome in TRANSIENT_OUTCOMES and attempt < self.max_retries:
                    wait = self.delay(attempt, None)
                    attempts.append(_attempt(None, outcome, message, wait))
                    attempt += 1
                    await asyncio.sleep(wait)
                    continue
                attempts.append(_attempt(None, outcome, message, None))
                return Fetched(None, Verdict("error", message), exchanges, attempts, outcome)
            verdict = classify(response)
            if verdict.kind == "retry" and attempt < self.max_retries:
                wait = self.delay(attempt, verdict.wait)
                attempts.append(_attempt(response.status, "retry", verdict.message, wait))
                attempt += 1
                await asyncio.sleep(wait)
                continue
            if verdict.kind == "ok" and verdict.pause:
                self.pause(verdict.pause)
                attempts.append(_attempt(response.status, "throttled", verdict.message, None))
                attempts[-1]["paused_s"] = round(min(verdict.pause, self.max_wait), 3)
            return Fetched(response, verdict, exchanges, attempts)


def _attempt(status: int | None, kind: str, message: str, wait: float | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"at": format_rfc3339(utc_now()), "status": status, "kind": kind}
    if message:
        entry["message"] = message[:300]
    if wait is not None:
        entry["waited_s"] = round(wait, 3)
    return entry


# -- scrubbing ---------------------------------------------------------------------------------
def _decoded(body: bytes, encoding: str) -> bytes | None:
    try:
        if encoding in ("gzip", "x-gzip"):
            return gzip.decompress(body)
        if encoding == "deflate":
            try:
                return zlib.decompress(body)
            except zlib.error:
                return zlib.decompress(body, -zlib.MAX_WBITS)
        if encoding == "br":
            import brotli  # type: ignore[import-not-found]

            return brotli.decompress(body)
    except Exception:
        return None
    return None


def _scrub_text(redactor: Redactor, value: Any, secrets: Mapping[str, str], names: list[str]):
    if isinstance(value, str | bytes) and value:
        value, found = redactor.redact_text(value, secrets)
        names.extend(found)
    return value


def _scrub_data(redactor: Redactor, value: Any, secrets: Mapping[str, str], names: list[str]):
    if isinstance(value, str):
        return _scrub_text(redactor, value, secrets, names)
    if isinstance(value, Mapping):
        return {k: _scrub_data(redactor, v, secrets, names) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_scrub_data(redactor, v, secrets, names) for v in value)
    return value


def _scrub_body(
    redactor: Redactor, exchange: Any, secrets: Mapping[str, str], names: list[str]
) -> None:
    encoding = (exchange.header("Content-Encoding") or "identity").strip().lower()
    if encoding in ("", "identity") or not exchange.body:
        exchange.body = _scrub_text(redactor, exchange.body, secrets, names)
        return
    plain = _decoded(exchange.body, encoding)
    if plain is None:
        # Bytes that cannot be read cannot be checked: they are not kept.
        exchange.body = b""
        exchange.notes["body"] = f"withheld: {encoding}-encoded body could not be checked"
        names.append("body:undecodable")
        return
    scrubbed = _scrub_text(redactor, plain, secrets, names)
    if scrubbed != plain:
        # Stored decoded and scrubbed; the original coding is named as the browser path does.
        exchange.body = scrubbed
        exchange.response_headers = [
            (f"X-Archive-Orig-{k}", v)
            if k.lower() in ("content-encoding", "content-length")
            else (k, v)
            for k, v in exchange.response_headers
        ] + [("Content-Length", str(len(scrubbed)))]
        exchange.notes["body"] = f"decoded from {encoding} and scrubbed of a secret"


def scrub_capture(
    capture: PageCapture,
    secrets: Mapping[str, str],
    *,
    query_params: Iterable[str] = (),
) -> list[str]:
    """Remove every secret value from the capture, in place; the names of what was removed.

    ``secrets`` maps a name to a value (``{"access_token": "EAAB…"}``), scrubbed raw and in
    its escaped forms from URLs, headers, request and response bodies, text resources (the
    DOM) and the details; ``query_params`` are URL parameters whose values are scrubbed
    wherever a URL appears in that text (only these: a body is evidence, and a parameter
    called ``key`` in an advertiser's link is not ours to hide). A binary resource (a
    screenshot, a PDF) that contains a secret is dropped and the reason recorded.
    """
    secrets = {k: v for k, v in secrets.items() if v}
    query_params = tuple(query_params)
    names: list[str] = []
    if not secrets and not query_params:
        return names
    redactor = Redactor(query_params=query_params, defaults=False)
    capture.requested_url = _scrub_text(redactor, capture.requested_url, secrets, names)
    capture.final_url = _scrub_text(redactor, capture.final_url, secrets, names)
    capture.error = _scrub_text(redactor, capture.error, secrets, names)
    for exchange in capture.exchanges:
        exchange.url = _scrub_text(redactor, exchange.url, secrets, names)
        exchange.request_headers = [
            (k, _scrub_text(redactor, v, secrets, names)) for k, v in exchange.request_headers
        ]
        exchange.response_headers = [
            (k, _scrub_text(redactor, v, secrets, names)) for k, v in exchange.response_headers
        ]
        exchange.request_body = _scrub_text(redactor, exchange.request_body, secrets, names)
        _scrub_body(redactor, exchange, secrets, names)
    kept = []
    for resource in capture.resources:
        textual = resource.media_type.startswith(("text/", "application/json"))
        if textual:
            resource.data = _scrub_text(redactor, resource.data, secrets, names)
            kept.append(resource)
        elif any(v.encode() in resource.data for v in secrets.values()):
            withheld = capture.details.setdefault("withheld", {})
            withheld[resource.role] = "it contains a credential of the source"
        else:
            kept.append(resource)
    capture.resources = kept
    capture.details = _scrub_data(redactor, capture.details, secrets, names)
    return sorted(set(names))


def api_capture(
    fetched: Fetched,
    *,
    url: str,
    started_at: datetime,
    ads: Mapping[str, Any] | None,
    secrets: Mapping[str, str],
    query_params: Iterable[str] = (),
    outcome: str = "archived",
    error: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> PageCapture:
    """The capture of one API page: every exchange of ``fetched`` (throttled answers too),
    ``ads`` as the block the records step reads (None: evidence only, nothing to parse),
    scrubbed of ``secrets``; what was scrubbed from bodies is named in ``redacted_body``."""
    last = fetched.exchanges[-1] if fetched.exchanges else None
    facts: dict[str, Any] = dict(details or {})
    if fetched.attempts:
        facts["attempts"] = fetched.attempts
    if ads is not None:
        facts[ADS_KEY] = dict(ads)
    capture = PageCapture(
        requested_url=url,
        mode="http",
        outcome=outcome,
        started_at=started_at,
        finished_at=utc_now(),
        exchanges=list(fetched.exchanges),
        final_url=last.url if last is not None else None,
        status=last.status if last is not None else None,
        error=error,
        details=facts,
    )
    names = scrub_capture(capture, secrets, query_params=query_params)
    if names:
        capture.details["redacted_body"] = names
    return capture


async def guarded(
    items: AsyncIterator[Any], label: str, secrets: Mapping[str, str]
) -> AsyncIterator[Any]:
    """``items``, and if producing them raises, a ``failed`` outcome naming the error (a bug
    or an answer nobody foresaw ends one query, not the run, and never without an outcome)."""
    try:
        async for item in items:
            yield item
    except Exception as exc:
        log.exception("%s failed", label)
        capture = failed_capture(label, "failed", f"{type(exc).__name__}: {exc}"[:500])
        scrub_capture(capture, secrets)
        yield capture


async def items_settled(spider: scrapy.Spider, poll: float = 0.05) -> None:
    """Wait until the items a spider yielded are through the pipeline.

    A spider that yields its captures from ``start()`` ends its start iteration while the
    last one is still being archived; Scrapy notices that the crawl is over only at its next
    heartbeat (5 s later). Awaiting this at the end of ``start()`` lets it notice at once.
    """
    engine = spider.crawler.engine
    while engine is not None and engine.scraper.slot is not None:
        if engine.scraper.slot.is_idle():
            return
        await asyncio.sleep(poll)


def failed_capture(url: str, outcome: str, error: str, **details: Any) -> PageCapture:
    """An outcome with nothing to archive (no credentials, a refused token)."""
    now = utc_now()
    return PageCapture(
        requested_url=url,
        mode="http",
        outcome=outcome,
        started_at=now,
        finished_at=now,
        error=error,
        details=dict(details),
    )
