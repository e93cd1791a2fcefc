"""`evidence snapshots`: list archived snapshots, show one (the viewing is logged)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.table import Table

from jobs.cli.common import JsonOption, SnapshotArg, out, print_json, safe, short, state, warn
from jobs.snapshots import list_snapshots, view_snapshot
from schemas import format_rfc3339

snapshots_app = typer.Typer(help="Archived snapshots.", no_args_is_help=True)


@snapshots_app.command("list")
def snapshots_list(
    collection: Annotated[
        str | None, typer.Option("--collection", help="Only this collection.")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, help="At most this many, newest first.")
    ] = 50,
    as_json: JsonOption = False,
) -> None:
    """List snapshots, newest first."""
    infos = list_snapshots(state.settings, collection=collection, limit=limit)
    if as_json:
        print_json([i.model_dump(mode="json") for i in infos])
        return
    table = Table(title=f"{len(infos)} snapshot(s)", box=box.SIMPLE_HEAD, pad_edge=False)
    # Ids and times never wrap (they are copied into commands); the free text takes the rest.
    table.add_column("snapshot", no_wrap=True, min_width=16)
    table.add_column("collection", no_wrap=True, overflow="ellipsis")
    table.add_column("#", no_wrap=True, justify="right", min_width=3)
    table.add_column("captured (UTC)", no_wrap=True, min_width=20)
    table.add_column("bytes", no_wrap=True, justify="right", min_width=8)
    table.add_column("source / note", overflow="ellipsis", no_wrap=True, max_width=24)
    for i in infos:
        table.add_row(
            short(i.id),
            safe(i.collection),
            str(i.sequence),
            i.captured_at.strftime("%Y-%m-%d %H:%M:%SZ"),
            f"{sum(a.size for a in i.artifacts):,}",
            safe(i.source_url or i.note or ""),
        )
    out.print(table)


@snapshots_app.command("show")
def snapshots_show(snapshot: SnapshotArg, as_json: JsonOption = False) -> None:
    """Show one snapshot: its manifest data and artifacts (recorded in the custody log)."""
    view = view_snapshot(state.settings, snapshot)
    for message in view.warnings:
        warn(message)
    info, manifest = view.info, view.manifest
    if as_json:
        print_json({"snapshot": info.model_dump(mode="json"), "manifest": manifest})
        return
    out.print(f"[bold]snapshot[/] {info.id}")
    out.print(
        f"collection {safe(info.collection)} #{info.sequence}, previous {info.previous or '-'}"
    )
    captured, archived = format_rfc3339(info.captured_at), format_rfc3339(info.archived_at)
    out.print(f"kind {safe(info.kind)}; captured {captured}; archived {archived}")
    if info.source_url:
        out.print(f"source {safe(info.source_url)}")
    if info.note:
        out.print(f"note {safe(info.note)}")
    out.print(f"signed by {info.key_fingerprint}")
    if info.deleted_at is not None:
        out.print(
            f"[yellow]artifacts deleted[/] under the retention policy on "
            f"{format_rfc3339(info.deleted_at)}: their digests below remain, their bytes do not"
        )
    table = Table()
    for column in ("role", "name", "media type", "bytes", "sha256"):
        table.add_column(column, overflow="fold")
    for a in info.artifacts:
        table.add_row(safe(a.role), safe(a.name), safe(a.media_type), f"{a.size:,}", a.sha256)
    out.print(table)
    if manifest.get("capture"):
        out.print("capture metadata:")
        # print_json escapes what a terminal would act on; rich would print it raw.
        print_json(manifest["capture"])
