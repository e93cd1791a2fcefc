"""Running a spider from Python: the jobs layer's `crawl` (and so `evidence capture`) uses this.

Twisted's reactor runs once per process: one call per process (the scheduler runs each run in
a subprocess of its own).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from scrapy import Spider
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
        from crawlers.chromium import playwright_settings

        # project priority: a per-run override of the same key still wins
        for key, value in playwright_settings(settings).items():
            settings.set(key, value, priority="project")
    return settings


@dataclass
class SpiderRun:
    """What a crawl did: one outcome per item (and per robots.txt), and Scrapy's stats
    (``finish_reason`` is ``shutdown`` when a signal stopped it)."""

    outcomes: list[CaptureOutcome]
    stats: dict[str, Any]


def run_spider(
    evidence: EvidenceStore,
    spider: type[Spider],
    arguments: dict[str, Any],
    *,
    browser: bool = False,
    on_outcome: Callable[[CaptureOutcome], None] | None = None,
    **settings: Any,
) -> SpiderRun:
    """Run ``spider`` with ``arguments`` and the archive pipeline; the outcomes in the order
    the items ended, and the crawl's stats."""
    outcomes: list[CaptureOutcome] = []

    def collect(outcome: CaptureOutcome, **_: Any) -> None:
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)

    process = CrawlerProcess(
        capture_settings(
            mode="browser" if browser else "http", LOG_INSTALL_ROOT_HANDLER=False, **settings
        )
    )
    crawler = process.create_crawler(spider)
    # Settings are deep-copied and must stay picklable; the store (locks, connections) is
    # handed to the pipeline on the crawler instead.
    crawler.evidence_store = evidence  # type: ignore[attr-defined]
    crawler.signals.connect(collect, signal=capture_finished)
    process.crawl(crawler, **arguments)
    process.start()
    stats = crawler.stats.get_stats() if crawler.stats is not None else {}
    return SpiderRun(outcomes, {k: v for k, v in stats.items() if not hasattr(v, "tzinfo")})


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
    return run_spider(
        evidence,
        PagesSpider,
        {"urls": urls, "mode": mode, "obey_robots": obey_robots},
        browser=mode == "browser",
        on_outcome=on_outcome,
        **settings,
    ).outcomes
