"""A run's report (text and JSON) and its log, archived as a snapshot of the run.

A scheduled run has nobody watching it: what it did, what failed and why, and the log it wrote
are kept as evidence of the capture process itself (kind ``run-report``, in the run's
collection, timestamped with the run's snapshots), and the run row names that snapshot.
Secrets in the log (tokens in URLs, cookies) are redacted before it is archived.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evidence_store.archive import EvidenceStore, archive
from evidence_store.index.models import Run
from schemas import Capture, CaptureArtifact, format_rfc3339, utc_now

if TYPE_CHECKING:
    from jobs.crawl import CrawlResult
    from jobs.runs import RunRecord

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextmanager
def run_log(path: Path, *, enabled: bool = True) -> Iterator[None]:
    """Write what the run logs (INFO and up) to ``path``; warnings still reach stderr."""
    if not enabled:
        yield
        return
    root = logging.getLogger()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    # With a handler on the root logger, Python no longer prints warnings by itself.
    console = logging.StreamHandler()
    console.setLevel(logging.WARNING)
    console.setFormatter(logging.Formatter(LOG_FORMAT))
    level = root.level
    root.addHandler(handler)
    root.addHandler(console)
    root.setLevel(min(level, logging.INFO) if level else logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.removeHandler(console)
        root.setLevel(level)
        handler.close()


def run_report(result: CrawlResult, run: RunRecord) -> dict[str, Any]:
    """The report of a run as data: the run, its counts, every item's outcome."""
    return {
        "type": "dsa-evidence/run-report",
        "run": run.id,
        "source": result.source,
        "collection": result.collection,
        "kind": run.kind,
        "status": result.status,
        "host": socket.gethostname(),
        "reported_at": format_rfc3339(utc_now()),
        "counts": result.counts(),
        "stats": run.stats,
        "outcomes": [o.model_dump(mode="json") for o in result.outcomes],
    }


def render_text(report: dict[str, Any]) -> str:
    """The report for a person: a summary, then one line per item that was not archived."""
    lines = [
        f"Run {report['run']} of {report['source']} ({report['kind']}): {report['status']}",
        f"Collection {report['collection']}; host {report['host']}; "
        f"reported {report['reported_at']}",
        "Outcomes: " + (", ".join(f"{n} {k}" for k, n in report["counts"].items()) or "no items"),
        f"Requests: {report['stats'].get('requests', 0)}; "
        f"snapshots: {report['stats'].get('snapshots', 0)}",
    ]
    failed = [o for o in report["outcomes"] if not o["snapshot"] and o["mode"] != "robots"]
    if failed:
        lines.append("")
        lines.append("Not archived (retried by the next run):")
        lines += [f"  {o['outcome']}: {o['url']}: {o['error'] or ''}" for o in failed]
    return "\n".join(lines) + "\n"


def archive_run_report(
    evidence: EvidenceStore, result: CrawlResult, run: RunRecord, log_path: Path
) -> str:
    """Archive the run's report (JSON, text) and its redacted log; the snapshot's id."""
    from crawlers.redaction import Redactor

    report = run_report(result, run)
    redactor = Redactor()
    log_text = log_path.read_text(encoding="utf-8", errors="replace") if log_path.exists() else ""
    log_text, _ = redactor.redact_text(log_text)
    report_json, _ = redactor.redact_data(report)
    archived = archive(
        evidence,
        Capture(
            collection=result.collection,
            kind="run-report",
            source=result.source,
            run_id=run.id,
            note=f"report of run {run.id} ({result.status})",
            metadata={"run": run.id, "status": result.status, "counts": result.counts()},
            artifacts=[
                CaptureArtifact(
                    role="run-report",
                    name="run-report.json",
                    media_type="application/json",
                    data=json.dumps(report_json, indent=2, ensure_ascii=False).encode(),
                ),
                CaptureArtifact(
                    role="run-report-text",
                    name="run-report.txt",
                    media_type="text/plain; charset=utf-8",
                    data=render_text(report_json).encode(),
                ),
                CaptureArtifact(
                    role="run-log",
                    name="run.log",
                    media_type="text/plain; charset=utf-8",
                    data=log_text.encode(),
                ),
            ],
        ),
    )
    with evidence.index.writing() as session:
        row = session.get(Run, run.id)
        if row is not None:
            row.report_snapshot_id = archived.id
    return archived.id
