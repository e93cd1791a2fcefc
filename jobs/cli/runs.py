"""`evidence runs`: what ran, when, how it ended and why."""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.table import Table

from jobs.cli.common import JsonOption, out, print_json, safe, state
from jobs.runs import list_runs, show_run

runs_app = typer.Typer(help="Runs of sources: history, status, failures.", no_args_is_help=True)


@runs_app.command("list")
def runs_list(
    source: Annotated[str | None, typer.Option("--source", help="Only this source.")] = None,
    status: Annotated[
        str | None,
        typer.Option("--status", help="Only runs that ended so (succeeded, partial, failed, …)."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Runs, newest first."""
    runs = list_runs(state.settings, source=source, status=status, limit=limit)
    if as_json:
        print_json([r.to_dict() for r in runs])
        return
    table = Table(title=f"{len(runs)} run(s)", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("run", "source", "trigger", "started (UTC)", "took", "status"):
        table.add_column(column, no_wrap=True, overflow="ellipsis", max_width=24)
    table.add_column("items", overflow="fold", min_width=12)
    for r in runs:
        took = f"{(r.finished_at - r.started_at).total_seconds():.0f}s" if r.finished_at else "-"
        outcomes = r.stats.get("outcomes") or {}
        items = ", ".join(f"{n} {k}" for k, n in outcomes.items()) or str(
            r.stats.get("snapshots", "-")
        )
        table.add_row(
            r.id[:8],
            safe(r.source or "-"),
            r.trigger,
            f"{r.started_at:%Y-%m-%d %H:%M:%S}",
            took,
            r.status,
            safe(items),
        )
    out.print(table)


@runs_app.command("show")
def runs_show(
    run: Annotated[str, typer.Argument(help="A run id or a unique prefix (4+ characters).")],
    as_json: JsonOption = False,
) -> None:
    """One run: its counts, what failed and why, and where its report is archived."""
    info = show_run(state.settings, run)
    if as_json:
        print_json(info.to_dict())
        return
    out.print(f"[bold]run[/] {info.id}: {info.status}")
    out.print(
        f"source {safe(info.source or '-')} ({safe(info.kind or '-')}), collection "
        f"{safe(info.collection or '-')}, trigger {info.trigger}"
    )
    ended = f"{info.finished_at:%Y-%m-%d %H:%M:%S}Z" if info.finished_at else "-"
    out.print(f"started {info.started_at:%Y-%m-%d %H:%M:%S}Z, ended {ended}")
    out.print(f"process {info.pid} on {safe(info.host or '-')}")
    stats = info.stats
    outcomes = ", ".join(f"{n} {k}" for k, n in (stats.get("outcomes") or {}).items())
    out.print(
        f"requests {stats.get('requests', '-')}, snapshots {stats.get('snapshots', '-')}, "
        f"untimestamped {stats.get('untimestamped', '-')}; outcomes: {safe(outcomes or '-')}"
    )
    if "records" in stats:
        out.print(
            f"records {stats['records']:,} from the run's snapshots, "
            f"{stats.get('derived_snapshots', 0)} derived snapshot(s)"
        )
    if info.error:
        out.print(f"[red]error[/] {safe(info.error)}")
    if info.note:
        out.print(f"note {safe(info.note)}")
    for failure in stats.get("failures") or []:
        out.print(f"  not archived: {safe(failure['outcome'])} {safe(failure['item'])}")
    if info.report_snapshot:
        out.print(f"report and log archived as snapshot {info.report_snapshot}")


@runs_app.command("resume")
def runs_resume(
    run: Annotated[str, typer.Argument(help="The interrupted run's id.")],
    workers: Annotated[
        int, typer.Option("--workers", min=1, max=256, help="Processes capturing side by side.")
    ] = 1,
    allow_private: Annotated[
        bool, typer.Option("--allow-private", help="Allow loopback and private addresses.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Finish an interrupted run: its items are captured in the same run, except those it
    archived before it stopped."""
    from jobs.cli.archive import _settings, finish_run_output
    from jobs.cli.common import ConsoleProgress
    from jobs.runs import show_run
    from jobs.workers import resume_run

    settings = _settings(allow_private)
    run_id = show_run(settings, run).id  # a prefix is enough
    with ConsoleProgress() as progress:
        result = resume_run(
            settings, run_id, workers=workers, config=state.config_path, progress=progress
        )
    finish_run_output(result, f"run {run_id} resumed", as_json)
