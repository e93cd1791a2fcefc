"""`evidence hold`: legal holds on snapshots and collections (set, release, list, sync)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.table import Table

from evidence_store.errors import EvidenceError
from evidence_store.holds import HoldOutcome
from jobs import holds
from jobs.cli.common import ConsoleProgress, JsonOption, err, out, print_json, safe, short, state

hold_app = typer.Typer(
    help="Legal holds: while one is active, nothing of its snapshot or collection is deleted.",
    no_args_is_help=True,
)

TargetArgument = Annotated[
    str, typer.Argument(help="Snapshot id (or a unique prefix) or collection name.")
]
ReasonOption = Annotated[
    str, typer.Option("--reason", help="Why (required; recorded in the custody log).")
]
SnapshotFlag = Annotated[
    bool, typer.Option("--snapshot", help="TARGET is a snapshot (when a name is ambiguous).")
]
CollectionFlag = Annotated[
    bool, typer.Option("--collection", help="TARGET is a collection (when a name is ambiguous).")
]


def _kind(snapshot: bool, collection: bool) -> str | None:
    if snapshot and collection:
        raise EvidenceError("give --snapshot or --collection, not both")
    return "snapshot" if snapshot else "collection" if collection else None


def _report(outcome: HoldOutcome, verb: str, as_json: bool) -> None:
    hold = outcome.hold
    if as_json:
        print_json(
            {
                "hold": hold.to_dict(),
                "store_objects": outcome.objects,
                "kept_on": outcome.kept_on,
                "store_failures": outcome.failures,
            }
        )
    else:
        out.print(f"{verb} {safe(hold.describe())}")
        if outcome.snapshot_deleted_at:
            err.print(
                f"[yellow]note:[/] the retention policy deleted this snapshot's artifacts at "
                f"{outcome.snapshot_deleted_at}; the hold keeps its manifest and signature"
            )
        if outcome.objects or outcome.kept_on:
            kept = f", {outcome.kept_on} kept on for other holds" if outcome.kept_on else ""
            out.print(f"store legal hold switched on {outcome.objects} object(s){kept}")
    if outcome.failures:
        for failure in outcome.failures[:5]:
            err.print(f"[yellow]store:[/] {safe(failure)}")
        raise EvidenceError(
            f"legal hold #{hold.id} is recorded in the index, but the store's legal hold could "
            f"not be switched on {len(outcome.failures)} object(s); fix the cause and run "
            "`evidence hold sync`"
        )


@hold_app.command("set")
def hold_set(
    target: TargetArgument,
    reason: ReasonOption,
    snapshot: SnapshotFlag = False,
    collection: CollectionFlag = False,
    as_json: JsonOption = False,
) -> None:
    """Put a legal hold on a snapshot or a collection (S3: legal hold on each of its objects)."""
    with ConsoleProgress() as progress:
        outcome = holds.hold(
            state.settings, target, reason, kind=_kind(snapshot, collection), progress=progress
        )
    _report(outcome, "set", as_json)


@hold_app.command("release")
def hold_release(
    reason: ReasonOption,
    target: Annotated[
        str | None,
        typer.Argument(help="Snapshot id (or prefix) or collection name; optional with --id."),
    ] = None,
    hold_id: Annotated[
        int | None, typer.Option("--id", help="The hold's number (see `evidence hold list`).")
    ] = None,
    snapshot: SnapshotFlag = False,
    collection: CollectionFlag = False,
    as_json: JsonOption = False,
) -> None:
    """Release a legal hold; the store's hold is lifted where no other hold covers an object."""
    with ConsoleProgress() as progress:
        outcome = holds.release(
            state.settings,
            target,
            reason,
            hold_id=hold_id,
            kind=_kind(snapshot, collection),
            progress=progress,
        )
    _report(outcome, "released", as_json)


@hold_app.command("list")
def hold_list(
    all_: Annotated[bool, typer.Option("--all", help="Released holds too.")] = False,
    as_json: JsonOption = False,
) -> None:
    """List the active legal holds (with --all, released ones too)."""
    found = holds.holds(state.settings, include_released=all_)
    if as_json:
        print_json([h.to_dict() for h in found])
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("#", "target", "collection", "reason", "set (UTC)", "by", "released"):
        table.add_column(column, overflow="fold")
    for h in found:
        released = "-"
        if h.released_at:
            released = f"{h.released_at} by {h.released_by}: {h.release_reason}"
        table.add_row(
            str(h.id),
            short(h.snapshot) if h.snapshot else "whole collection",
            safe(h.collection),
            safe(h.reason),
            h.set_at,
            safe(h.set_by),
            safe(released),
        )
    out.print(table)
    active = sum(1 for h in found if h.active)
    out.print(
        f"{active} active legal hold(s)" + (f", {len(found) - active} released" if all_ else "")
    )


@hold_app.command("sync")
def hold_sync(as_json: JsonOption = False) -> None:
    """Make the store's legal holds agree with the index (new snapshots in held collections)."""
    with ConsoleProgress() as progress:
        result = holds.sync(state.settings, progress=progress)
    if as_json:
        print_json(result.__dict__)
    else:
        for failure in result.failures[:5]:
            err.print(f"[yellow]store:[/] {safe(failure)}")
        out.print(
            f"store legal hold on for {result.switched_on} object(s), "
            f"off for {result.switched_off}, {len(result.failures)} failure(s)"
        )
    if result.failures:
        raise EvidenceError(f"{len(result.failures)} object(s) could not be synced")
