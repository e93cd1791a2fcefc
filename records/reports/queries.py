"""Reading transparency reports back: listing them, one report with its versions, and what
changed between two versions (the text of their documents, the cells of their tables).

Functions take a session and return plain dataclasses (``to_dict`` gives their JSON form);
``jobs.reports`` wraps them with the settings and the custody log.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from evidence_store.errors import EvidenceError
from records.reports.infer import period_label
from records.reports.models import (
    Report,
    ReportCapture,
    ReportDocument,
    ReportFigure,
    ReportVersion,
)
from schemas import format_rfc3339


class ReportNotFound(EvidenceError):
    """No report (or no such version of one) matches what was asked for."""


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_rfc3339(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json(v) for v in value]
    return value


@dataclass
class ReportSummary:
    """A report as a listing shows it."""

    id: int
    platform: str
    url: str
    title: str | None
    period_start: date | None
    period_end: date | None
    articles: str | None
    language: str | None
    media_type: str | None
    versions: int
    latest_status: str | None
    first_seen: datetime
    last_seen: datetime

    @property
    def period(self) -> str | None:
        """``2025-H1``, or ``start/end``."""
        return period_label(self.period_start, self.period_end)

    def to_dict(self) -> dict[str, Any]:
        return _json(asdict(self) | {"period": self.period})


@dataclass
class DocumentInfo:
    """A document of a version: the file, or a member of a ZIP."""

    path: str
    kind: str
    media_type: str
    sha256: str
    size: int
    page_count: int | None
    text_length: int | None
    figures: int
    template: str | None
    status: str
    error: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class VersionInfo:
    """One version of a report: its bytes, where they are archived, what was read from them."""

    number: int
    sha256: str
    size: int
    media_type: str
    snapshot_id: str
    last_snapshot_id: str
    first_seen: datetime
    last_seen: datetime
    times_seen: int
    page_count: int | None
    text_length: int | None
    figures: int
    status: str
    error: str | None
    documents: list[DocumentInfo] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["documents"] = [d.to_dict() for d in self.documents]
        return _json(data)


@dataclass
class CaptureInfo:
    """One capture of the report's URL."""

    snapshot_id: str
    captured_at: datetime
    version: int
    change: str
    run_id: str | None
    index_page: str | None

    def to_dict(self) -> dict[str, Any]:
        return _json(asdict(self))


@dataclass
class ReportDetail:
    """A report, every version of it, and its captures (newest first)."""

    report: ReportSummary
    index_page: str | None
    link_text: str | None
    versions: list[VersionInfo]
    captures: list[CaptureInfo]

    def to_dict(self) -> dict[str, Any]:
        return {
            "report": self.report.to_dict(),
            "index_page": self.index_page,
            "link_text": self.link_text,
            "versions": [v.to_dict() for v in self.versions],
            "captures": [c.to_dict() for c in self.captures],
        }


@dataclass
class TextChange:
    """How the text of one document differs: a unified diff, cut at a number of lines."""

    path: str
    change: str  # changed, added, removed
    added_lines: int
    removed_lines: int
    diff: list[str]
    omitted_lines: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CellChange:
    """One cell of a table that differs between two versions."""

    document: str
    sheet: str
    cell: str  # A1 reference
    row: int
    column: int
    change: str  # changed, added, removed
    old: str | None
    new: str | None
    old_number: float | None
    new_number: float | None
    row_label: str | None
    column_label: str | None

    @property
    def delta(self) -> float | None:
        """new - old, when both are numbers."""
        if self.old_number is None or self.new_number is None:
            return None
        return self.new_number - self.old_number

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"delta": self.delta}


@dataclass
class ReportDiff:
    """What changed between two versions of a report."""

    report: ReportSummary
    old: VersionInfo
    new: VersionInfo
    text: list[TextChange]
    cells: list[CellChange]
    cells_changed: int
    cells_added: int
    cells_removed: int
    cells_omitted: int = 0  # changes beyond the limit, counted but not listed

    @property
    def unchanged(self) -> bool:
        return not self.text and not (self.cells_changed + self.cells_added + self.cells_removed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "report": self.report.to_dict(),
            "old": self.old.to_dict(),
            "new": self.new.to_dict(),
            "text": [t.to_dict() for t in self.text],
            "cells": [c.to_dict() for c in self.cells],
            "cells_changed": self.cells_changed,
            "cells_added": self.cells_added,
            "cells_removed": self.cells_removed,
            "cells_omitted": self.cells_omitted,
        }


# -- lookups --------------------------------------------------------------------------------
def find_report(session: Session, ref: str) -> Report:
    """A report by its id, its URL, or a part of its URL that only one report has (its file
    name, say)."""
    ref = ref.strip()
    if not ref:
        raise ReportNotFound("give a report id, URL or file name (see `evidence reports list`)")
    if ref.isdigit():
        report = session.get(Report, int(ref))
        if report is None:
            raise ReportNotFound(f"no report {ref} (see `evidence reports list`)")
        return report
    exact = session.scalars(select(Report).where(Report.url == ref)).first()
    if exact is not None:
        return exact
    matches = list(
        session.scalars(select(Report).where(Report.url.contains(ref, autoescape=True)).limit(2))
    )
    if not matches:
        raise ReportNotFound(f"no report whose URL contains {ref!r} (see `evidence reports list`)")
    if len(matches) > 1:
        raise ReportNotFound(f"{ref!r} matches several reports: give its id or more of its URL")
    return matches[0]


def _summary(report: Report, versions: int, latest_status: str | None) -> ReportSummary:
    return ReportSummary(
        id=report.id,
        platform=report.platform,
        url=report.url,
        title=report.title,
        period_start=report.period_start,
        period_end=report.period_end,
        articles=report.articles,
        language=report.language,
        media_type=report.media_type,
        versions=versions,
        latest_status=latest_status,
        first_seen=report.first_seen,
        last_seen=report.last_seen,
    )


def list_reports(
    session: Session,
    *,
    platform: str | None = None,
    article: str | None = None,
    limit: int | None = 100,
) -> list[ReportSummary]:
    """Reports by platform, then newest period first; ``article`` is a number ("42")."""
    counts = (
        select(
            ReportVersion.report_id,
            func.count().label("versions"),
            func.max(ReportVersion.number).label("latest"),
        )
        .group_by(ReportVersion.report_id)
        .subquery()
    )
    query = (
        select(Report, counts.c.versions, ReportVersion.status)
        .join(counts, counts.c.report_id == Report.id)
        .join(
            ReportVersion,
            (ReportVersion.report_id == Report.id) & (ReportVersion.number == counts.c.latest),
        )
        .order_by(Report.platform, Report.period_start.desc(), Report.id)
    )
    if platform is not None:
        query = query.where(Report.platform == platform.strip().lower())
    if article is not None:
        number = article.strip().lower().removeprefix("art.").removeprefix("article").strip()
        query = query.where(
            or_(
                Report.articles.contains(f"Art. {number},"),
                Report.articles.endswith(f"Art. {number}"),
            )
        )
    if limit is not None:
        query = query.limit(limit)
    return [_summary(r, n, status) for r, n, status in session.execute(query)]


def _version_info(session: Session, version: ReportVersion) -> VersionInfo:
    figures = dict(
        session.execute(
            select(ReportFigure.document_id, func.count())
            .where(ReportFigure.version_id == version.id)
            .group_by(ReportFigure.document_id)
        ).all()
    )
    return VersionInfo(
        number=version.number,
        sha256=version.sha256,
        size=version.size,
        media_type=version.media_type,
        snapshot_id=version.snapshot_id,
        last_snapshot_id=version.last_snapshot_id,
        first_seen=version.first_seen,
        last_seen=version.last_seen,
        times_seen=version.times_seen,
        page_count=version.page_count,
        text_length=version.text_length,
        figures=version.figures,
        status=version.status,
        error=version.error,
        documents=[
            DocumentInfo(
                path=d.path,
                kind=d.kind,
                media_type=d.media_type,
                sha256=d.sha256,
                size=d.size,
                page_count=d.page_count,
                text_length=d.text_length,
                figures=figures.get(d.id, 0),
                template=d.template,
                status=d.status,
                error=d.error,
            )
            for d in version.documents
        ],
    )


def report_detail(session: Session, report: Report, *, captures: int = 50) -> ReportDetail:
    """A report with all its versions and its latest captures."""
    versions = [_version_info(session, v) for v in report.versions]
    numbers = {v.id: v.number for v in report.versions}
    rows = session.scalars(
        select(ReportCapture)
        .where(ReportCapture.report_id == report.id)
        .order_by(ReportCapture.captured_at.desc())
        .limit(captures)
    )
    return ReportDetail(
        report=_summary(report, len(versions), versions[-1].status if versions else None),
        index_page=report.index_page,
        link_text=report.link_text,
        versions=versions,
        captures=[
            CaptureInfo(
                snapshot_id=c.snapshot_id,
                captured_at=c.captured_at,
                version=numbers.get(c.version_id, 0),
                change=c.change,
                run_id=c.run_id,
                index_page=c.index_page,
            )
            for c in rows
        ],
    )


# -- the diff -------------------------------------------------------------------------------
def _pick(report: Report, number: int | None, default: int) -> ReportVersion:
    versions = {v.number: v for v in report.versions}
    wanted = default if number is None else number
    if number is not None and number < 0:
        wanted = max(versions) + 1 + number  # -1: the latest, -2: the one before
    if wanted not in versions:
        known = ", ".join(str(n) for n in sorted(versions)) or "none"
        raise ReportNotFound(f"report {report.id} has no version {wanted} (versions: {known})")
    return versions[wanted]


def _lines(text: str | None) -> list[str]:
    # Trailing spaces and runs of blank lines are layout, not content.
    lines = [line.rstrip() for line in (text or "").splitlines()]
    kept: list[str] = []
    for line in lines:
        if line or (kept and kept[-1]):
            kept.append(line)
    return kept


def text_changes(
    old: list[ReportDocument], new: list[ReportDocument], *, context: int, max_lines: int
) -> list[TextChange]:
    """Unified diffs of the text of documents with the same path (PDFs), per document."""
    before = {d.path: d for d in old if d.text is not None}
    after = {d.path: d for d in new if d.text is not None}
    changes: list[TextChange] = []
    for path in sorted(set(before) | set(after)):
        a, b = before.get(path), after.get(path)
        if a is not None and b is not None and a.sha256 == b.sha256:
            continue
        old_lines, new_lines = _lines(a.text if a else None), _lines(b.text if b else None)
        if old_lines == new_lines:
            continue
        diff = list(
            difflib.unified_diff(
                old_lines,
                new_lines,
                fromfile=f"{path} (old)" if a else "/dev/null",
                tofile=f"{path} (new)" if b else "/dev/null",
                n=context,
                lineterm="",
            )
        )
        body = diff[2:]
        added = sum(1 for line in body if line.startswith("+"))
        removed = sum(1 for line in body if line.startswith("-"))
        shown = diff[: max_lines + 2]
        changes.append(
            TextChange(
                path=path,
                change="changed" if a and b else "added" if b else "removed",
                added_lines=added,
                removed_lines=removed,
                diff=shown,
                omitted_lines=max(0, len(diff) - len(shown)),
            )
        )
    return changes


def _column_name(number: int) -> str:
    name = ""
    while number:
        number, rest = divmod(number - 1, 26)
        name = chr(65 + rest) + name
    return name


def _cells(session: Session, version: ReportVersion) -> dict[tuple[str, str, int, int], Any]:
    rows = session.execute(
        select(
            ReportDocument.path,
            ReportFigure.sheet,
            ReportFigure.row,
            ReportFigure.column,
            ReportFigure.value,
            ReportFigure.number,
            ReportFigure.row_label,
            ReportFigure.column_label,
        )
        .join(ReportDocument, ReportDocument.id == ReportFigure.document_id)
        .where(ReportFigure.version_id == version.id)
    )
    return {(r[0], r[1], r[2], r[3]): r for r in rows}


def cell_changes(
    session: Session, old: ReportVersion, new: ReportVersion
) -> tuple[list[CellChange], dict[str, int]]:
    """Every cell that differs (value, or number where both are numbers), in table order;
    and how many were changed, added and removed."""
    before, after = _cells(session, old), _cells(session, new)
    changes: list[CellChange] = []
    counts = {"changed": 0, "added": 0, "removed": 0}
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key), after.get(key)
        if a is not None and b is not None:
            same = (a[5] == b[5]) if a[5] is not None and b[5] is not None else a[4] == b[4]
            if same:
                continue
            change = "changed"
        else:
            change = "added" if b is not None else "removed"
        counts[change] += 1
        shown = b if b is not None else a
        changes.append(
            CellChange(
                document=key[0],
                sheet=key[1],
                cell=f"{_column_name(key[3])}{key[2]}",
                row=key[2],
                column=key[3],
                change=change,
                old=a[4] if a is not None else None,
                new=b[4] if b is not None else None,
                old_number=a[5] if a is not None else None,
                new_number=b[5] if b is not None else None,
                row_label=shown[6],
                column_label=shown[7],
            )
        )
    return changes, counts


def diff_versions(
    session: Session,
    report: Report,
    *,
    old: int | None = None,
    new: int | None = None,
    context: int = 3,
    max_lines: int = 200,
    max_cells: int = 500,
) -> ReportDiff:
    """What changed from version ``old`` to version ``new`` (default: the latest and the one
    before it; negative numbers count from the latest, -1 being the latest)."""
    if not report.versions:
        raise ReportNotFound(f"report {report.id} has no versions")
    latest = report.versions[-1].number
    if old is None and new is None and latest < 2:
        raise ReportNotFound(
            f"report {report.id} has one version only: nothing to compare it with yet"
        )
    newer = _pick(report, new, latest)
    older = _pick(report, old, newer.number - 1)
    if older.number == newer.number:
        raise ReportNotFound(f"versions {older.number} and {newer.number} are the same version")
    text = text_changes(older.documents, newer.documents, context=context, max_lines=max_lines)
    cells, counts = cell_changes(session, older, newer)
    versions = len(report.versions)
    return ReportDiff(
        report=_summary(report, versions, report.versions[-1].status),
        old=_version_info(session, older),
        new=_version_info(session, newer),
        text=text,
        cells=cells[:max_cells],
        cells_changed=counts["changed"],
        cells_added=counts["added"],
        cells_removed=counts["removed"],
        cells_omitted=max(0, len(cells) - max_cells),
    )
