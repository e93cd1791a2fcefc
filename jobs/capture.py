"""Capture single pages quickly: a run of the registered `pages` source.

URLs are checked before any network work (a bad one gets its own outcome, the others are
captured); so are the collection and every other argument.
"""

from __future__ import annotations

from pathlib import Path

from jobs.config import Settings
from jobs.crawl import CrawlResult, OutcomeCallback, crawl
from jobs.progress import NO_PROGRESS, Progress


def capture(
    settings: Settings,
    urls: list[str],
    *,
    urls_file: Path | None = None,
    browser: bool = False,
    collection: str = "default",
    note: str | None = None,
    source: str | None = None,
    obey_robots: bool = True,
    timeout: float | None = None,
    max_bytes: int | None = None,
    progress: Progress = NO_PROGRESS,
    on_outcome: OutcomeCallback | None = None,
) -> CrawlResult:
    """Capture each URL as one snapshot (plain HTTP, or rendered by Chromium)."""
    return crawl(
        settings,
        "pages",
        overrides={
            "urls": urls,
            "urls_file": urls_file,
            "mode": "browser" if browser else "http",
            "collection": collection,
            "obey_robots": obey_robots,
            "timeout": timeout,
            "max_bytes": max_bytes,
        },
        source_label=source,
        note=note,
        progress=progress,
        on_outcome=on_outcome,
    )
