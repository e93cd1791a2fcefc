"""`evidence schedule`: the scheduler of nightly runs, and what it will run when."""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from jobs import schedule
from jobs.cli.archive import finish_run_output
from jobs.cli.common import ConsoleProgress, JsonOption, err, out, print_json, safe, state

schedule_app = typer.Typer(
    help="Scheduled runs: every entry of the sources configuration that has a schedule.",
    no_args_is_help=True,
)
SourceArg = Annotated[str, typer.Argument(help="A source with a schedule in [sources].")]


@schedule_app.command("start")
def schedule_start() -> None:
    """Run the scheduler until SIGTERM or Ctrl-C (each run in a subprocess of its own)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its setup chatter, each run
    settings = state.settings

    def ready(synced: schedule.SyncResult) -> None:
        for name in synced.added + synced.changed + synced.kept:
            err.print(f"scheduled {safe(name)}")
        for name in synced.removed:
            err.print(f"unscheduled {safe(name)} (no longer in the configuration)")
        err.print(f"scheduler running ({len(schedule.scheduled_entries(settings))} source(s))")

    schedule.serve(settings, state.config_path, on_ready=ready)
    err.print("scheduler stopped")


@schedule_app.command("list")
def schedule_list(as_json: JsonOption = False) -> None:
    """Each scheduled source: its schedule, next run, pause, and how its last run ended."""
    rows = schedule.schedule_status(state.settings)
    if as_json:
        print_json([r.to_dict() for r in rows])
        return
    table = Table(title=f"{len(rows)} scheduled source(s)", box=box.SIMPLE_HEAD)
    for column in ("source", "runs", "schedule", "next run (UTC)", "paused", "last run"):
        table.add_column(column, overflow="fold")
    for r in rows:
        last = r.last_run
        table.add_row(
            safe(r.name),
            safe(r.source),
            safe(f"{r.schedule} ({r.timezone})"),
            f"{r.next_run:%Y-%m-%d %H:%M:%S}" if r.next_run else "-",
            f"{r.paused_at:%Y-%m-%d %H:%M}" if r.paused_at else "-",
            f"{last['status']} {last['started_at'][:19]} ({last['trigger']})" if last else "-",
        )
    out.print(table)


@schedule_app.command("run-now")
def schedule_run_now(
    source: SourceArg,
    note: Annotated[str | None, typer.Option("--note")] = None,
    as_json: JsonOption = False,
) -> None:
    """Run a scheduled source now, in this process (never alongside its scheduled run)."""
    with ConsoleProgress() as progress:
        result = schedule.run_now(state.settings, source, note=note, progress=progress)
    finish_run_output(result, f"{source} into collection {result.collection!r}", as_json)


@schedule_app.command("pause")
def schedule_pause(
    source: SourceArg,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (custody log).")] = None,
) -> None:
    """Skip a source's scheduled runs until `evidence schedule resume`."""
    schedule.set_paused(state.settings, source, True, reason)
    out.print(f"paused {safe(source)}: its scheduled runs are skipped until resumed")


@schedule_app.command("resume")
def schedule_resume(source: SourceArg) -> None:
    """Run a paused source on its schedule again."""
    schedule.set_paused(state.settings, source, False)
    out.print(f"resumed {safe(source)}")
