"""Archived TSA trust anchors, and which anchor each token chained to when it was granted

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "trust_anchors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("object_sha256", sa.String(length=64), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trust_anchors")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_trust_anchors_fingerprint")),
    )
    op.create_table(
        "timestamp_trust_anchors",
        sa.Column("timestamp_id", sa.Integer(), nullable=False),
        sa.Column("anchor_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["anchor_id"],
            ["trust_anchors.id"],
            name=op.f("fk_timestamp_trust_anchors_anchor_id_trust_anchors"),
        ),
        sa.ForeignKeyConstraint(
            ["timestamp_id"],
            ["timestamps.id"],
            name=op.f("fk_timestamp_trust_anchors_timestamp_id_timestamps"),
        ),
        sa.PrimaryKeyConstraint(
            "timestamp_id", "anchor_id", name=op.f("pk_timestamp_trust_anchors")
        ),
    )
    with op.batch_alter_table("timestamp_trust_anchors", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_timestamp_trust_anchors_anchor_id"), ["anchor_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("timestamp_trust_anchors", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_timestamp_trust_anchors_anchor_id"))
    op.drop_table("timestamp_trust_anchors")
    op.drop_table("trust_anchors")
