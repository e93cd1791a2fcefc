"""`evidence sor`: statements of reasons from the DSA Transparency Database's dumps."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.table import Table

from jobs.cli.common import ConsoleProgress, JsonOption, out, print_json, safe, state, warn

if TYPE_CHECKING:
    from jobs.sor import Filters

# jobs.sor is imported by each command, not here: pyarrow and DuckDB take a while to load, and
# every other `evidence` command would pay for it at start-up.

sor_app = typer.Typer(
    help="Statements of reasons (DSA Art. 17, 24(5)) from the Transparency Database's dumps; "
    "fetch a day with: evidence crawl dsa-sor -a date=YYYY-MM-DD",
    no_args_is_help=True,
)

PlatformOption = Annotated[
    str | None, typer.Option("--platform", help="Only this platform (a name such as TikTok).")
]
FromOption = Annotated[
    str | None, typer.Option("--from", help="First day of the dumps, YYYY-MM-DD.")
]
ToOption = Annotated[str | None, typer.Option("--to", help="Last day of the dumps, YYYY-MM-DD.")]
CategoryOption = Annotated[
    str | None,
    typer.Option("--category", help="Only this category (PROTECTION_OF_MINORS, or the full name)."),
]


def _day(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a day YYYY-MM-DD", param_hint=option) from None


def _filters(
    platform: str | None, day_from: str | None, day_to: str | None, category: str | None = None
) -> Filters:
    from jobs.sor import Filters

    filters = Filters(platform, _day(day_from, "--from"), _day(day_to, "--to"), category)
    if filters.day_from and filters.day_to and filters.day_from > filters.day_to:
        raise typer.BadParameter("--from is after --to", param_hint="--from")
    return filters


@sor_app.command("stats")
def stats(
    platform: PlatformOption = None,
    day_from: FromOption = None,
    day_to: ToOption = None,
    category: CategoryOption = None,
    top: Annotated[int, typer.Option("--top", min=1, help="Rows per table.")] = 10,
    as_json: JsonOption = False,
) -> None:
    """Counts of the ingested statements: by platform, category, decision ground, visibility,
    account and monetary decision, automated detection and decision, territorial scope DE."""
    from jobs.sor import sor_stats

    result = sor_stats(state.settings, _filters(platform, day_from, day_to, category))
    if as_json:
        print_json(result)
        return
    out.print(
        f"[bold]{result['statements']:,}[/] statement(s) of reasons"
        f" ({result['rows']:,} rows in {result['files']} file(s)), created "
        f"{result['created_from'] or '-'} to {result['created_to'] or '-'}"
    )
    for dimension, counts in result["by"].items():
        table = Table(title=dimension, box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left")
        table.add_column("value", overflow="fold")
        table.add_column("statements", justify="right")
        table.add_column("share", justify="right")
        total = sum(counts.values()) or 1
        for value, count in list(counts.items())[:top]:
            table.add_row(safe(value), f"{count:,}", f"{100 * count / total:.1f}%")
        if len(counts) > top:
            table.add_row(f"… {len(counts) - top} more", "", "")
        out.print(table)


@sor_app.command("show")
def show(
    uuid: Annotated[str, typer.Argument(help="The statement's uuid.")],
    as_json: JsonOption = False,
) -> None:
    """One statement with every dump, part, CSV file and row it was found in."""
    from jobs.sor import sor_show

    statement = sor_show(state.settings, uuid)
    for warning in statement.warnings:
        warn(warning)
    if as_json:
        print_json(statement.to_dict())
        return
    out.print(f"[bold]statement of reasons[/] {statement.uuid}")
    for key, value in statement.fields.items():
        if value not in (None, [], ""):
            out.print(f"  {key}: {safe(value)}", soft_wrap=True)
    out.print("[bold]found in[/]")
    for place in statement.found_in:
        out.print(
            f"  dump {safe(place.get('dump_file', '?'))} (snapshot {place['dump_snapshot']}), "
            f"part {safe(place['part'])}, file {safe(place['csv_file'])}, row {place['row']}",
            soft_wrap=True,
        )


@sor_app.command("export")
def export(
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write (never replaced).")],
    fmt: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet",
    platform: PlatformOption = None,
    day_from: FromOption = None,
    day_to: ToOption = None,
    category: CategoryOption = None,
    as_json: JsonOption = False,
) -> None:
    """The selected statements, with their provenance columns, as one Parquet or CSV file."""
    from jobs.sor import sor_export

    result = sor_export(state.settings, _filters(platform, day_from, day_to, category), output, fmt)
    for warning in result.warnings:
        warn(warning)
    if as_json:
        print_json(
            {
                "path": str(result.path),
                "format": result.format,
                "rows": result.rows,
                "sha256": result.sha256,
                "dumps": result.dumps,
            }
        )
        return
    out.print(
        f"exported {result.rows:,} statement row(s) from {len(result.dumps)} dump(s) to "
        f"{safe(result.path)} ({result.format}, sha256 {result.sha256})"
    )


@sor_app.command("dumps")
def dumps(
    day_from: FromOption = None,
    day_to: ToOption = None,
    as_json: JsonOption = False,
) -> None:
    """The dumps archived and what their ingestion did (rows, parts, broken parts)."""
    from jobs.sor import sor_dumps

    rows = sor_dumps(state.settings, day_from=_day(day_from, "--from"), day_to=_day(day_to, "--to"))
    if as_json:
        print_json([r.to_dict() for r in rows])
        return
    table = Table(title=f"{len(rows)} dump(s)", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("day", "platform", "variant", "status", "rows", "parts", "schema"):
        table.add_column(column, min_width=len(column), overflow="fold")
    table.add_column("snapshot", no_wrap=True, max_width=12, overflow="ellipsis")
    for r in rows:
        parts = f"{r.parts - r.broken_parts}/{r.parts}" if r.parts else "-"
        table.add_row(
            r.day,
            safe(r.platform),
            r.variant,
            r.status,
            f"{r.rows:,}",
            parts,
            str(r.schema_version or "-"),
            r.snapshot[:12],
        )
    out.print(table)
    for r in rows:
        for broken in r.broken:
            warn(f"{r.filename}: part {broken['part']} is broken: {broken['error']}")


@sor_app.command("ingest")
def ingest(
    snapshots: Annotated[
        list[str] | None,
        typer.Argument(help="Dump snapshots (default: every dump whose ingestion did not finish)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Ingest archived dumps into Parquet again where it did not finish (a killed run)."""
    with ConsoleProgress() as progress:
        from jobs.sor import sor_ingest

    result = sor_ingest(state.settings, snapshots or None, progress=progress)
    if as_json:
        print_json(
            {
                "run": result.run_id,
                "dumps": [d.__dict__ for d in result.dumps],
                "after_run": result.after.to_dict(),
            }
        )
    else:
        for d in result.dumps:
            out.print(f"{safe(d.filename)}: {d.status}, {d.rows:,} rows, {d.parts} part(s)")
        if not result.dumps:
            out.print("nothing to ingest: every archived dump is ingested")
    broken = [(d.filename, p, e) for d in result.dumps for p, e in d.broken]
    for filename, part, error in broken:
        warn(f"{filename}: part {part} is broken: {error}")
    if broken:
        sys.exit(3)
