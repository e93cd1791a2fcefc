"""Long-term validation: archived CRLs of the TSAs' certificates, renewal timestamps

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "revocation_lists",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("crl_sha256", sa.String(length=64), nullable=False),
        sa.Column("this_update", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_update", sa.DateTime(timezone=True), nullable=True),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_revocation_lists")),
        sa.UniqueConstraint("crl_sha256", name=op.f("uq_revocation_lists_crl_sha256")),
    )
    with op.batch_alter_table("revocation_lists", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_revocation_lists_issuer"), ["issuer"], unique=False)
    with op.batch_alter_table("timestamps", schema=None) as batch_op:
        batch_op.add_column(sa.Column("renews_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_timestamps_renews_id"), ["renews_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_timestamps_renews_id_timestamps"), "timestamps", ["renews_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("timestamps", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_timestamps_renews_id_timestamps"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_timestamps_renews_id"))
        batch_op.drop_column("renews_id")
    with op.batch_alter_table("revocation_lists", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_revocation_lists_issuer"))
    op.drop_table("revocation_lists")
