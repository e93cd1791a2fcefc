"""Transparency reports: reports, their versions, documents, table cells, captures
(records.reports.models)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("platform", sa.String(length=64), nullable=False),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("period_start", sa.Date(), nullable=True),
        sa.Column("period_end", sa.Date(), nullable=True),
        sa.Column("articles", sa.String(length=64), nullable=True),
        sa.Column("language", sa.String(length=16), nullable=True),
        sa.Column("media_type", sa.String(length=255), nullable=True),
        sa.Column("index_page", sa.Text(), nullable=True),
        sa.Column("link_text", sa.Text(), nullable=True),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reports")),
        sa.UniqueConstraint("url", name=op.f("uq_reports_url")),
    )
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.create_index("ix_reports_platform_period", ["platform", "period_start"])
    op.create_table(
        "report_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("report_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("media_type", sa.String(length=255), nullable=False),
        sa.Column("snapshot_id", sa.String(length=64), nullable=False),
        sa.Column("last_snapshot_id", sa.String(length=64), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("times_seen", sa.Integer(), nullable=False),
        sa.Column("page_count", sa.Integer(), nullable=True),
        sa.Column("text_length", sa.Integer(), nullable=True),
        sa.Column("figures", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["report_id"], ["reports.id"], name=op.f("fk_report_versions_report_id_reports")
        ),
        sa.ForeignKeyConstraint(
            ["snapshot_id"],
            ["snapshots.id"],
            name=op.f("fk_report_versions_snapshot_id_snapshots"),
        ),
        sa.ForeignKeyConstraint(
            ["last_snapshot_id"],
            ["snapshots.id"],
            name=op.f("fk_report_versions_last_snapshot_id_snapshots"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_versions")),
        sa.UniqueConstraint("report_id", "number", name="uq_report_versions_number"),
        sa.UniqueConstraint("report_id", "sha256", name="uq_report_versions_content"),
    )
    with op.batch_alter_table("report_versions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_report_versions_report_id"), ["report_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_report_versions_sha256"), ["sha256"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_report_versions_snapshot_id"), ["snapshot_id"], unique=False
        )
    op.create_table(
        "report_documents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("media_type", sa.String(length=255), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("page_count", sa.Integer(), nullable=True),
        sa.Column("text_length", sa.Integer(), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("template", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["report_versions.id"],
            name=op.f("fk_report_documents_version_id_report_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_documents")),
        sa.UniqueConstraint("version_id", "position", name="uq_report_documents_position"),
    )
    with op.batch_alter_table("report_documents", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_report_documents_version_id"), ["version_id"], unique=False
        )
    op.create_table(
        "report_figures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("document_id", sa.Integer(), nullable=False),
        sa.Column("sheet", sa.String(length=255), nullable=False),
        sa.Column("row", sa.Integer(), nullable=False),
        sa.Column("column", sa.Integer(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("number", sa.Double(), nullable=True),
        sa.Column("row_label", sa.Text(), nullable=True),
        sa.Column("column_label", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["report_documents.id"],
            name=op.f("fk_report_figures_document_id_report_documents"),
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["report_versions.id"],
            name=op.f("fk_report_figures_version_id_report_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_report_figures")),
        sa.UniqueConstraint("document_id", "sheet", "row", "column", name="uq_report_figures_cell"),
    )
    with op.batch_alter_table("report_figures", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_report_figures_document_id"), ["document_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_report_figures_version_id"), ["version_id"], unique=False
        )
    op.create_table(
        "report_captures",
        sa.Column("snapshot_id", sa.String(length=64), nullable=False),
        sa.Column("report_id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=True),
        sa.Column("captured_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("final_url", sa.Text(), nullable=True),
        sa.Column("index_page", sa.Text(), nullable=True),
        sa.Column("link_text", sa.Text(), nullable=True),
        sa.Column("change", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(
            ["report_id"], ["reports.id"], name=op.f("fk_report_captures_report_id_reports")
        ),
        sa.ForeignKeyConstraint(
            ["snapshot_id"],
            ["snapshots.id"],
            name=op.f("fk_report_captures_snapshot_id_snapshots"),
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["report_versions.id"],
            name=op.f("fk_report_captures_version_id_report_versions"),
        ),
        sa.PrimaryKeyConstraint("snapshot_id", name=op.f("pk_report_captures")),
    )
    with op.batch_alter_table("report_captures", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_report_captures_report_id"), ["report_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_report_captures_version_id"), ["version_id"], unique=False
        )


def downgrade() -> None:
    op.drop_table("report_captures")
    op.drop_table("report_figures")
    op.drop_table("report_documents")
    op.drop_table("report_versions")
    op.drop_table("reports")
