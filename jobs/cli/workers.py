"""`evidence enqueue`, `evidence worker` and the part of a run a worker runs (`crawl-part`)."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from jobs.cli.archive import AllowPrivateOption, NoteOption, _settings
from jobs.cli.common import JsonOption, err, out, print_json, safe, state


def enqueue(
    source: Annotated[str, typer.Argument(help="A registered source or an entry of \\[sources].")],
    arguments: Annotated[
        list[str] | None,
        typer.Option("--arg", "-a", help="A setting for this run, key=value (repeatable)."),
    ] = None,
    note: NoteOption = None,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Wait until the workers have finished it.")
    ] = True,
    trigger: Annotated[str, typer.Option("--trigger", hidden=True)] = "manual",
    as_json: JsonOption = False,
) -> None:
    """Start a distributed run: its items go to the shared frontier ([workers] redis_url),
    where `evidence worker` processes on any machine take them."""
    from jobs.workers import enqueue as enqueue_run
    from jobs.workers import wait_for_run

    settings = state.settings
    shared = enqueue_run(settings, source, arguments or [], note=note, trigger=trigger)
    message = f"run {shared.run_id} of {shared.source}: {len(shared.items)} item(s) enqueued"
    (err if as_json else out).print(safe(message))
    status = wait_for_run(settings, shared.run_id) if wait else "running"
    if as_json:
        print_json({"run": shared.run_id, "items": len(shared.items), "status": status})
    elif wait:
        out.print(f"run {shared.run_id} {status} (evidence runs show {shared.run_id[:8]})")
    if status == "failed":
        raise typer.Exit(2)
    if status == "partial":
        raise typer.Exit(3)
    if status == "interrupted":
        raise typer.Exit(130)


def worker(
    idle_exit: Annotated[
        float | None,
        typer.Option("--idle-exit", min=0, help="Stop after this many seconds with no work."),
    ] = None,
    allow_private: AllowPrivateOption = False,
) -> None:
    """Take items of the open distributed runs until stopped (SIGTERM or Ctrl-C let the part
    in hand finish its snapshot; its unreported items go back to the frontier)."""
    from jobs.workers import work

    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        summary = work(
            _settings(allow_private),
            config=state.config_path,
            idle_exit=idle_exit,
            stop=stop,
            on_part=lambda run, n: err.print(f"run {run[:8]}: {n} item(s) done"),
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
    out.print(
        f"worker {safe(summary.worker)}: {summary.items} item(s) in {summary.parts} part(s); "
        f"finished {len(summary.finished_runs)} run(s)"
    )


def crawl_part(
    run: Annotated[str, typer.Argument(help="The run this part belongs to.")],
    items: Annotated[Path, typer.Option("--items", help="JSON list of the items to capture.")],
    output: Annotated[Path, typer.Option("--out", help="Where to write the outcomes (JSON).")],
) -> None:
    """One part of a shared run (started by a worker or by crawl --workers)."""
    from jobs.workers import crawl_part as run_part

    result = run_part(state.settings, run, json.loads(items.read_text(encoding="utf-8")))
    partial = output.with_suffix(".partial")
    partial.write_text(
        json.dumps(
            {
                "outcomes": [o.model_dump(mode="json") for o in result.outcomes],
                "skipped": result.skipped,
                "stats": result.stats,
            }
        ),
        encoding="utf-8",
    )
    partial.replace(output)  # whole or absent: the worker reads it only after the exit


__all__ = ["crawl_part", "enqueue", "worker"]
