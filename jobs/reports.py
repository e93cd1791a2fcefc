"""Transparency reports (the `transparency-reports` source's records): list, show, diff.

Listing reads the index only and is not logged. Showing a report or a diff shows what the
archived files say, so it is an access to evidence: a custody-log entry naming the snapshots
of the versions shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from jobs.access import record_access
from jobs.config import Settings
from jobs.context import open_evidence, open_index
from records.reports.queries import (
    ReportDetail,
    ReportDiff,
    ReportNotFound,
    ReportSummary,
    diff_versions,
    find_report,
    report_detail,
)
from records.reports.queries import list_reports as query_reports

__all__ = [
    "ReportNotFound",
    "ReportView",
    "ReportsDiffView",
    "diff_report",
    "list_reports",
    "show_report",
]


@dataclass
class ReportView:
    """One report with its versions, and any warning about logging the access."""

    detail: ReportDetail
    warnings: list[str] = field(default_factory=list)


@dataclass
class ReportsDiffView:
    """What changed between two versions of a report, and any warning about the logging."""

    diff: ReportDiff
    warnings: list[str] = field(default_factory=list)


def list_reports(
    settings: Settings,
    *,
    platform: str | None = None,
    article: str | None = None,
    limit: int = 100,
) -> list[ReportSummary]:
    """Reports found so far, by platform and period (``article``: "15", "24" or "42")."""
    index = open_index(settings)
    with index.session() as session:
        return query_reports(session, platform=platform, article=article, limit=limit)


def show_report(settings: Settings, ref: str) -> ReportView:
    """A report (by id, URL or a unique part of its URL) with every version; logged."""
    evidence = open_evidence(settings)
    with evidence.index.session() as session:
        detail = report_detail(session, find_report(session, ref))
    warnings: list[str] = []
    if detail.versions:
        warning = record_access(
            evidence,
            action="viewed",
            snapshot_id=detail.versions[-1].last_snapshot_id,
            details={"report": detail.report.id, "url": detail.report.url, "use": "reports show"},
        )
        warnings += [warning] if warning else []
    return ReportView(detail=detail, warnings=warnings)


def diff_report(
    settings: Settings,
    ref: str,
    *,
    old: int | None = None,
    new: int | None = None,
    context: int = 3,
    max_lines: int = 200,
    max_cells: int = 500,
) -> ReportsDiffView:
    """What changed between two versions of a report (default: the latest two); logged."""
    evidence = open_evidence(settings)
    with evidence.index.session() as session:
        diff = diff_versions(
            session,
            find_report(session, ref),
            old=old,
            new=new,
            context=context,
            max_lines=max_lines,
            max_cells=max_cells,
        )
    warning = record_access(
        evidence,
        action="viewed",
        snapshot_id=diff.new.snapshot_id,
        details={
            "report": diff.report.id,
            "url": diff.report.url,
            "use": "reports diff",
            "versions": [diff.old.number, diff.new.number],
            "snapshots": [diff.old.snapshot_id, diff.new.snapshot_id],
        },
    )
    return ReportsDiffView(diff=diff, warnings=[warning] if warning else [])
