"""`evidence store`: the object store's housekeeping."""

from __future__ import annotations

from typing import Annotated

import typer

from jobs.cli.common import JsonOption, out, print_json, safe, state
from jobs.store import sweep_store

store_app = typer.Typer(help="The object store.", no_args_is_help=True)


@store_app.command("sweep")
def store_sweep(
    remove_temporary: Annotated[
        bool,
        typer.Option(
            "--remove-temporary",
            help="Delete temporary files of interrupted writes (over an hour old).",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """List objects no snapshot refers to (left by interrupted runs); nothing is deleted."""
    report = sweep_store(state.settings, remove_temporary=remove_temporary)
    if as_json:
        print_json(report.__dict__)
        return
    for digest in report.orphans:
        out.print(f"orphan sha256:{digest}")
    for tmp in report.temporary:
        removed = " (removed)" if tmp in report.removed_temporary else ""
        out.print(f"temporary {safe(tmp)}{removed}")
    out.print(
        f"{report.objects} object(s), {report.referenced} referenced, "
        f"{len(report.orphans)} orphaned (kept, logged to the custody log), "
        f"{len(report.temporary)} temporary file(s)"
    )
