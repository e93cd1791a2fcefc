"""Downloader middlewares: the URL policy, and the recorder of every exchange as transferred."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from scrapy import Request, Spider
from scrapy.crawler import Crawler
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Response

from crawlers.exchanges import Exchange, reason_phrase
from crawlers.urls import AddressPolicy, UrlRefused, check_url
from schemas import utc_now

EXCHANGES = "evidence_exchanges"  # request.meta key: shared by a request and its redirects
SENT_AT = "evidence_sent_at"


def _header_list(headers: Any) -> list[tuple[str, str]]:
    return [
        (name.decode("latin-1"), value.decode("latin-1"))
        for name, values in headers.items()
        for value in values
    ]


class RequestRefused(IgnoreRequest):
    """A request the URL policy refused; ``refusal`` says why (outcome, message)."""

    def __init__(self, refusal: UrlRefused) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


class UrlPolicy:
    """Refuses every request, first or redirect hop, whose URL a capture must not fetch.

    First in the chain (priority 50), so a refused URL causes no request at all, not even
    for its robots.txt. Redirects come back through here as new requests, so a public page
    that redirects to ``http://169.254.169.254/`` is refused at that hop. Host names are
    checked after resolution by ``crawlers.resolver.PolicyResolver``; IP literals here.
    """

    def __init__(self, policy: AddressPolicy) -> None:
        self.policy = policy

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> UrlPolicy:
        """The policy of the crawler's settings."""
        return cls(AddressPolicy.from_settings(crawler.settings))

    def process_request(self, request: Request, spider: Spider | None = None) -> None:
        """Raise ``RequestRefused`` for a URL outside the policy."""
        try:
            check_url(request.url, policy=self.policy)
        except UrlRefused as refusal:
            if request.meta.get("redirect_urls"):
                refusal.message = f"redirect to {refusal.url} refused: {refusal.message}"
            raise RequestRefused(refusal) from None


class ExchangeRecorder:
    """Closest to the downloader (priority 950): sees each response before decompression and
    before redirects are followed, so every hop and the bytes as received are kept."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ExchangeRecorder:
        return cls(crawler)

    def process_request(self, request: Request, spider: Spider | None = None) -> None:
        request.meta.setdefault(EXCHANGES, [])
        request.meta[SENT_AT] = utc_now()

    def process_response(
        self, request: Request, response: Response, spider: Spider | None = None
    ) -> Response:
        headers = _header_list(request.headers)
        if not any(name.lower() == "host" for name, _ in headers):
            headers.insert(0, ("Host", urlsplit(request.url).netloc))
        certificate = getattr(response, "certificate", None)
        exchange = Exchange(
            method=request.method,
            url=request.url,
            request_headers=headers,
            request_body=request.body or b"",
            sent_at=request.meta.get(SENT_AT) or utc_now(),
            status=response.status,
            reason=reason_phrase(response.status),
            response_headers=_header_list(response.headers),
            body=response.body,
            received_at=utc_now(),
            ip=str(response.ip_address) if response.ip_address else None,
            protocol=response.protocol,
            certificate_pem=certificate.dumpPEM().decode("ascii") if certificate else None,
        )
        if request.meta.get("dont_obey_robotstxt") and request.url.endswith("/robots.txt"):
            # robots.txt fetched by Scrapy itself: archived once per host and run.
            getattr(self.crawler.spider, "robots_exchanges", []).append(exchange)
        else:
            request.meta.setdefault(EXCHANGES, []).append(exchange)
        return response
