"""Ads of the political-ad libraries: ads, their versions, the queries that saw them
(records.ads.models)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "ads",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("ad_id", sa.String(length=200), nullable=False),
        sa.Column("advertiser_name", sa.Text(), nullable=True),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_run_id", sa.String(length=36), nullable=True),
        sa.Column("unseen_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("unseen_run_id", sa.String(length=36), nullable=True),
        sa.Column("versions", sa.Integer(), nullable=False),
        sa.Column("current", JSON, nullable=False),
        sa.Column("special_categories", JSON, nullable=False),
        sa.Column("creative_snapshot_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ads")),
        sa.UniqueConstraint("platform", "ad_id", name="uq_ads_platform_ad_id"),
    )
    with op.batch_alter_table("ads", schema=None) as batch_op:
        batch_op.create_index("ix_ads_advertiser", ["platform", "advertiser_name"])
        batch_op.create_index(batch_op.f("ix_ads_unseen_since"), ["unseen_since"], unique=False)
    op.create_table(
        "ad_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ad_pk", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("fields", JSON, nullable=False),
        sa.Column("snapshot_id", sa.String(length=64), nullable=False),
        sa.Column("warc_record_id", sa.String(length=100), nullable=True),
        sa.Column("run_id", sa.String(length=36), nullable=True),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["ad_pk"], ["ads.id"], name=op.f("fk_ad_versions_ad_pk_ads")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ad_versions")),
        sa.UniqueConstraint("ad_pk", "number", name="uq_ad_versions_number"),
    )
    with op.batch_alter_table("ad_versions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ad_versions_ad_pk"), ["ad_pk"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_ad_versions_snapshot_id"), ["snapshot_id"], unique=False
        )
    op.create_table(
        "ad_sightings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ad_pk", sa.Integer(), nullable=False),
        sa.Column("query_key", sa.String(length=64), nullable=False),
        sa.Column("last_run_id", sa.String(length=36), nullable=True),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["ad_pk"], ["ads.id"], name=op.f("fk_ad_sightings_ad_pk_ads")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ad_sightings")),
        sa.UniqueConstraint("ad_pk", "query_key", name="uq_ad_sightings_query"),
    )
    with op.batch_alter_table("ad_sightings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ad_sightings_ad_pk"), ["ad_pk"], unique=False)
        batch_op.create_index(batch_op.f("ix_ad_sightings_query_key"), ["query_key"], unique=False)


def downgrade() -> None:
    op.drop_table("ad_sightings")
    op.drop_table("ad_versions")
    op.drop_table("ads")
