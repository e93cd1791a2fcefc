"""The custody log as people use it: a snapshot's trail (a view, logged), the check of the
whole log (a verification, logged) and the anchoring of its head with a timestamp."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from evidence_store import custody
from evidence_store.custody import CustodyCheck
from evidence_store.errors import EvidenceError
from evidence_store.index.models import CustodyEvent, MerkleProof
from evidence_store.queries import resolve_snapshot
from evidence_store.verify import REQUIREMENTS
from jobs.access import record_access
from jobs.config import Settings
from jobs.context import open_evidence
from jobs.timestamps import require_tsa
from jobs.verify import supplied_anchors
from schemas import format_rfc3339


def entry_dict(event: CustodyEvent) -> dict[str, Any]:
    """A custody entry as data (JSON output, reports)."""
    return {
        "id": event.id,
        "occurred_at": format_rfc3339(event.occurred_at),
        "actor": event.actor,
        "action": event.action,
        "snapshot": event.snapshot_id,
        "collection_id": event.collection_id,
        "reason": event.reason,
        "details": event.details,
        "previous_hash": event.previous_hash,
        "entry_hash": event.entry_hash,
    }


@dataclass
class Trail:
    snapshot: str
    entries: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)


def trail(settings: Settings, ref: str) -> Trail:
    """Every custody entry about a snapshot, oldest first (this viewing is logged too)."""
    evidence = open_evidence(settings)
    with evidence.index.session() as session:
        snap = resolve_snapshot(session, ref)
        snapshot_id, collection_id = snap.id, snap.collection_id
        tree_id = session.scalars(
            select(MerkleProof.tree_id).where(MerkleProof.snapshot_id == snapshot_id)
        ).first()
        entries = [
            entry_dict(e)
            for e in custody.events_of(
                session, snapshot_id, collection_id=collection_id, tree_id=tree_id
            )
        ]
    warning = record_access(
        evidence, action="viewed", snapshot_id=snapshot_id, details={"what": "custody"}
    )
    return Trail(snapshot_id, entries, [warning] if warning else [])


@dataclass
class CustodyVerification:
    check: CustodyCheck
    warnings: list[str] = field(default_factory=list)


def verify_custody(
    settings: Settings, *, require: frozenset[str] = frozenset()
) -> CustodyVerification:
    """Check every entry's hash and link, the index against the log, and that each
    timestamped head is still in the log with a token that verifies; logged as a
    verification. ``require`` as for ``evidence verify``."""
    if unknown := set(require) - REQUIREMENTS:
        allowed = ", ".join(sorted(REQUIREMENTS))
        raise EvidenceError(f"cannot require {', '.join(sorted(unknown))}: choose from {allowed}")
    evidence = open_evidence(settings)
    with evidence.index.session() as session:
        check = custody.verify_custody(
            evidence.objects,
            session,
            timestamp_anchors=supplied_anchors(settings),
            timestamp_crls=settings.timestamp_settings().crl_data(),
            require=frozenset(require),
        )
    result = CustodyVerification(check)
    warning = record_access(
        evidence,
        action="verified",
        details={
            "scope": "custody",
            "entries": check.entries,
            "problems": len(check.problems),
            "unchecked": len(check.unchecked),
            "require": sorted(require),
        },
    )
    if warning:
        result.warnings.append(warning)
    return result


def anchor(settings: Settings) -> dict[str, Any]:
    """Timestamp the custody log's head now (runs do it after each capture; cron can too)."""
    from evidence_store.timestamps.service import anchor_custody_head

    config = settings.timestamp_settings()
    require_tsa(config)
    return anchor_custody_head(open_evidence(settings), config)
