"""A run of `transparency-reports` turned into records: ``parse_run`` (``SourceSpec.records``).

For every archived capture of a report file (the metadata says ``transparency_report.role``
is ``file``), the file's bytes are read back from the capture's WARC (the response body,
transfer and content codings undone: the file as a browser would save it) and hashed:

- a URL never seen before is a **new report** (version 1);
- a known URL with bytes that no version of it had is a **new version** (number + 1);
- bytes a version already had are **unchanged**: that version's ``last_seen`` moves, and the
  capture is recorded, nothing is parsed again (unless the version could not be parsed).

New bytes are parsed (``records.reports.extract``): PDF text, table cells, ZIP members. The
platform, period, articles, language and title are inferred (``records.reports.infer``)
from the link text, the file names and the content. A file that cannot be read becomes a
version with status ``unparseable`` and an outcome of the run (``unparseable``, no
snapshot), which makes the run partial; the other files go on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import unquote, urlsplit

from sqlalchemy import delete, func, insert, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, selectinload

from evidence_store.archive import EvidenceStore
from evidence_store.errors import EvidenceError
from evidence_store.index.models import Snapshot
from records.reports import infer
from records.reports.extract import MEDIA_TYPES, Document, extract, sniff
from records.reports.models import (
    Report,
    ReportCapture,
    ReportDocument,
    ReportFigure,
    ReportVersion,
)
from schemas import CaptureOutcome, CollectContext, ParseResult, SourceSettings

log = logging.getLogger(__name__)

METADATA_KEY = "transparency_report"  # as crawlers.spiders.reports writes it
LOCK = "records:reports"
OUTCOME = "unparseable"
MODE = "parse"
FIGURE_BATCH = 5000


@dataclass
class FileCapture:
    """What the index and the capture metadata say about one archived report file."""

    snapshot_id: str
    run_id: str | None
    captured_at: datetime
    url: str
    final_url: str | None
    status: int | None
    outcome: str
    platform: str
    index_page: str | None
    link_text: str | None
    warc_sha256: str | None

    @property
    def file_name(self) -> str:
        path = unquote(urlsplit(self.final_url or self.url).path)
        return posixpath.basename(path.rstrip("/")) or "report"


def parse_run(
    evidence: EvidenceStore,
    source_settings: SourceSettings,
    context: CollectContext,
    snapshot_ids: list[str],
) -> ParseResult:
    """Record the report files among a run's snapshots (see the module's description)."""
    result = ParseResult()
    counts: Counter[str] = Counter()
    for snapshot_id in snapshot_ids:
        capture = load_capture(evidence, snapshot_id)
        if capture is None:
            continue  # an index page, robots.txt, or not this source's snapshot
        if capture.outcome != "archived" or (capture.status or 0) >= 400:
            continue  # the crawl reported it already (a broken link, a login wall)
        try:
            change, problems = record_capture(evidence, capture)
        except (EvidenceError, SQLAlchemyError):
            raise  # the store or the index failed: every other file would fail too
        except Exception as exc:  # a bug in a reader must not cost the other files
            log.exception("could not parse the report %s", capture.url)
            change, problems = "failed", [f"parser error: {type(exc).__name__}: {exc}"]
        counts[change] += 1
        for problem in problems:
            counts["unparseable"] += 1
            result.outcomes.append(
                CaptureOutcome(
                    url=capture.url,
                    outcome=OUTCOME,
                    mode=MODE,
                    final_url=capture.final_url,
                    status=capture.status,
                    error=problem,
                )
            )
        if change in ("new-report", "new-version", "unchanged"):
            result.records += 1
    result.stats = {
        "reports": {
            "files": sum(counts[k] for k in ("new-report", "new-version", "unchanged", "failed")),
            "new_reports": counts["new-report"],
            "new_versions": counts["new-version"],
            "unchanged": counts["unchanged"],
            "unparseable": counts["unparseable"],
        }
    }
    return result


def load_capture(evidence: EvidenceStore, snapshot_id: str) -> FileCapture | None:
    """The facts of a report-file capture, or None if the snapshot is not one."""
    with evidence.index.session() as session:
        snapshot = session.scalars(
            select(Snapshot)
            .options(selectinload(Snapshot.artifacts))
            .where(Snapshot.id == snapshot_id)
        ).first()
        if snapshot is None or snapshot.deleted_at is not None:
            return None
        artifacts = {a.role: a.sha256 for a in snapshot.artifacts}
        run_id, captured_at, source_url = snapshot.run_id, snapshot.captured_at, snapshot.source_url
    if "metadata" not in artifacts:
        return None
    with evidence.objects.open(artifacts["metadata"]) as stream:
        metadata = json.load(stream)
    facts = metadata.get(METADATA_KEY) or {}
    if facts.get("role") != "file":
        return None
    return FileCapture(
        snapshot_id=snapshot_id,
        run_id=run_id,
        captured_at=captured_at,
        url=source_url or metadata.get("requested_url") or "",
        final_url=metadata.get("final_url"),
        status=metadata.get("status"),
        outcome=metadata.get("outcome") or "archived",
        platform=facts.get("platform") or "unknown",
        index_page=facts.get("index_page"),
        link_text=facts.get("link_text") or None,
        warc_sha256=artifacts.get("warc"),
    )


def read_body(evidence: EvidenceStore, capture: FileCapture) -> tuple[bytes, str | None]:
    """The file's bytes (codings undone) and its declared media type, from the capture's WARC:
    the response for the final URL, else the last response."""
    from warcio.archiveiterator import ArchiveIterator

    if capture.warc_sha256 is None:
        raise ValueError("the capture has no WARC")
    found: tuple[bytes, str | None] | None = None
    with evidence.objects.open(capture.warc_sha256) as stream:
        for record in ArchiveIterator(stream, check_digests="raise"):
            if record.rec_type != "response" or record.http_headers is None:
                continue
            body = record.content_stream().read()
            while record.raw_stream.read(1 << 20):  # the whole block, for the digest check
                pass
            content_type = record.http_headers.get_header("Content-Type")
            target = record.rec_headers.get_header("WARC-Target-URI")
            if found is None or target == capture.final_url or target == capture.url:
                found = (body, content_type)
    if found is None:
        raise ValueError("the capture's WARC holds no response")
    return found


def record_capture(evidence: EvidenceStore, capture: FileCapture) -> tuple[str, list[str]]:
    """Record one captured report file; (what changed, the problems of reading it).

    The change is ``new-report``, ``new-version``, ``unchanged`` or ``seen`` (this snapshot
    was recorded before: parsing a run again changes nothing).
    """
    try:
        body, declared = read_body(evidence, capture)
    except Exception as exc:  # warcio's and the store's read errors alike
        return "failed", [f"cannot read the archived file: {type(exc).__name__}: {exc}"]
    digest = hashlib.sha256(body).hexdigest()
    with evidence.index.session() as session:
        if session.get(ReportCapture, capture.snapshot_id) is not None:
            return "seen", []
        known = _version(session, capture.url, digest)
        reparse = known is None or known[1] != "parsed"
    documents = extract(body, capture.file_name, declared) if reparse else None
    media_type = MEDIA_TYPES.get(sniff(body, capture.file_name, declared)) or (
        (declared or "").split(";")[0].strip() or "application/octet-stream"
    )
    with evidence.index.writing(LOCK) as session:
        return _write(session, capture, body, media_type, digest, documents)


def _version(session: Session, url: str, digest: str) -> tuple[int, str] | None:
    row = session.execute(
        select(ReportVersion.id, ReportVersion.status)
        .join(Report)
        .where(Report.url == url, ReportVersion.sha256 == digest)
    ).first()
    return (row[0], row[1]) if row else None


def _write(
    session: Session,
    capture: FileCapture,
    body: bytes,
    media_type: str,
    digest: str,
    documents: list[Document] | None,
) -> tuple[str, list[str]]:
    when = capture.captured_at
    report = session.scalars(select(Report).where(Report.url == capture.url)).first()
    change = "unchanged"
    if report is None:
        change = "new-report"
        report = Report(
            url=capture.url,
            platform=capture.platform,
            index_page=capture.index_page,
            link_text=capture.link_text,
            first_seen=when,
            last_seen=when,
        )
        session.add(report)
        session.flush()
    version = session.scalars(
        select(ReportVersion).where(
            ReportVersion.report_id == report.id, ReportVersion.sha256 == digest
        )
    ).first()
    if version is None and documents is None:  # another writer's version went away: parse
        documents = extract(body, capture.file_name, media_type)
    problems: list[str] = []
    if version is None:
        change = "new-version" if change == "unchanged" else change
        number = session.scalar(
            select(func.coalesce(func.max(ReportVersion.number), 0)).where(
                ReportVersion.report_id == report.id
            )
        )
        version = ReportVersion(
            report_id=report.id,
            number=number + 1,
            sha256=digest,
            size=len(body),
            media_type=media_type,
            snapshot_id=capture.snapshot_id,
            last_snapshot_id=capture.snapshot_id,
            first_seen=when,
            last_seen=when,
            times_seen=1,
            status="parsed",
        )
        session.add(version)
        session.flush()
    else:
        version.times_seen += 1
        if when >= version.last_seen:
            version.last_seen = when
            version.last_snapshot_id = capture.snapshot_id
        if when < version.first_seen:  # an older snapshot parsed later
            version.first_seen = when
            version.snapshot_id = capture.snapshot_id
    if documents is not None:
        problems = _store_documents(session, version, documents)
        _describe(report, capture, version, documents)
    report.first_seen = min(report.first_seen, when)
    if when >= report.last_seen:
        report.last_seen = when
        report.media_type = version.media_type
    session.add(
        ReportCapture(
            snapshot_id=capture.snapshot_id,
            report_id=report.id,
            version_id=version.id,
            run_id=capture.run_id,
            captured_at=when,
            final_url=capture.final_url,
            index_page=capture.index_page,
            link_text=capture.link_text,
            change=change,
        )
    )
    return change, problems


def _store_documents(
    session: Session, version: ReportVersion, documents: list[Document]
) -> list[str]:
    """Replace the version's documents and cells with these; the problems, one per document
    that could not be read."""
    old = select(ReportDocument.id).where(ReportDocument.version_id == version.id)
    session.execute(delete(ReportFigure).where(ReportFigure.document_id.in_(old)))
    session.execute(delete(ReportDocument).where(ReportDocument.version_id == version.id))
    problems: list[str] = []
    figures = 0
    pages: int | None = None
    text_length: int | None = None
    for position, document in enumerate(documents, start=1):
        row = ReportDocument(
            version_id=version.id,
            position=position,
            path=document.path[:1024],
            kind=document.kind,
            media_type=document.media_type,
            sha256=document.sha256,
            size=document.size,
            page_count=document.page_count,
            text_length=document.text_length,
            text=document.text,
            template=document.template,
            status=document.status,
            error=document.error,
        )
        session.add(row)
        session.flush()
        if document.status == "unparseable":
            problems.append(
                document.error if len(documents) == 1 else f"{document.path}: {document.error}"
            )
        if document.page_count is not None:
            pages = (pages or 0) + document.page_count
        if document.text_length is not None:
            text_length = (text_length or 0) + document.text_length
        rows = [
            {
                "version_id": version.id,
                "document_id": row.id,
                "sheet": cell.sheet[:255],
                "row": cell.row,
                "column": cell.column,
                "value": cell.value,
                "number": cell.number,
                "row_label": cell.row_label,
                "column_label": cell.column_label,
            }
            for cell in document.cells
        ]
        for start in range(0, len(rows), FIGURE_BATCH):
            session.execute(insert(ReportFigure), rows[start : start + FIGURE_BATCH])
        figures += len(rows)
    readable = [d for d in documents if d.status == "parsed"]
    broken = [d for d in documents if d.status == "unparseable"]
    version.status = "unparseable" if broken and not readable else "partial" if broken else "parsed"
    version.error = "; ".join(problems)[:4000] or None
    version.page_count = pages
    version.text_length = text_length
    version.figures = figures
    return problems


def _describe(
    report: Report, capture: FileCapture, version: ReportVersion, documents: list[Document]
) -> None:
    """Fill in what the report is about from this version (a newer version's facts win)."""
    readable = [d for d in documents if d.status == "parsed"]
    text = "\n".join(d.content_text() for d in readable)
    names = [capture.file_name, *(posixpath.basename(d.path) for d in documents)]
    link_text = capture.link_text or report.link_text
    report.platform = infer.infer_platform(
        link_text=link_text, file_names=names, text=text, index_platform=capture.platform
    )
    period = infer.infer_period(link_text, *names, text[:20000])
    if period is not None:
        report.period_start, report.period_end = period
    articles = infer.infer_articles(text[:200000], link_text)
    if articles is not None:
        report.articles = articles
    language = infer.infer_language(text, capture.url)
    if language is not None:
        report.language = language
    pdf = next((d for d in readable if d.kind == "pdf"), None)
    lines = (pdf.text or "").splitlines() if pdf else []
    first_line = next((line.strip() for line in lines if line.strip()), None)
    report.title = infer.infer_title(
        link_text=link_text,
        document_title=pdf.title if pdf else None,
        first_line=first_line,
        file_name=capture.file_name,
    )
    if version.number == 1 and report.link_text is None:
        report.link_text = capture.link_text
