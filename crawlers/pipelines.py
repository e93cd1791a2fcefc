"""The archive pipeline: each finished page becomes a snapshot through evidence_store.archive().

The evidence store (an evidence_store.archive.EvidenceStore) comes as ``crawler.evidence_store``,
set by crawlers.runner; the rest from settings: ``EVIDENCE_COLLECTION``, ``EVIDENCE_NOTE``,
``EVIDENCE_RUN_ID``, ``EVIDENCE_OPERATOR``, ``REDACT_QUERY_PARAMS``, ``REDACT_HEADERS``.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from pathlib import Path

from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured

from crawlers.archiving import build_capture
from crawlers.exchanges import Exchange
from crawlers.items import PageCapture
from crawlers.redaction import Redactor
from crawlers.signals import capture_finished
from evidence_store.archive import EvidenceStore, archive
from evidence_store.errors import EvidenceError
from schemas import CaptureOutcome

log = logging.getLogger(__name__)


class ArchivePipeline:
    def __init__(self, crawler: Crawler, evidence: EvidenceStore) -> None:
        settings = crawler.settings
        self.crawler = crawler
        self.evidence = evidence
        self.collection = settings.get("EVIDENCE_COLLECTION", "default")
        self.note = settings.get("EVIDENCE_NOTE")
        self.run_id = settings.get("EVIDENCE_RUN_ID")
        self.source = settings.get("EVIDENCE_SOURCE")
        self.operator = settings.get("EVIDENCE_OPERATOR") or evidence.actor
        self.user_agent = settings.get("USER_AGENT")
        self.redactor = Redactor(
            query_params=set(settings.getlist("REDACT_QUERY_PARAMS")),
            header_names=set(settings.getlist("REDACT_HEADERS")),
        )
        self.workdir = Path(tempfile.mkdtemp(prefix="evidence-capture-"))

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ArchivePipeline:
        evidence = getattr(crawler, "evidence_store", None)
        if evidence is None:
            raise NotConfigured("run captures through `evidence capture` (no evidence store)")
        return cls(crawler, evidence)

    async def process_item(self, item: PageCapture) -> PageCapture:
        outcome = CaptureOutcome(
            url=item.requested_url,
            outcome=item.outcome,
            mode=item.mode,
            status=item.status,
            final_url=item.final_url,
            error=item.error,
        )
        if item.exchanges or item.resources:
            try:
                archived = await asyncio.to_thread(self._archive, item)
            except EvidenceError as exc:
                # One URL that cannot be archived must not stop the run: it is reported.
                log.error("could not archive %s: %s", item.requested_url, exc)
                outcome.outcome, outcome.error = "failed", f"archive failed: {exc}"
            except Exception as exc:  # a bug, but the run and the other URLs go on
                log.exception("could not archive %s", item.requested_url)
                outcome.outcome = "failed"
                outcome.error = f"archive failed: {type(exc).__name__}: {exc}"
            else:
                outcome.snapshot = archived.id
                outcome.artifacts = list(archived.manifest.artifacts)
                outcome.url = archived.manifest.source_url or outcome.url
        self.crawler.signals.send_catch_log(capture_finished, outcome=outcome)
        return item

    def _archive(self, page: PageCapture):
        capture = build_capture(
            page,
            workdir=self.workdir,
            redactor=self.redactor,
            collection=self.collection,
            note=self.note,
            run_id=self.run_id,
            source=self.source,
            operator=self.operator,
            user_agent=self.user_agent,
        )
        try:
            return archive(self.evidence, capture)
        finally:
            for artifact in capture.artifacts:
                if artifact.path is not None:
                    artifact.path.unlink(missing_ok=True)

    async def close_spider(self) -> None:
        # robots.txt as fetched during this run, one snapshot per host.
        spider = self.crawler.spider
        for exchange in getattr(spider, "robots_exchanges", []):
            await self.process_item(self._robots_page(exchange))
        shutil.rmtree(self.workdir, ignore_errors=True)

    @staticmethod
    def _robots_page(exchange: Exchange) -> PageCapture:
        return PageCapture(
            requested_url=exchange.url,
            mode="robots",
            outcome="archived",
            started_at=exchange.sent_at,
            finished_at=exchange.received_at,
            exchanges=[exchange],
            final_url=exchange.url,
            status=exchange.status,
        )
