"""Preserve files obtained elsewhere (a report, a user's data export): the `files` source.

Every argument is checked before anything is read or written; each file becomes one snapshot,
archived with group commit; a file that changes while it is read is refused on its own.
"""

from __future__ import annotations

from pathlib import Path

from jobs.config import Settings
from jobs.crawl import CrawlResult, OutcomeCallback, crawl
from jobs.progress import NO_PROGRESS, Progress


def ingest(
    settings: Settings,
    files: list[Path],
    *,
    collection: str = "default",
    source: str | None = None,
    source_url: str | None = None,
    note: str | None = None,
    media_type: str | None = None,
    progress: Progress = NO_PROGRESS,
    on_outcome: OutcomeCallback | None = None,
) -> CrawlResult:
    """Archive ``files`` as one run of the `files` source (recorded under ``source`` if given).

    ``source_url`` is redacted (passwords, tokens) as capture URLs are, before it is written.
    """
    return crawl(
        settings,
        "files",
        overrides={
            "paths": files,
            "collection": collection,
            "source_url": source_url,
            "media_type": media_type,
        },
        source_label=source,
        note=note,
        progress=progress,
        on_outcome=on_outcome,
    )
