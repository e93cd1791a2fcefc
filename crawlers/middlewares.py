"""Downloader middleware that records every exchange as it was transferred."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from scrapy import Request, Spider
from scrapy.crawler import Crawler
from scrapy.http import Response

from crawlers.exchanges import Exchange, reason_phrase
from schemas import utc_now

EXCHANGES = "evidence_exchanges"  # request.meta key: shared by a request and its redirects
SENT_AT = "evidence_sent_at"


def _header_list(headers: Any) -> list[tuple[str, str]]:
    return [
        (name.decode("latin-1"), value.decode("latin-1"))
        for name, values in headers.items()
        for value in values
    ]


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
