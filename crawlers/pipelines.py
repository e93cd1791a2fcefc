"""The archive pipeline: each finished page becomes a snapshot in the evidence store.

A page's artifacts are written and read back in a worker thread as soon as it arrives; then
its snapshot is committed together with the others ready at that moment (group commit, as
``evidence_store.archive.archive_many`` does for ingestion): one transaction, one flush of the
object store and one lock round for the group instead of one per page.

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
from typing import Any

from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured

from crawlers.archiving import build_capture
from crawlers.exchanges import Exchange
from crawlers.items import PageCapture
from crawlers.redaction import Redactor
from crawlers.signals import capture_finished
from evidence_store.archive import (
    ArchivedSnapshot,
    EvidenceStore,
    commit_snapshots,
    store_artifacts,
)
from evidence_store.errors import EvidenceError
from schemas import ArtifactEntry, Capture, CaptureOutcome

log = logging.getLogger(__name__)


class GroupCommitter:
    """Commits captures whose bytes are stored, in groups formed while the last one commits.

    The first capture commits at once; those that arrive while it commits wait and go in the
    next group (up to ``max_group``), so latency stays one commit and throughput grows with
    the load. Chain order is arrival order. When a group fails, its captures are retried one
    by one, so that one bad capture fails alone.
    """

    def __init__(self, evidence: EvidenceStore, *, max_group: int = 64) -> None:
        self.evidence = evidence
        self.max_group = max_group
        self._waiting: list[tuple[Capture, list[ArtifactEntry], asyncio.Future[Any]]] = []
        self._committing: asyncio.Task[None] | None = None
        self.groups = 0  # transactions that committed snapshots, for the crawl's log
        self.committed = 0

    async def commit(self, capture: Capture, entries: list[ArtifactEntry]) -> ArchivedSnapshot:
        """Commit one capture (with whichever others are waiting); its archived snapshot."""
        future: asyncio.Future[ArchivedSnapshot] = asyncio.get_running_loop().create_future()
        self._waiting.append((capture, entries, future))
        if self._committing is None or self._committing.done():
            self._committing = asyncio.ensure_future(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._waiting:
            group = self._waiting[: self.max_group]
            del self._waiting[: self.max_group]
            items = [(capture, entries) for capture, entries, _ in group]
            try:
                archived = await self._commit(items)
            except Exception as exc:
                if len(group) == 1:
                    _settle(group[0][2], exc)
                    continue
                for item, (_, _, future) in zip(items, group, strict=True):
                    try:
                        [one] = await self._commit([item])
                    except Exception as item_exc:
                        _settle(future, item_exc)
                    else:
                        _settle(future, one)
            else:
                for (_, _, future), snapshot in zip(group, archived, strict=True):
                    _settle(future, snapshot)

    async def _commit(
        self, items: list[tuple[Capture, list[ArtifactEntry]]]
    ) -> list[ArchivedSnapshot]:
        archived = await asyncio.to_thread(commit_snapshots, self.evidence, items)
        self.groups += 1
        self.committed += len(archived)
        return archived


def _settle(future: asyncio.Future[Any], outcome: Any) -> None:
    if future.done():  # the waiting item was cancelled (the crawl is shutting down)
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


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
        self.committer = GroupCommitter(evidence)

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
                capture, entries = await asyncio.to_thread(self._store, item)
                archived = await self.committer.commit(capture, entries)
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
                outcome.sequence = archived.sequence
                outcome.artifacts = list(archived.manifest.artifacts)
                outcome.url = archived.manifest.source_url or outcome.url
        self.crawler.signals.send_catch_log(capture_finished, outcome=outcome)
        return item

    def _store(self, page: PageCapture) -> tuple[Capture, list[ArtifactEntry]]:
        """Build the capture's files and store them (read back); the capture and its entries."""
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
            return capture, store_artifacts(self.evidence.objects, capture)
        finally:  # stored and read back, or failed: the working copies are not needed
            for artifact in capture.artifacts:
                if artifact.path is not None:
                    artifact.path.unlink(missing_ok=True)

    async def close_spider(self) -> None:
        # robots.txt as fetched during this run, one snapshot per host.
        spider = self.crawler.spider
        for exchange in getattr(spider, "robots_exchanges", []):
            await self.process_item(self._robots_page(exchange))
        shutil.rmtree(self.workdir, ignore_errors=True)
        if self.committer.committed:
            log.info(
                "archived %d snapshot(s) in %d group commit(s)",
                self.committer.committed,
                self.committer.groups,
            )

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
