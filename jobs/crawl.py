"""Crawl a registered source: one run, its captures archived, then timestamps and custody.

Spiders run in Scrapy with the archive pipeline (group commit as pages arrive); collectors
(dump downloads, files handed over) yield captures that ``archive_many`` stores in parallel and
commits in groups. Either way every item ends as one ``CaptureOutcome``, the run row says
succeeded, partial (some items not archived) or failed (none), and ``after_run`` follows.
"""

from __future__ import annotations

import importlib
import itertools
import logging
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
from jobs.alerts import alert_if_needed
from jobs.config import Settings
from jobs.context import open_evidence
from jobs.progress import NO_PROGRESS, Progress
from jobs.run_report import archive_run_report, run_log
from jobs.runs import AfterRun, RunRecord, after_run, run_lifecycle
from jobs.sources import configured_source, settings_for_run
from schemas import (
    Capture,
    CaptureOutcome,
    CollectContext,
    ParseResult,
    SourceSettings,
    SourceSpec,
)

OutcomeCallback = Callable[[CaptureOutcome], None]
log = logging.getLogger(__name__)


@dataclass
class CrawlResult:
    """What one run of a source did."""

    run_id: str
    source: str
    collection: str
    status: str  # succeeded, partial, failed, interrupted
    outcomes: list[CaptureOutcome]
    after: AfterRun
    interrupted: list[InterruptedRun] = field(default_factory=list)
    parsed: ParseResult | None = None  # what the source's records step made of the snapshots

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
        } | (
            {}
            if self.parsed is None
            else {
                "records": self.parsed.records,
                "derived_snapshots": self.parsed.snapshots,
                "records_stats": self.parsed.stats,
            }
        )


def run_status(items: list[CaptureOutcome]) -> str:
    """succeeded when every item was archived as what was asked for, failed when none was
    archived, partial otherwise (an item not archived, or archived but a login wall: what a
    source shows when it stops serving us is evidence, but not the evidence asked for)."""
    archived = sum(1 for o in items if o.snapshot)
    if items and all(o.snapshot and o.outcome == "archived" for o in items):
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
    """Run the source ``name`` (a registered source, or an entry of [sources] with a
    ``type``) once with its configured settings, the ``-a`` ``arguments`` and a command's
    ``overrides``; everything is validated before any work.

    One run per source at a time (RunConflict otherwise). ``source_label`` names the source
    in the records instead (`evidence ingest --source`). A scheduled run (``trigger``
    "schedule") also archives its report and log as a snapshot, and alerts when configured.
    """
    arguments = list(arguments)
    entry, spec, configured = configured_source(settings.sources, name)
    source_settings = settings_for_run(spec, configured, arguments, overrides)
    collection = source_settings.collection or spec.collection
    label = source_label or entry
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
    keep_report = trigger == "schedule"
    workdir = Path(tempfile.mkdtemp(prefix="evidence-run-"))
    try:
        with (
            run_log(workdir / "run.log", enabled=keep_report),
            run_lifecycle(
                evidence,
                kind=kind,
                collection=collection,
                source=label,
                note=note,
                trigger=trigger,
                exclusive=True,
            ) as run,
        ):
            log.info("run %s of %s (%s) started by %s", run.id, label, trigger, settings.actor)
            record_plan(evidence, run.id, run_plan(entry, arguments, overrides, note))
            stats, parsed = execute(
                evidence, settings, spec, source_settings, run, note, collected, workdir, progress
            )
            items = [o for o in outcomes if o.mode != "robots"]
            run.status = run_status(items)
            if stats.get("finish_reason") == "shutdown":
                run.status = "interrupted"  # a signal stopped the crawl half way
            run.stats.update(
                items=len(items),
                snapshots=sum(1 for o in outcomes if o.snapshot),
                outcomes=count_outcomes(items),
                requests=stats.get("downloader/request_count", 0),
                failures=_failures(items),
                trigger=trigger,
            )
            if spec.records is not None:
                run.stats["records"] = parsed.records
                run.stats["derived_snapshots"] = len(parsed.snapshots)
                run.stats.update(parsed.stats)
            log.info("run %s: %s, %s", run.id, run.status, count_outcomes(items))
            result = CrawlResult(
                run_id=run.id,
                source=label,
                collection=collection,
                status=run.status,
                outcomes=outcomes,
                after=AfterRun(),
                interrupted=run.interrupted,
                parsed=parsed if spec.records is not None else None,
            )
            snapshots = [o.snapshot for o in outcomes if o.snapshot] + parsed.snapshots
            if keep_report:
                # Archived before the timestamps, so that one token (or tree) covers it too.
                report = archive_run_report(evidence, result, run, workdir / "run.log")
                run.stats["report_snapshot"] = report
                snapshots.append(report)
            result.after = after_run(
                evidence, settings, snapshots, source=label, run_id=run.id, progress=progress
            )
            run.stats["untimestamped"] = len(result.after.untimestamped)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if trigger in settings.alerts.on:
        result.after.warnings.extend(alert_if_needed(settings, evidence, result))
    return result


def run_plan(
    source: str, arguments: list[str], overrides: Mapping[str, Any] | None, note: str | None
) -> dict[str, Any]:
    """What a run is asked to do, as the run row keeps it (so that it can be resumed), with
    credentials in URLs removed: a password or token never enters the index. A plan from which
    something was removed says so (``redacted``), and such a run is not resumed."""
    from pydantic_core import to_jsonable_python

    from crawlers.redaction import Redactor

    pairs = [list(argument.partition("=")[::2]) for argument in arguments]
    options = to_jsonable_python({k: v for k, v in (overrides or {}).items() if v is not None})
    (pairs, options), redacted = Redactor().redact_data([pairs, options])
    plan: dict[str, Any] = {
        "source": source,
        "arguments": [f"{key}={value}" for key, value in pairs],
        "overrides": options,
        "note": note,
    }
    if redacted:
        plan["redacted"] = sorted(set(redacted))
    return plan


def record_plan(evidence: EvidenceStore, run_id: str, plan: dict[str, Any]) -> None:
    """Write down the run's plan now, so that it can be resumed if its process dies
    (`evidence runs resume`)."""
    from evidence_store.index.models import Run

    with evidence.index.writing() as session:
        row = session.get(Run, run_id)
        if row is not None:
            row.stats = {**row.stats, "distributed": plan}


def execute(
    evidence: EvidenceStore,
    settings: Settings,
    spec: SourceSpec,
    source_settings: SourceSettings,
    run: RunRecord,
    note: str | None,
    collected: OutcomeCallback,
    workdir: Path,
    progress: Progress = NO_PROGRESS,
) -> tuple[dict[str, Any], ParseResult]:
    """The work of a run, inside it: the source's prepare step, its spider or collector, its
    records step. Outcomes go to ``collected`` (the records step's too); returns the crawl's
    statistics and what the records step made."""
    prepare = hook(spec.prepare)
    if prepare is not None:
        context = _context(settings, spec, source_settings, run, note, workdir)
        source_settings = prepare(evidence, source_settings, context)
    progress.stage(f"{run.source}: capturing", total=_expected_items(source_settings))
    outcomes: list[CaptureOutcome] = []

    def kept(outcome: CaptureOutcome) -> None:
        outcomes.append(outcome)
        collected(outcome)

    if spec.spider is not None:
        stats = _run_spider(evidence, settings, spec, source_settings, run, note, kept)
    else:
        stats = _run_collector(evidence, settings, spec, source_settings, run, note, kept)
    parsed = _parse_records(evidence, settings, spec, source_settings, run, note, outcomes)
    for outcome in parsed.outcomes:
        collected(outcome)
    return stats, parsed


def _failures(items: list[CaptureOutcome]) -> list[dict[str, str]]:
    # What to retry next time: each item that was not archived, with why (capped).
    return [
        {"item": o.url, "outcome": o.outcome, "error": (o.error or "")[:300]}
        for o in items
        if o.snapshot is None
    ][:200]


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
) -> dict[str, Any]:
    from crawlers.runner import run_spider

    return run_spider(
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
    ).stats


def _context(
    settings: Settings,
    spec: SourceSpec,
    source_settings: SourceSettings,
    run: RunRecord,
    note: str | None,
    workdir: Path,
) -> CollectContext:
    return CollectContext(
        run_id=run.id,
        collection=source_settings.collection or spec.collection,
        source=run.source or spec.name,
        note=note,
        operator=settings.actor,
        workdir=workdir,
        allow_private=settings.allow_private,
    )


def hook(target: str | None) -> Callable[..., Any] | None:
    """The function a source's ``records`` or ``prepare`` names ("module:function")."""
    if target is None:
        return None
    module_name, _, function = target.partition(":")
    return getattr(importlib.import_module(module_name), function)


def _parse_records(
    evidence: EvidenceStore,
    settings: Settings,
    spec: SourceSpec,
    source_settings: SourceSettings,
    run: RunRecord,
    note: str | None,
    outcomes: list[CaptureOutcome],
) -> ParseResult:
    # Records are made from the archived bytes, after they are committed: the evidence of a
    # run survives a parser that fails, and a parser can be run again over old snapshots.
    parser = hook(spec.records)
    archived = [o.snapshot for o in outcomes if o.snapshot and o.mode != "robots"]
    if parser is None or not archived:
        return ParseResult()
    workdir = Path(tempfile.mkdtemp(prefix=f"evidence-{spec.name}-records-"))
    try:
        context = _context(settings, spec, source_settings, run, note, workdir)
        return parser(evidence, source_settings, context, archived)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run_collector(
    evidence: EvidenceStore,
    settings: Settings,
    spec: SourceSpec,
    source_settings: SourceSettings,
    run: RunRecord,
    note: str | None,
    collected: OutcomeCallback,
) -> dict[str, Any]:
    assert spec.collect is not None
    workdir = Path(tempfile.mkdtemp(prefix=f"evidence-{spec.name}-"))
    try:
        context = _context(settings, spec, source_settings, run, note, workdir)
        items = spec.collect(source_settings, context)
        if source_settings.max_pages is not None:
            items = itertools.islice(items, source_settings.max_pages)
        archive_captures(evidence, items, collected)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {}


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
    # A file handed over is named by its path; a download by where it came from (its path
    # is only the run's scratch copy).
    path = capture.artifacts[0].path
    if capture.source_url and (path is None or capture.kind != "ingest"):
        return capture.source_url
    return str(path) if path is not None else capture.artifacts[0].name


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
