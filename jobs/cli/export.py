"""`evidence export`: archived snapshots in formats other tools read (each export is logged)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jobs.cli.common import JsonOption, out, print_json, safe, state, warn
from jobs.export import export_wacz

export_app = typer.Typer(help="Exports of archived snapshots.", no_args_is_help=True)


@export_app.command("wacz")
def export_wacz_command(
    snapshots: Annotated[list[str], typer.Argument(help="Snapshot ids or unique prefixes.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The .wacz file to write.")],
    title: Annotated[str | None, typer.Option("--title", help="Title in datapackage.json.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Package the WARCs of snapshots as a WACZ (replayable in pywb and ReplayWeb.page)."""
    result = export_wacz(state.settings, snapshots, output, title=title)
    for message in result.warnings:
        warn(message)
    if as_json:
        print_json(
            {"file": str(result.path), "sha256": result.sha256, "snapshots": result.snapshots}
        )
    else:
        out.print(f"wrote {safe(result.path)} ({result.size:,} bytes, sha256 {result.sha256})")
