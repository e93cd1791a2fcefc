"""Custody logging of what people do with evidence: views, exports, verifications.

Every use case that shows, exports or checks evidence records it here, so that the CLI, the
scheduler and the web API log the same entries.
"""

from __future__ import annotations

from typing import Any

from evidence_store import custody
from evidence_store.archive import EvidenceStore

READ_ONLY_WARNING = "custody log not updated ({action}): the index is read-only"


def record_access(evidence: EvidenceStore, *, action: str, **event: Any) -> str | None:
    """Log an access in the custody log; on a read-only index, return a warning instead."""
    index = evidence.index
    if index.read_only:
        return READ_ONLY_WARNING.format(action=action)
    with index.writing(custody.CUSTODY_LOCK) as session:
        custody.record(session, action=action, actor=evidence.actor, **event)
    return None
