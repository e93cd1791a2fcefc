"""`evidence retention`: per-collection retention policies and the deletions they allow."""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.table import Table

from evidence_store.errors import EvidenceError
from jobs import retention
from jobs.cli.common import ConsoleProgress, JsonOption, err, out, print_json, safe, short, state

retention_app = typer.Typer(
    help="Retention policies: the only way evidence is ever deleted (never under a legal hold).",
    no_args_is_help=True,
)


@retention_app.command("set")
def retention_set(
    collection: Annotated[str, typer.Argument(help="Collection name.")],
    reason: Annotated[
        str, typer.Option("--reason", help="Why (required; recorded in the custody log).")
    ],
    days: Annotated[
        int | None,
        typer.Option("--days", help="Delete snapshots' artifacts this many days after archiving."),
    ] = None,
    forever: Annotated[
        bool, typer.Option("--forever", help="Keep the collection's snapshots for ever.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Set a collection's retention policy (S3: objects retained at least that long)."""
    if (days is None) == (not forever):
        raise EvidenceError("give --days N or --forever (one of them)")
    with ConsoleProgress() as progress:
        change = retention.set_policy(
            state.settings, collection, None if forever else days, reason, progress=progress
        )

    def policy(value: int | None) -> str:
        return "keep for ever" if value is None else f"{value} days"

    if as_json:
        print_json(change.__dict__)
    else:
        out.print(
            f"collection {safe(repr(collection))}: {policy(change.previous_days)} -> "
            f"{policy(change.days)}"
        )
        if change.objects:
            out.print(f"store retention extended on {change.objects} object(s)")
    if change.failures:
        for failure in change.failures[:5]:
            err.print(f"[yellow]store:[/] {safe(failure)}")
        raise EvidenceError(
            f"the policy is recorded, but the store's retention could not be extended on "
            f"{len(change.failures)} object(s)"
        )


@retention_app.command("show")
def retention_show(as_json: JsonOption = False) -> None:
    """Every collection's policy, with deleted, held and due snapshots."""
    rows = retention.status(state.settings)
    if as_json:
        print_json([r.to_dict() for r in rows])
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("collection", "policy", "snapshots", "deleted", "held", "due now", "next due"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(
            safe(r.collection),
            "for ever" if r.days is None else f"{r.days} days",
            str(r.snapshots),
            str(r.deleted),
            str(r.held) + (f" ({r.holds} collection hold(s))" if r.holds else ""),
            str(r.due),
            r.next_due_at or "-",
        )
    out.print(table)
    due = sum(r.due for r in rows)
    out.print(
        f"{len(rows)} collection(s), {sum(1 for r in rows if r.days is not None)} with a policy; "
        f"{due} snapshot(s) due (`evidence retention apply`)"
    )


@retention_app.command("apply")
def retention_apply(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only report what would be deleted.")
    ] = False,
    collection: Annotated[
        str | None, typer.Option("--collection", help="Only this collection.")
    ] = None,
    snapshots: Annotated[
        list[str] | None,
        typer.Option("--snapshot", help="Only this snapshot (repeatable); errors say why not."),
    ] = None,
    bypass_governance: Annotated[
        bool,
        typer.Option(
            "--bypass-governance",
            help="S3: delete despite GOVERNANCE retention (needs s3:BypassGovernanceRetention).",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Delete the artifacts of due snapshots (manifest, signature, timestamps are kept)."""
    with ConsoleProgress() as progress:
        report = retention.apply(
            state.settings,
            dry_run=dry_run,
            collection=collection,
            snapshots=snapshots,
            bypass_governance=bypass_governance,
            progress=progress,
        )
    if as_json:
        print_json(report.to_dict())
    else:
        if report.deleted:
            title = "would delete" if dry_run else "deleted"
            table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
            for column in ("snapshot", "collection", "#", "archived (UTC)", "objects", "bytes"):
                table.add_column(column, overflow="fold")
            for d in report.deleted:
                kept = f" (+{len(d.kept_shared)} shared, kept)" if d.kept_shared else ""
                table.add_row(
                    short(d.snapshot),
                    safe(d.collection),
                    str(d.sequence),
                    d.archived_at,
                    f"{len(d.removed)}{kept}",
                    f"{d.bytes_removed:,}",
                )
            out.print(table)
        for held in report.held:
            out.print(f"held {short(held['snapshot'])}: {safe('; '.join(held['holds']))}")
        for blocked in report.blocked:
            out.print(f"blocked {short(blocked['snapshot'])}: {safe(blocked['reason'])}")
        for done in report.completed:
            left = done.get("removed") or done.get("pending") or []
            verb = "pending" if dry_run else "completed"
            out.print(f"{verb} {short(done['snapshot'])}: {len(left)} leftover object(s)")
        for failed in report.failed:
            err.print(f"[red]failed[/] sha256:{failed['sha256']}: {safe(failed['error'])}")
        verb = "would delete" if dry_run else "deleted"
        size = sum(d.bytes_removed for d in report.deleted) if dry_run else report.bytes_removed
        out.print(
            f"{verb} {len(report.deleted)} snapshot(s) ({size:,} bytes); "
            f"{len(report.held)} held, {len(report.blocked)} blocked by the store, "
            f"{len(report.failed)} failed"
        )
    if report.failed:
        raise EvidenceError(
            f"{len(report.failed)} object(s) could not be deleted; their snapshots are marked "
            "deleted and the next `evidence retention apply` retries them"
        )
