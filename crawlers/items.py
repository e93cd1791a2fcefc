"""What a spider hands to the archive pipeline: one page and how its capture ended."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from crawlers.exchanges import Exchange

# How a URL's capture ended. Every URL ends with exactly one.
OUTCOMES = (
    "archived",  # a page (any status, 4xx/5xx included) is in the archive
    "login-wall",  # archived, and labelled: the server showed a login form instead of the page
    "redirect-loop",  # the redirects were archived; no final page
    "too-large",  # the response exceeded the size limit
    "timeout",
    "dns-error",
    "connection-error",
    "tls-error",
    "robots-disallowed",
    "failed",  # anything else, with the error recorded
)


@dataclass
class Resource:
    """A non-HTTP artifact of a capture: screenshot, PDF, rendered DOM."""

    role: str
    name: str
    media_type: str
    data: bytes
    redacted: list[str] = field(default_factory=list)  # names scrubbed from data (WARC-Redacted)


@dataclass
class PageCapture:
    """A finished capture of one requested URL."""

    requested_url: str
    mode: str  # http or browser
    outcome: str
    started_at: datetime
    finished_at: datetime
    exchanges: list[Exchange] = field(default_factory=list)
    resources: list[Resource] = field(default_factory=list)
    final_url: str | None = None
    status: int | None = None
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)  # browser: console, interactions...
