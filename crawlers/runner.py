"""Running a capture from Python (the `evidence capture` command uses this)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from scrapy.crawler import CrawlerProcess
from scrapy.settings import Settings

from crawlers.signals import capture_finished
from crawlers.spiders.pages import PagesSpider
from evidence_store.archive import EvidenceStore
from schemas import CaptureOutcome


def capture_settings(mode: str = "http", **overrides: Any) -> Settings:
    """The project settings plus per-run overrides; for ``mode="browser"`` also the
    Playwright settings (download handler, Chromium, contexts) made from ``BROWSER_*``.
    """
    settings = Settings()
    settings.setmodule("crawlers.settings", priority="project")
    for key, value in overrides.items():
        if value is not None:
            settings.set(key, value, priority="cmdline")
    if mode == "browser":
        from crawlers.browser import playwright_settings

        # project priority: a per-run override of the same key still wins
        for key, value in playwright_settings(settings).items():
            settings.set(key, value, priority="project")
    return settings


def capture_pages(
    evidence: EvidenceStore,
    urls: list[str],
    *,
    mode: str = "http",
    obey_robots: bool = True,
    on_outcome: Callable[[CaptureOutcome], None] | None = None,
    **settings: Any,
) -> list[CaptureOutcome]:
    """Capture each URL as one snapshot; returns one outcome per URL (plus robots.txt)."""
    outcomes: list[CaptureOutcome] = []

    def collect(outcome: CaptureOutcome, **_: Any) -> None:
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)

    process = CrawlerProcess(
        capture_settings(mode=mode, LOG_INSTALL_ROOT_HANDLER=False, **settings)
    )
    crawler = process.create_crawler(PagesSpider)
    # Settings are deep-copied and must stay picklable; the store (locks, connections) is
    # handed to the pipeline on the crawler instead.
    crawler.evidence_store = evidence  # type: ignore[attr-defined]
    crawler.signals.connect(collect, signal=capture_finished)
    process.crawl(crawler, urls=urls, mode=mode, obey_robots=obey_robots)
    process.start()
    return outcomes
