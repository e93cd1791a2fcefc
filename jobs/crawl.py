"""Crawl a registered source: one run, its captures archived, then timestamps and custody.

Spiders run in Scrapy with the archive pipeline (group commit as pages arrive); collectors
(dump downloads, files handed over) yield captures that ``archive_many`` stores in parallel and
commits in groups. Either way every item ends as one ``CaptureOutcome``, the run row says
succeeded, partial (some items not archived) or failed (none), and ``after_run`` follows.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evidence_store.archive import EvidenceStore, archive_many, check_signer
from evidence_store.errors import InputError, SourceChangedError
from evidence_store.runs import InterruptedRun
from jobs.config import Settings
from jobs.context import open_evidence
from jobs.progress import NO_PROGRESS, Progress
from jobs.runs import AfterRun, RunRecord, after_run, run_lifecycle
from jobs.sources import get_source, settings_for_run
from schemas import Capture, CaptureOutcome, CollectContext, SourceSettings, SourceSpec

OutcomeCallback = Callable[[CaptureOutcome], None]


@dataclass
class CrawlResult:
    """What one run of a source did."""

    run_id: str
    source: str
    collection: str
    status: str  # succeeded, partial, failed
    outcomes: list[CaptureOutcome]
    after: AfterRun
    interrupted: list[InterruptedRun] = field(default_factory=list)

    @property
    def items(self) -> list[CaptureOutcome]:
        """The outcomes of the items asked for (robots.txt captures are extra)."""
        return [o for o in self.outcomes if o.mode != "robots"]

    @property
    def snapshots(self) -> list[str]:
        return [o.snapshot for o in self.outcomes if o.snapshot]

    def counts(self) -> dict[str, int]:
        return count_outcomes(self.items)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.run_id,
            "source": self.source,
            "collection": self.collection,
            "status": self.status,
            "counts": self.counts(),
            "outcomes": [
                o.model_dump(mode="json")
                | {"timestamp": self.after.timestamps.get(o.snapshot or "")}
                for o in self.outcomes
            ],
            "after_run": self.after.to_dict(),
            "interrupted_runs": [r.id for r in self.interrupted],
        }


def run_status(items: list[CaptureOutcome]) -> str:
    """succeeded when every item was archived, failed when none was, partial otherwise."""
    archived = sum(1 for o in items if o.snapshot)
    if items and archived == len(items):
        return "succeeded"
    return "partial" if archived else "failed"


def crawl(
    settings: Settings,
    name: str,
    arguments: Iterable[str] = (),
    *,
    overrides: Mapping[str, Any] | None = None,
    source_label: str | None = None,
    note: str | None = None,
    trigger: str = "manual",
    progress: Progress = NO_PROGRESS,
    on_outcome: OutcomeCallback | None = None,
) -> CrawlResult:
    """Run the registered source ``name`` once with its configured settings, the ``-a``
    ``arguments`` and a command's ``overrides``; everything is validated before any work.

    ``source_label`` names the source in the records instead (`evidence ingest --source`).
    """
    spec = get_source(name)
    source_settings = settings_for_run(
        spec, settings.sources.get(spec.name, {}), arguments, overrides
    )
    collection = source_settings.collection or spec.collection
    label = source_label or spec.name
    evidence = open_evidence(settings)
    evidence.objects.check()
    # A key outside the endorsed history would be refused at each commit, after the pages
    # were fetched and their bytes stored: refuse the run before any network work instead.
    check_signer(evidence)
    outcomes: list[CaptureOutcome] = []

    def collected(outcome: CaptureOutcome) -> None:
        outcomes.append(outcome)
        if outcome.mode != "robots":
            progress.advance(1, item=outcome.url)
        if on_outcome is not None:
            on_outcome(outcome)

    kind = "capture" if spec.kind == "spider" else spec.kind
    with run_lifecycle(
        evidence, kind=kind, collection=collection, source=label, note=note, trigger=trigger
    ) as run:
        progress.stage(f"{spec.name}: capturing", total=_expected_items(source_settings))
        if spec.spider is not None:
            _run_spider(evidence, settings, spec, source_settings, run, note, collected)
        else:
            _run_collector(evidence, settings, spec, source_settings, run, note, collected)
        items = [o for o in outcomes if o.mode != "robots"]
        run.status = run_status(items)
        after = after_run(
            evidence,
            settings,
            [o.snapshot for o in outcomes if o.snapshot],
            source=label,
            run_id=run.id,
            progress=progress,
        )
        run.stats.update(
            items=len(items),
            snapshots=sum(1 for o in outcomes if o.snapshot),
            outcomes=count_outcomes(items),
            untimestamped=len(after.untimestamped),
        )
    return CrawlResult(
        run_id=run.id,
        source=label,
        collection=collection,
        status=run.status,
        outcomes=outcomes,
        after=after,
        interrupted=run.interrupted,
    )


def count_outcomes(items: list[CaptureOutcome]) -> dict[str, int]:
    """How many items ended with each outcome, by outcome name."""
    counts: dict[str, int] = {}
    for o in items:
        counts[o.outcome] = counts.get(o.outcome, 0) + 1
    return dict(sorted(counts.items()))


def _expected_items(source_settings: SourceSettings) -> int | None:
    for key in ("urls", "paths"):
        value = getattr(source_settings, key, None)
        if isinstance(value, list) and value:
            return len(value)
    return None


def _run_spider(
    evidence: EvidenceStore,
    settings: Settings,
    spec: SourceSpec,
    source_settings: SourceSettings,
    run: RunRecord,
    note: str | None,
    collected: OutcomeCallback,
) -> None:
    from crawlers.runner import run_spider

    run_spider(
        evidence,
        spec.spider,
        source_settings.spider_arguments(),
        browser=source_settings.uses_browser(spec.browser),
        on_outcome=collected,
        EVIDENCE_COLLECTION=source_settings.collection or spec.collection,
        EVIDENCE_NOTE=note,
        EVIDENCE_SOURCE=run.source,
        EVIDENCE_RUN_ID=run.id,
        EVIDENCE_OPERATOR=settings.actor,
        EVIDENCE_ALLOW_PRIVATE=settings.allow_private,
        **source_settings.scrapy_settings(),
    )


def _run_collector(
    evidence: EvidenceStore,
    settings: Settings,
    spec: SourceSpec,
    source_settings: SourceSettings,
    run: RunRecord,
    note: str | None,
    collected: OutcomeCallback,
) -> None:
    assert spec.collect is not None
    workdir = Path(tempfile.mkdtemp(prefix=f"evidence-{spec.name}-"))
    try:
        context = CollectContext(
            run_id=run.id,
            collection=source_settings.collection or spec.collection,
            source=run.source or spec.name,
            note=note,
            operator=settings.actor,
            workdir=workdir,
        )
        archive_captures(evidence, spec.collect(source_settings, context), collected)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def archive_captures(
    evidence: EvidenceStore,
    items: Iterable[Capture | CaptureOutcome],
    on_outcome: OutcomeCallback,
) -> None:
    """Archive a collector's captures with group commit, one outcome each, in order.

    A capture whose input fails (a file that changed while it was stored, one that vanished)
    ends as its own outcome and the others go on; a failure of the store or the index stops
    the run (it would fail every capture after it too).
    """
    source = iter(items)
    replay: deque[Capture] = deque()
    in_flight: deque[Capture] = deque()

    def feed() -> Iterator[Capture]:
        while True:
            item = replay.popleft() if replay else next(source, None)
            if item is None:
                return
            if isinstance(item, CaptureOutcome):
                on_outcome(item)  # the collector could not capture this one
                continue
            in_flight.append(item)
            yield item

    while True:
        try:
            for archived in archive_many(evidence, feed()):
                capture = in_flight.popleft()
                on_outcome(_archived_outcome(capture, archived))
            return
        except InputError as exc:
            failed = in_flight.popleft()  # archive_many fails on the capture after the last
            on_outcome(
                CaptureOutcome(
                    url=_label(failed),
                    outcome="changed-while-read"
                    if isinstance(exc, SourceChangedError)
                    else "unreadable",
                    mode=failed.kind,
                    error=str(exc),
                )
            )
            replay.extendleft(reversed(in_flight))
            in_flight.clear()


def _label(capture: Capture) -> str:
    path = capture.artifacts[0].path
    return str(path) if path is not None else capture.source_url or capture.artifacts[0].name


def _archived_outcome(capture: Capture, archived: Any) -> CaptureOutcome:
    return CaptureOutcome(
        url=_label(capture),
        outcome="archived",
        mode=capture.kind,
        final_url=capture.source_url,
        snapshot=archived.id,
        sequence=archived.sequence,
        artifacts=list(archived.manifest.artifacts),
    )
