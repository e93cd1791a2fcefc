"""Merkle trees and proofs, custody-head timestamps, legal holds, retention, key rotation

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "merkle_trees",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("root", sa.String(length=64), nullable=False),
        sa.Column("tree_size", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=True),
        sa.Column("leaves_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_merkle_trees_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_merkle_trees")),
    )
    with op.batch_alter_table("merkle_trees", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_merkle_trees_root"), ["root"], unique=False)
        batch_op.create_index(batch_op.f("ix_merkle_trees_run_id"), ["run_id"], unique=False)

    op.create_table(
        "legal_holds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("snapshot_id", sa.String(length=64), nullable=True),
        sa.Column("collection_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("set_by", sa.String(length=200), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("released_by", sa.String(length=200), nullable=True),
        sa.Column("release_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["collection_id"],
            ["collections.id"],
            name=op.f("fk_legal_holds_collection_id_collections"),
        ),
        sa.ForeignKeyConstraint(
            ["snapshot_id"], ["snapshots.id"], name=op.f("fk_legal_holds_snapshot_id_snapshots")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_legal_holds")),
        sa.CheckConstraint(
            "(snapshot_id IS NULL) != (collection_id IS NULL)",
            name=op.f("ck_legal_holds_one_target"),
        ),
    )
    with op.batch_alter_table("legal_holds", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_legal_holds_collection_id"), ["collection_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_legal_holds_snapshot_id"), ["snapshot_id"], unique=False
        )

    op.create_table(
        "merkle_proofs",
        sa.Column("snapshot_id", sa.String(length=64), nullable=False),
        sa.Column("tree_id", sa.Integer(), nullable=False),
        sa.Column("leaf_index", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["snapshot_id"], ["snapshots.id"], name=op.f("fk_merkle_proofs_snapshot_id_snapshots")
        ),
        sa.ForeignKeyConstraint(
            ["tree_id"], ["merkle_trees.id"], name=op.f("fk_merkle_proofs_tree_id_merkle_trees")
        ),
        sa.PrimaryKeyConstraint("snapshot_id", name=op.f("pk_merkle_proofs")),
    )
    with op.batch_alter_table("merkle_proofs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_merkle_proofs_tree_id"), ["tree_id"], unique=False)

    with op.batch_alter_table("collections", schema=None) as batch_op:
        batch_op.add_column(sa.Column("retention_days", sa.Integer(), nullable=True))

    with op.batch_alter_table("signing_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("endorsed_by", sa.String(length=71), nullable=True))
        batch_op.add_column(sa.Column("endorsement_sha256", sa.String(length=64), nullable=True))

    with op.batch_alter_table("snapshots", schema=None) as batch_op:
        batch_op.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_snapshots_deleted_at"), ["deleted_at"], unique=False)

    with op.batch_alter_table("timestamps", schema=None) as batch_op:
        batch_op.add_column(sa.Column("subject", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("imprint", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("tree_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("custody_event_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("chain_sha256", sa.String(length=64), nullable=True))
        batch_op.alter_column("snapshot_id", existing_type=sa.VARCHAR(length=64), nullable=True)
        batch_op.create_index(batch_op.f("ix_timestamps_imprint"), ["imprint"], unique=False)
        batch_op.create_index(batch_op.f("ix_timestamps_tree_id"), ["tree_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_timestamps_tree_id_merkle_trees"), "merkle_trees", ["tree_id"], ["id"]
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_timestamps_custody_event_id_custody_events"),
            "custody_events",
            ["custody_event_id"],
            ["id"],
        )

    # Every token so far was over a snapshot id.
    op.execute("UPDATE timestamps SET subject = 'snapshot', imprint = snapshot_id")
    with op.batch_alter_table("timestamps", schema=None) as batch_op:
        batch_op.alter_column("subject", existing_type=sa.String(length=20), nullable=False)
        batch_op.alter_column("imprint", existing_type=sa.String(length=64), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("timestamps", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_timestamps_custody_event_id_custody_events"), type_="foreignkey"
        )
        batch_op.drop_constraint(
            batch_op.f("fk_timestamps_tree_id_merkle_trees"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_timestamps_tree_id"))
        batch_op.drop_index(batch_op.f("ix_timestamps_imprint"))
        batch_op.alter_column("snapshot_id", existing_type=sa.VARCHAR(length=64), nullable=False)
        batch_op.drop_column("chain_sha256")
        batch_op.drop_column("custody_event_id")
        batch_op.drop_column("tree_id")
        batch_op.drop_column("imprint")
        batch_op.drop_column("subject")

    with op.batch_alter_table("snapshots", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_snapshots_deleted_at"))
        batch_op.drop_column("deleted_at")

    with op.batch_alter_table("signing_keys", schema=None) as batch_op:
        batch_op.drop_column("endorsement_sha256")
        batch_op.drop_column("endorsed_by")

    with op.batch_alter_table("collections", schema=None) as batch_op:
        batch_op.drop_column("retention_days")

    with op.batch_alter_table("merkle_proofs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_merkle_proofs_tree_id"))

    op.drop_table("merkle_proofs")
    with op.batch_alter_table("legal_holds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_legal_holds_snapshot_id"))
        batch_op.drop_index(batch_op.f("ix_legal_holds_collection_id"))

    op.drop_table("legal_holds")
    with op.batch_alter_table("merkle_trees", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_merkle_trees_run_id"))
        batch_op.drop_index(batch_op.f("ix_merkle_trees_root"))

    op.drop_table("merkle_trees")
