"""`evidence custody`: the chain of custody of a snapshot, and checks of the whole log."""

from __future__ import annotations

from typing import Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table
from sqlalchemy import select

from evidence_store import custody
from evidence_store.errors import EvidenceError
from evidence_store.index.models import CustodyEvent, MerkleProof
from evidence_store.queries import resolve_snapshot
from jobs.cli.common import (
    JsonOption,
    SnapshotArg,
    err,
    out,
    print_json,
    record_custody,
    state,
)
from jobs.context import open_evidence
from schemas import format_rfc3339

custody_app = typer.Typer(
    help="The custody log: who did what to which evidence.", no_args_is_help=True
)


def _entry(event: CustodyEvent) -> dict[str, Any]:
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


@custody_app.command("show")
def custody_show(
    snapshot: SnapshotArg,
    as_json: JsonOption = False,
) -> None:
    """Every custody entry about a snapshot, oldest first (this viewing is logged too)."""
    settings = state.settings
    evidence = open_evidence(settings)
    with evidence.index.session() as session:
        snap = resolve_snapshot(session, snapshot)
        snapshot_id, collection_id = snap.id, snap.collection_id
        tree_id = session.scalars(
            select(MerkleProof.tree_id).where(MerkleProof.snapshot_id == snapshot_id)
        ).first()
        entries = [
            _entry(e)
            for e in custody.events_of(
                session, snapshot_id, collection_id=collection_id, tree_id=tree_id
            )
        ]
    record_custody(
        evidence.index,
        action="viewed",
        actor=settings.actor,
        snapshot_id=snapshot_id,
        details={"what": "custody"},
    )
    if as_json:
        print_json({"snapshot": snapshot_id, "entries": entries})
        return
    table = Table(title=f"custody of snapshot {snapshot_id}", box=box.SIMPLE_HEAD)
    for column in ("#", "time (UTC)", "action", "actor", "reason / details", "entry hash"):
        table.add_column(column, overflow="fold")
    for e in entries:
        details = ", ".join(f"{k}={v}" for k, v in e["details"].items() if not isinstance(v, list))
        table.add_row(
            str(e["id"]),
            e["occurred_at"],
            e["action"],
            escape(e["actor"]),
            escape(e["reason"] or details),
            e["entry_hash"][:16],
        )
    out.print(table)
    out.print(f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}")


@custody_app.command("verify")
def custody_verify(as_json: JsonOption = False) -> None:
    """Check every entry's hash and link, and that timestamped heads are still in the log."""
    from evidence_store.timestamps.service import check_custody_anchors

    settings = state.settings
    evidence = open_evidence(settings)
    config = settings.timestamp_settings()
    anchors = config.anchors() if config.enabled or config.trust_anchors else None
    with err.status("checking the custody log"), evidence.index.session() as session:
        log = custody.verify_log(session)
        anchored, anchor_problems = check_custody_anchors(
            evidence.objects, session, anchors, config.crl_data()
        )
    problems = log.problems + anchor_problems
    record_custody(
        evidence.index,
        action="verified",
        actor=settings.actor,
        details={"scope": "custody", "entries": log.entries, "problems": len(problems)},
    )
    if as_json:
        print_json(
            {
                "entries": log.entries,
                "head": log.head,
                "anchors_verified": anchored,
                "problems": problems,
                "ok": not problems,
            }
        )
    else:
        for problem in problems:
            err.print(f"[red]PROBLEM[/] {escape(problem)}")
        verdict = "[green]OK[/]" if not problems else f"[red]{len(problems)} problem(s)[/]"
        out.print(
            f"custody log: {log.entries} entries, head {log.head or '-'}, "
            f"{anchored} timestamped head(s) checked: {verdict}"
        )
    if problems:
        raise typer.Exit(1)


@custody_app.command("anchor")
def custody_anchor(as_json: JsonOption = False) -> None:
    """Timestamp the custody log's head now (runs do it after each capture; cron can too)."""
    from evidence_store.timestamps.service import anchor_custody_head

    settings = state.settings
    config = settings.timestamp_settings()
    if not config.enabled:
        raise EvidenceError(
            "no TSA configured: set [timestamps] tsa_urls (EVIDENCE_TIMESTAMPS__TSA_URLS)"
        )
    evidence = open_evidence(settings)
    anchored = anchor_custody_head(evidence, config)
    if as_json:
        print_json(anchored)
    else:
        out.print(
            f"custody entry {anchored['entry']} ({anchored['entry_hash'][:16]}) timestamped "
            f"at {anchored['gen_time']} by {escape(anchored['tsa'])}"
        )
