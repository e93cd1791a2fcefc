"""The index rows of transparency reports: a report per URL, a version per distinct content,
the documents of a version (the file, or each member of a ZIP), the cells of its tables, and
every capture that saw it.

A report is what an index page links to: its identity is the URL (as archived, secrets
redacted). Every run captures the file again; a capture whose bytes match a known version of
that URL only adds a ``report_captures`` row and moves that version's ``last_seen``; other
bytes make a new version. Versions point at the snapshots holding their bytes, which are
never replaced by the parsed form.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from evidence_store.index.models.base import Base


class Report(Base):
    """One report file as published at one URL, with what was inferred about it."""

    __tablename__ = "reports"
    __table_args__ = (Index("ix_reports_platform_period", "platform", "period_start"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(Text, unique=True)
    # The service the report is about (tiktok, x, facebook, instagram, youtube, ...): from
    # the link text or file name, else the index page's platform.
    platform: Mapped[str] = mapped_column(String(64))
    title: Mapped[str | None] = mapped_column(Text)
    period_start: Mapped[date | None]
    period_end: Mapped[date | None]
    articles: Mapped[str | None] = mapped_column(String(64))  # "Art. 15, Art. 24, Art. 42"
    language: Mapped[str | None] = mapped_column(String(16))  # ISO 639-1
    media_type: Mapped[str | None] = mapped_column(String(255))  # of the latest version
    # Where it was first found: the index page that linked it and the link's text.
    index_page: Mapped[str | None] = mapped_column(Text)
    link_text: Mapped[str | None] = mapped_column(Text)
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]

    versions: Mapped[list[ReportVersion]] = relationship(
        back_populates="report", order_by="ReportVersion.number"
    )


class ReportVersion(Base):
    """One distinct content (SHA-256 of the file as served) of a report's URL."""

    __tablename__ = "report_versions"
    __table_args__ = (
        UniqueConstraint("report_id", "number", name="uq_report_versions_number"),
        UniqueConstraint("report_id", "sha256", name="uq_report_versions_content"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id"), index=True)
    number: Mapped[int]  # 1, 2, ... in the order the contents were first seen
    sha256: Mapped[str] = mapped_column(String(64), index=True)  # the body, codings undone
    size: Mapped[int] = mapped_column(BigInteger)
    media_type: Mapped[str] = mapped_column(String(255))
    # The first and the latest snapshot whose capture held these bytes.
    snapshot_id: Mapped[str] = mapped_column(ForeignKey("snapshots.id"), index=True)
    last_snapshot_id: Mapped[str] = mapped_column(ForeignKey("snapshots.id"))
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]
    times_seen: Mapped[int] = mapped_column(default=1)
    page_count: Mapped[int | None]  # PDF pages, over every PDF of a ZIP
    text_length: Mapped[int | None]  # characters of extracted text, over every document
    figures: Mapped[int] = mapped_column(default=0)  # table cells kept
    # parsed; partial (a member of a ZIP could not be read); unparseable
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)

    report: Mapped[Report] = relationship(back_populates="versions")
    documents: Mapped[list[ReportDocument]] = relationship(
        back_populates="version", order_by="ReportDocument.position"
    )


class ReportDocument(Base):
    """A document of a version: the file itself, or one member of a ZIP report."""

    __tablename__ = "report_documents"
    __table_args__ = (
        UniqueConstraint("version_id", "position", name="uq_report_documents_position"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("report_versions.id"), index=True)
    position: Mapped[int]
    path: Mapped[str] = mapped_column(String(1024))  # file name, or member path in the ZIP
    kind: Mapped[str] = mapped_column(String(16))  # pdf, table, other
    media_type: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    page_count: Mapped[int | None]
    text_length: Mapped[int | None]
    # Extracted text (PDF) kept for diffs and search; the bytes stay in the archive.
    text: Mapped[str | None] = mapped_column(Text)
    # "2024/2835" when the table follows the harmonised templates of that regulation
    template: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))  # parsed, unparseable, skipped
    error: Mapped[str | None] = mapped_column(Text)

    version: Mapped[ReportVersion] = relationship(back_populates="documents")


class ReportFigure(Base):
    """One non-empty cell of a table (a sheet of an XLSX, or a CSV file) of a version."""

    __tablename__ = "report_figures"
    __table_args__ = (
        UniqueConstraint("document_id", "sheet", "row", "column", name="uq_report_figures_cell"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("report_versions.id"), index=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("report_documents.id"), index=True)
    sheet: Mapped[str] = mapped_column(String(255))  # sheet name, or the CSV's file name
    row: Mapped[int]  # 1-based, as a spreadsheet shows them
    column: Mapped[int]  # 1-based (A = 1)
    value: Mapped[str] = mapped_column(Text)  # as written in the file
    number: Mapped[float | None]  # the value read as a number, if it is one
    # The nearest text to the left in the row and above in the column: what the cell means.
    row_label: Mapped[str | None] = mapped_column(Text)
    column_label: Mapped[str | None] = mapped_column(Text)


class ReportCapture(Base):
    """One archived capture of a report file: which version it held, and where it was linked."""

    __tablename__ = "report_captures"

    snapshot_id: Mapped[str] = mapped_column(ForeignKey("snapshots.id"), primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("reports.id"), index=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("report_versions.id"), index=True)
    run_id: Mapped[str | None] = mapped_column(String(36))
    captured_at: Mapped[datetime]
    final_url: Mapped[str | None] = mapped_column(Text)
    index_page: Mapped[str | None] = mapped_column(Text)
    link_text: Mapped[str | None] = mapped_column(Text)
    change: Mapped[str] = mapped_column(String(16))  # new-report, new-version, unchanged
