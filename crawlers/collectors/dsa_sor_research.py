"""`dsa-sor-research`: searches of the Transparency Database's research API, archived as asked
and as answered.

The research API (POST /api/v1/research/search and /count, a bearer token, OpenSearch query
bodies) reaches statements the daily dumps no longer hold, but it answers at most 1,000 rows
and has no paging, and it allows 50 requests a minute. Each configured query becomes one
snapshot: the request body as sent and the JSON answer as received, with the HTTP status and
headers. The token travels in the Authorization header only and never enters the archive.
A search that hit the 1,000-row cap is archived and reported as ``truncated``: narrow it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator

from crawlers.collectors.dsa_sor import BASE_URL
from crawlers.download import Client, DownloadError
from crawlers.urls import AddressPolicy
from evidence_store.errors import InputError
from schemas import (
    Capture,
    CaptureArtifact,
    CaptureOutcome,
    CollectContext,
    SourceSettings,
    SourceSpec,
)

SEARCH_PATH = "/api/v1/research/search"
COUNT_PATH = "/api/v1/research/count"
MAX_ROWS = 1000
REQUESTS_PER_MINUTE = 50


class ResearchSettings(SourceSettings):
    base_url: str = Field(default=BASE_URL, description="the Transparency Database")
    token: SecretStr | None = Field(
        default=None, description="research API token (evidence.toml or the environment only)"
    )
    queries: list[str] = Field(
        default_factory=list,
        description='OpenSearch request bodies as JSON text, e.g. {"query": {"term": '
        '{"platform_name": "TikTok"}}, "size": 1000}; each is archived with its answer',
    )
    endpoint: Literal["search", "count"] = Field(
        default="search", description="search (rows, at most 1,000) or count"
    )
    per_minute: int = Field(
        default=REQUESTS_PER_MINUTE,
        ge=1,
        le=REQUESTS_PER_MINUTE,
        description="requests a minute at most (the API allows 50)",
    )
    timeout: float = Field(default=60.0, gt=0, le=600, description="network timeout, seconds")

    @field_validator("queries")
    @classmethod
    def _queries(cls, value: list[str]) -> list[str]:
        for position, text in enumerate(value, 1):
            try:
                body = json.loads(text)
            except ValueError as exc:
                raise ValueError(f"query {position} is not JSON: {exc}") from None
            if not isinstance(body, dict):
                raise ValueError(f"query {position} must be a JSON object (an OpenSearch body)")
        return value


def collect(
    settings: ResearchSettings, context: CollectContext
) -> Iterator[Capture | CaptureOutcome]:
    """One capture per query (request and answer), paced to the API's rate limit."""
    if settings.token is None:
        raise InputError(
            "dsa-sor-research needs a token: set [sources.dsa-sor-research] token in "
            "evidence.toml or EVIDENCE_SOURCES__DSA_SOR_RESEARCH__TOKEN"
        )
    if not settings.queries:
        raise InputError("dsa-sor-research: no queries (-a query='{...}' or [sources] queries)")
    client = Client(
        policy=AddressPolicy(allow_private=context.allow_private),
        timeout=settings.timeout,
        backoff=60 / settings.per_minute,
    )
    path = SEARCH_PATH if settings.endpoint == "search" else COUNT_PATH
    url = settings.base_url.rstrip("/") + path
    headers = {"Authorization": f"Bearer {settings.token.get_secret_value()}"}
    interval = 60 / settings.per_minute
    last = 0.0
    for position, text in enumerate(settings.queries, 1):
        wait = last + interval - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        last = time.monotonic()
        body = json.loads(text)
        label = f"{url}#query-{position}"
        try:
            response = client.post_json(url, body, headers=headers)
            answer = response.json()
        except DownloadError as exc:
            yield CaptureOutcome(url=label, outcome=exc.outcome, mode="api", error=str(exc))
            continue
        metadata: dict[str, Any] = {
            "dsa_sor_research": {"endpoint": settings.endpoint, "position": position},
            "http": {
                "status": response.status,
                "headers": response.headers,
                "server_ip": response.server_ip,
                "redacted": ["Authorization request header"],
            },
        }
        if settings.endpoint == "search":
            hits = (answer.get("hits") or {}) if isinstance(answer, dict) else {}
            total = (hits.get("total") or {}).get("value")
            returned = len(hits.get("hits") or [])
            metadata["dsa_sor_research"] |= {"total": total, "returned": returned}
            # The API's cap, not the size asked for, cut the answer short: narrow the query.
            metadata["dsa_sor_research"]["truncated"] = bool(
                total is not None and total > returned >= MAX_ROWS
            )
        else:
            metadata["dsa_sor_research"]["count"] = (
                answer.get("count") if isinstance(answer, dict) else None
            )
        yield Capture(
            collection=context.collection,
            kind="api",
            source=context.source,
            source_url=label,
            note=context.note,
            run_id=context.run_id,
            metadata=metadata,
            artifacts=[
                CaptureArtifact(
                    role="request",
                    name=f"query-{position}.json",
                    media_type="application/json",
                    data=json.dumps(body, ensure_ascii=False, indent=1).encode(),
                ),
                CaptureArtifact(
                    role="response",
                    name=f"answer-{position}.json",
                    media_type="application/json",
                    data=response.body or b"",
                ),
            ],
        )


SOURCE = SourceSpec(
    name="dsa-sor-research",
    kind="api",
    description="DSA Transparency Database research API: searches archived with their answers "
    "(needs a token; 50 requests a minute, 1,000 rows a search)",
    settings=ResearchSettings,
    collection="dsa-sor",
    timestamp_mode="merkle",
    collect=collect,
)
