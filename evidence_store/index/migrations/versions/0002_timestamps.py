"""timestamps

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "timestamps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("snapshot_id", sa.String(length=64), nullable=False),
        sa.Column("tsa_url", sa.Text(), nullable=False),
        sa.Column("gen_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("serial_number", sa.String(length=64), nullable=False),
        sa.Column("reply_sha256", sa.String(length=64), nullable=False),
        sa.Column("reply_size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["snapshot_id"], ["snapshots.id"], name=op.f("fk_timestamps_snapshot_id_snapshots")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_timestamps")),
    )
    with op.batch_alter_table("timestamps", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_timestamps_snapshot_id"), ["snapshot_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("timestamps", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_timestamps_snapshot_id"))

    op.drop_table("timestamps")
