"""Runs: one execution of a capture or ingest job, so that its snapshots can be found together
(and timestamped together, when their source asks for one Merkle tree per run)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from evidence_store.archive import EvidenceStore, collection_lock, source_row
from evidence_store.index.models import Collection, Run
from schemas import utc_now


def start_run(
    evidence: EvidenceStore,
    *,
    kind: str,
    collection: str,
    source: str | None = None,
    trigger: str = "manual",
    note: str | None = None,
) -> str:
    """Record that a run started; returns its id (a UUID) for the captures it makes."""
    run_id = str(uuid.uuid4())
    with evidence.index.writing(collection_lock(collection)) as session:
        found = session.scalars(select(Collection).where(Collection.name == collection)).first()
        session.add(
            Run(
                id=run_id,
                source_id=source_row(session, source, kind=kind).id if source else None,
                collection_id=found.id if found else None,
                trigger=trigger,
                status="running",
                started_at=utc_now(),
                stats={"kind": kind},
                note=note,
            )
        )
    return run_id


def finish_run(evidence: EvidenceStore, run_id: str, *, status: str, stats: dict[str, Any]) -> None:
    """Record how a run ended (succeeded, partial, failed) with its counts."""
    with evidence.index.writing() as session:
        run = session.get(Run, run_id)
        if run is None:
            return
        run.status = status
        run.finished_at = utc_now()
        run.stats = {**run.stats, **stats}
