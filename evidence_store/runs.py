"""Runs: one execution of a capture, crawl or ingest job, so that its snapshots can be found
together (and timestamped together, when their source asks for one Merkle tree per run).

A run row names the process that runs it (host, pid and the process's start time), so that a
run left ``running`` by a process that was killed is recognised later and marked
``interrupted`` instead of looking as if it were still going.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from evidence_store.archive import EvidenceStore, collection_lock, source_row
from evidence_store.errors import EvidenceError
from evidence_store.index.models import Collection, Run, Source
from schemas import utc_now

RUN_STATUSES = ("running", "succeeded", "partial", "failed", "interrupted")


def process_identity(pid: int | None = None) -> str | None:
    """A token that differs between two processes that had the same pid (Linux: boot id and
    the process's start time in clock ticks); None where /proc does not tell."""
    pid = os.getpid() if pid is None else pid
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return f"{boot}:{fields[19]}"


def _process_alive(pid: int, identity: str | None) -> bool:
    if identity is not None and Path("/proc").is_dir():
        return process_identity(pid) == identity
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunConflict(EvidenceError):
    """Another run of the same source is still going (one run per source at a time)."""


def source_lock(source: str) -> str:
    return f"source:{source}"


def start_run(
    evidence: EvidenceStore,
    *,
    kind: str,
    collection: str,
    source: str | None = None,
    trigger: str = "manual",
    note: str | None = None,
    exclusive: bool = False,
) -> str:
    """Record that a run started in this process; returns its id (a UUID).

    ``exclusive``: refuse (RunConflict) while another run of ``source`` is ``running``. The
    check and the insert are one transaction under the source's lock, so two schedulers (or
    a scheduler and a person) starting the same source at once cannot both get in.
    """
    run_id = str(uuid.uuid4())
    locks = [collection_lock(collection)] + ([source_lock(source)] if source else [])
    with evidence.index.writing(*locks) as session:
        if exclusive and source:
            other = session.scalars(
                select(Run)
                .join(Source, Run.source_id == Source.id)
                .where(Source.name == source, Run.status == "running")
            ).first()
            if other is not None:
                raise RunConflict(
                    f"source {source} is already running (run {other.id}, started "
                    f"{other.started_at:%Y-%m-%d %H:%M:%S}Z by process {other.pid} on "
                    f"{other.host}): one run per source at a time"
                )
        found = session.scalars(select(Collection).where(Collection.name == collection)).first()
        session.add(
            Run(
                id=run_id,
                source_id=source_row(session, source, kind=kind).id if source else None,
                collection_id=found.id if found else None,
                trigger=trigger,
                status="running",
                started_at=utc_now(),
                stats={"kind": kind, "collection": collection},
                note=note,
                kind=kind,
                host=socket.gethostname(),
                pid=os.getpid(),
                process_started=process_identity(),
            )
        )
    return run_id


def finish_run(
    evidence: EvidenceStore,
    run_id: str,
    *,
    status: str,
    stats: dict[str, Any],
    error: str | None = None,
) -> None:
    """Record how a run ended (succeeded, partial, failed, interrupted) with its counts."""
    if status not in RUN_STATUSES[1:]:
        raise ValueError(f"not a final run status: {status!r}")
    with evidence.index.writing() as session:
        run = session.get(Run, run_id)
        if run is None:
            return
        run.status = status
        run.finished_at = utc_now()
        run.stats = {**run.stats, **stats}
        run.error = error


@dataclass(frozen=True)
class InterruptedRun:
    id: str
    kind: str | None
    started_at: datetime
    host: str | None
    pid: int | None


def mark_interrupted(evidence: EvidenceStore) -> list[InterruptedRun]:
    """Find runs left ``running`` by a process of this host that is gone; mark them
    ``interrupted``. Runs of other hosts are left alone: only their own host can tell."""
    host = socket.gethostname()
    with evidence.index.session() as session:
        candidates = [
            (r.id, r.pid, r.process_started)
            for r in session.scalars(
                select(Run).where(Run.status == "running", Run.host == host, Run.pid.is_not(None))
            )
        ]
    dead = [rid for rid, pid, ident in candidates if not _process_alive(pid, ident)]
    if not dead:
        return []
    found: list[InterruptedRun] = []
    with evidence.index.writing() as session:
        for run in session.scalars(select(Run).where(Run.id.in_(dead))):
            if run.status != "running":  # another process marked it meanwhile
                continue
            run.status = "interrupted"
            run.finished_at = utc_now()
            run.error = f"the process {run.pid} on {run.host} ended without finishing the run"
            found.append(InterruptedRun(run.id, run.kind, run.started_at, run.host, run.pid))
    return found
