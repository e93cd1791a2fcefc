"""One schema for statements of reasons of every dump: the columns as published, and the
Parquet schema they are normalised into.

The 1 July 2025 schema change added ``content_id_ean`` (37 → 38 columns) and renamed
categories; light dumps leave out the free-text columns. All of them land in one Parquet
schema: arrays as lists, dates as timestamps, Yes/No as booleans, a missing column as null,
the category in the vocabulary of 1 July 2025 beside the category as published.
"""

from __future__ import annotations

import pyarrow as pa

COLUMNS_V1 = (
    "uuid",
    "decision_visibility",
    "decision_visibility_other",
    "end_date_visibility_restriction",
    "decision_monetary",
    "decision_monetary_other",
    "end_date_monetary_restriction",
    "decision_provision",
    "end_date_service_restriction",
    "decision_account",
    "end_date_account_restriction",
    "account_type",
    "decision_ground",
    "decision_ground_reference_url",
    "illegal_content_legal_ground",
    "illegal_content_explanation",
    "incompatible_content_ground",
    "incompatible_content_explanation",
    "incompatible_content_illegal",
    "category",
    "category_addition",
    "category_specification",
    "category_specification_other",
    "content_type",
    "content_type_other",
    "content_language",
    "content_date",
    "territorial_scope",
    "application_date",
    "decision_facts",
    "source_type",
    "source_identity",
    "automated_detection",
    "automated_decision",
    "platform_name",
    "platform_uid",
    "created_at",
)
_AT = COLUMNS_V1.index("territorial_scope")
COLUMNS_V2 = (*COLUMNS_V1[:_AT], "content_id_ean", *COLUMNS_V1[_AT:])

LIST_COLUMNS = frozenset(
    {
        "decision_visibility",
        "category_addition",
        "category_specification",
        "content_type",
        "territorial_scope",
    }
)
DATE_COLUMNS = frozenset(
    {
        "end_date_visibility_restriction",
        "end_date_monetary_restriction",
        "end_date_service_restriction",
        "end_date_account_restriction",
        "content_date",
        "application_date",
        "created_at",
    }
)
BOOL_COLUMNS = frozenset({"automated_detection", "incompatible_content_illegal"})
# Columns every dump has, light ones too: without them a file is not a dump of statements.
REQUIRED = ("uuid", "decision_ground", "category", "platform_name", "created_at")

# Categories renamed on 1 July 2025 (the old name on the left). Categories without a
# one-to-one successor (PORNOGRAPHY_OR_SEXUALIZED_CONTENT) keep their old name; the category
# as published is kept beside the normalised one in every row.
CATEGORY_RENAMES = {
    "STATEMENT_CATEGORY_SCOPE_OF_PLATFORM_SERVICE": "STATEMENT_CATEGORY_OTHER_VIOLATION_TC",
    "STATEMENT_CATEGORY_UNSAFE_AND_ILLEGAL_PRODUCTS": (
        "STATEMENT_CATEGORY_UNSAFE_AND_PROHIBITED_PRODUCTS"
    ),
    "STATEMENT_CATEGORY_NON_CONSENSUAL_BEHAVIOUR": "STATEMENT_CATEGORY_CYBER_VIOLENCE",
}

# Where each statement came from: enough to find the very row in the archived dump.
PROVENANCE = (
    pa.field("schema_version", pa.int8()),
    pa.field("dump_snapshot", pa.string()),
    pa.field("part", pa.string()),
    pa.field("csv_file", pa.string()),
    pa.field("row", pa.int64()),  # 1 = the first row after the header
)


def _type(column: str) -> pa.DataType:
    if column in LIST_COLUMNS:
        return pa.list_(pa.string())
    if column in DATE_COLUMNS:
        return pa.timestamp("s")
    if column in BOOL_COLUMNS:
        return pa.bool_()
    return pa.string()


SCHEMA = pa.schema(
    [pa.field(c, _type(c)) for c in COLUMNS_V2]
    + [pa.field("category_as_published", pa.string())]
    + list(PROVENANCE)
)
PARQUET_FORMAT = "dsa-evidence/sor-parquet/1"


def schema_version(columns: list[str]) -> int:
    """1 before the change of 1 July 2025, 2 after (the column ``content_id_ean``)."""
    return 2 if "content_id_ean" in columns else 1


def check_columns(columns: list[str]) -> None:
    """Refuse a header that is not a dump's: unknown columns, or required ones missing.

    An unknown column fails loudly rather than being dropped: the raw dump stays archived,
    and a new schema is added here before its rows are ingested.
    """
    known = set(COLUMNS_V2)
    unknown = [c for c in columns if c not in known]
    if unknown:
        raise ValueError(f"unknown columns {', '.join(unknown)} (a new schema of the dumps?)")
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise ValueError(f"not a dump of statements of reasons: no column {', '.join(missing)}")
    if len(set(columns)) != len(columns):
        raise ValueError("a column is named twice in the header")
