"""`evidence custody`: the chain of custody of a snapshot, and checks of the whole log."""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.table import Table

from jobs import custody
from jobs.cli.common import JsonOption, SnapshotArg, err, out, print_json, safe, state, warn

custody_app = typer.Typer(
    help="The custody log: who did what to which evidence.", no_args_is_help=True
)


@custody_app.command("show")
def custody_show(snapshot: SnapshotArg, as_json: JsonOption = False) -> None:
    """Every custody entry about a snapshot, oldest first (this viewing is logged too)."""
    trail = custody.trail(state.settings, snapshot)
    for message in trail.warnings:
        warn(message)
    if as_json:
        print_json({"snapshot": trail.snapshot, "entries": trail.entries})
        return
    table = Table(title=f"custody of snapshot {trail.snapshot}", box=box.SIMPLE_HEAD)
    for column in ("#", "time (UTC)", "action", "actor", "reason / details", "entry hash"):
        table.add_column(column, overflow="fold")
    for e in trail.entries:
        details = ", ".join(f"{k}={v}" for k, v in e["details"].items() if not isinstance(v, list))
        table.add_row(
            str(e["id"]),
            e["occurred_at"],
            safe(e["action"]),
            safe(e["actor"]),
            safe(e["reason"] or details),
            e["entry_hash"][:16],
        )
    out.print(table)
    n = len(trail.entries)
    out.print(f"{n} entr{'y' if n == 1 else 'ies'}")


@custody_app.command("verify")
def custody_verify(
    require: Annotated[
        list[str] | None,
        typer.Option(
            "--require",
            help="Make an unchecked head timestamp a failure: timestamps, revocation.",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Check every entry's hash and link, the index against the log, and that timestamped
    heads are still in the log."""
    with err.status("checking the custody log"):
        result = custody.verify_custody(state.settings, require=frozenset(require or ()))
    for message in result.warnings:
        warn(message)
    check = result.check
    if as_json:
        print_json(check.to_dict())
    else:
        for problem in check.problems:
            err.print(f"[red]PROBLEM[/] {safe(problem)}")
        for item in check.unchecked:
            err.print(f"[yellow]UNCHECKED[/] {safe(item)}")
        color = "red" if check.problems else "yellow" if check.unchecked else "green"
        out.print(
            f"custody log: {check.entries} entries, head {check.head or '-'}, "
            f"{check.anchors_verified} timestamped head(s) checked: [{color}]{check.verdict}[/]"
        )
    if check.problems:
        raise typer.Exit(1)


@custody_app.command("anchor")
def custody_anchor(as_json: JsonOption = False) -> None:
    """Timestamp the custody log's head now (runs do it after each capture; cron can too)."""
    anchored = custody.anchor(state.settings)
    if as_json:
        print_json(anchored)
    else:
        out.print(
            f"custody entry {anchored['entry']} ({anchored['entry_hash'][:16]}) timestamped "
            f"at {anchored['gen_time']} by {safe(anchored['tsa'])}"
        )
