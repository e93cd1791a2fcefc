"""Statements of reasons: archived daily dumps and their parts (records.sor.models)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sor_dumps",
        sa.Column("snapshot_id", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=True),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("platform", sa.String(length=100), nullable=False),
        sa.Column("variant", sa.String(length=8), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("sha1", sa.String(length=40), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("same_as", sa.String(length=64), nullable=True),
        sa.Column("schema_version", sa.Integer(), nullable=True),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("parts", sa.Integer(), nullable=False),
        sa.Column("broken_parts", sa.Integer(), nullable=False),
        sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("snapshot_id", name=op.f("pk_sor_dumps")),
    )
    with op.batch_alter_table("sor_dumps", schema=None) as batch_op:
        batch_op.create_index("ix_sor_dumps_day_platform", ["day", "platform", "variant"])
        batch_op.create_index(batch_op.f("ix_sor_dumps_sha256"), ["sha256"], unique=False)
    op.create_table(
        "sor_parts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dump_id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("crc32", sa.BigInteger(), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("csv_files", sa.Integer(), nullable=False),
        sa.Column("schema_version", sa.Integer(), nullable=True),
        sa.Column("parquet_snapshot", sa.String(length=64), nullable=True),
        sa.Column("parquet_sha256", sa.String(length=64), nullable=True),
        sa.Column("parquet_size", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["dump_id"],
            ["sor_dumps.snapshot_id"],
            name=op.f("fk_sor_parts_dump_id_sor_dumps"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sor_parts")),
        sa.UniqueConstraint("dump_id", "position", name="uq_sor_parts_position"),
    )
    with op.batch_alter_table("sor_parts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sor_parts_dump_id"), ["dump_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_sor_parts_parquet_snapshot"), ["parquet_snapshot"], unique=False
        )


def downgrade() -> None:
    op.drop_table("sor_parts")
    op.drop_table("sor_dumps")
