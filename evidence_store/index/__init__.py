"""The SQL index: SQLAlchemy models, the database and its Alembic migrations."""

from evidence_store.index.database import Index, redact_url
from evidence_store.index.models import (
    Artifact,
    Base,
    Collection,
    CustodyEvent,
    Run,
    SigningKey,
    Snapshot,
    Source,
    TimestampRecord,
)

__all__ = [
    "Artifact",
    "Base",
    "Collection",
    "CustodyEvent",
    "Index",
    "Run",
    "SigningKey",
    "Snapshot",
    "Source",
    "TimestampRecord",
    "redact_url",
]
