"""`evidence reports`: the platforms' transparency reports found by `transparency-reports`:
list them, show one with its versions, diff two versions (text and table cells)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.table import Table

from jobs.cli.common import JsonOption, out, print_json, safe, short, state, warn
from jobs.reports import diff_report, list_reports, show_report
from records.reports.queries import ReportSummary
from schemas import format_rfc3339

reports_app = typer.Typer(
    help="DSA transparency reports (source transparency-reports): list, show, diff.",
    no_args_is_help=True,
)

ReportArg = Annotated[
    str, typer.Argument(help="A report's id, its URL, or a part of its URL only it has.")
]


def _when(value: object) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if hasattr(value, "strftime") else "-"


def _period(report: ReportSummary) -> str:
    return report.period or "-"


@reports_app.command("list")
def reports_list(
    platform: Annotated[
        str | None, typer.Option("--platform", help="Only this platform (tiktok, x, …).")
    ] = None,
    article: Annotated[
        str | None, typer.Option("--article", help="Only reports citing this article (15, 24, 42).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many.")] = 100,
    as_json: JsonOption = False,
) -> None:
    """Reports found so far, by platform and reporting period."""
    reports = list_reports(state.settings, platform=platform, article=article, limit=limit)
    if as_json:
        print_json([r.to_dict() for r in reports])
        return
    table = Table(title=f"{len(reports)} report(s)", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("id", no_wrap=True, justify="right")
    table.add_column("platform", no_wrap=True)
    table.add_column("period", no_wrap=True)
    table.add_column("articles", no_wrap=True)
    table.add_column("lang", no_wrap=True)
    table.add_column("versions", no_wrap=True, justify="right")
    table.add_column("last seen (UTC)", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("title / URL", overflow="fold")
    for r in reports:
        table.add_row(
            str(r.id),
            safe(r.platform),
            _period(r),
            safe(r.articles or "-"),
            safe(r.language or "-"),
            str(r.versions),
            _when(r.last_seen),
            safe(r.latest_status or "-"),
            f"{safe(r.title or '-')}\n[dim]{safe(r.url)}[/]",
        )
    out.print(table)


@reports_app.command("show")
def reports_show(report: ReportArg, as_json: JsonOption = False) -> None:
    """One report: what it is, every version (one per distinct content) and its captures."""
    view = show_report(state.settings, report)
    for message in view.warnings:
        warn(message)
    detail = view.detail
    if as_json:
        print_json(detail.to_dict())
        return
    r = detail.report
    out.print(f"[bold]report {r.id}[/] {safe(r.title or '-')}")
    out.print(f"url {safe(r.url)}")
    out.print(
        f"platform {safe(r.platform)}; period {_period(r)}; articles {safe(r.articles or '-')}; "
        f"language {safe(r.language or '-')}"
    )
    out.print(
        f"linked from {safe(detail.index_page or '-')} as {safe(detail.link_text or '-')}; "
        f"first seen {format_rfc3339(r.first_seen)}, last seen {format_rfc3339(r.last_seen)}"
    )
    table = Table(title=f"{len(detail.versions)} version(s)", box=box.SIMPLE_HEAD)
    for column in ("#", "first seen", "last seen", "seen", "sha256", "bytes", "pages"):
        table.add_column(column, no_wrap=True)
    table.add_column("figures", no_wrap=True, justify="right")
    table.add_column("status", no_wrap=True)
    table.add_column("snapshot / error", overflow="fold")
    for v in detail.versions:
        table.add_row(
            str(v.number),
            _when(v.first_seen),
            _when(v.last_seen),
            str(v.times_seen),
            short(v.sha256),
            f"{v.size:,}",
            str(v.page_count if v.page_count is not None else "-"),
            str(v.figures),
            v.status,
            short(v.snapshot_id) + (f"\n{safe(v.error)}" if v.error else ""),
        )
    out.print(table)
    latest = detail.versions[-1] if detail.versions else None
    if latest is not None and len(latest.documents) > 1:
        documents = Table(title=f"documents of version {latest.number}", box=box.SIMPLE_HEAD)
        for column in ("document", "kind", "bytes", "pages", "text", "figures", "status"):
            documents.add_column(column, overflow="fold")
        for d in latest.documents:
            documents.add_row(
                safe(d.path),
                d.kind + (f" ({d.template})" if d.template else ""),
                f"{d.size:,}",
                str(d.page_count if d.page_count is not None else "-"),
                str(d.text_length if d.text_length is not None else "-"),
                str(d.figures),
                d.status + (f": {safe(d.error)}" if d.error else ""),
            )
        out.print(documents)


@reports_app.command("diff")
def reports_diff(
    report: ReportArg,
    old: Annotated[
        int | None,
        typer.Option("--from", help="Version to compare from (default: the one before --to)."),
    ] = None,
    new: Annotated[
        int | None, typer.Option("--to", help="Version to compare to (default: the latest).")
    ] = None,
    context: Annotated[
        int, typer.Option("--context", min=0, help="Lines of context around text changes.")
    ] = 3,
    max_lines: Annotated[
        int, typer.Option("--max-lines", min=1, help="Diff lines shown per document.")
    ] = 200,
    max_cells: Annotated[
        int, typer.Option("--max-cells", min=1, help="Changed table cells listed.")
    ] = 500,
    as_json: JsonOption = False,
) -> None:
    """What changed between two versions of a report: text (unified diff) and table cells."""
    view = diff_report(
        state.settings,
        report,
        old=old,
        new=new,
        context=context,
        max_lines=max_lines,
        max_cells=max_cells,
    )
    for message in view.warnings:
        warn(message)
    diff = view.diff
    if as_json:
        print_json(diff.to_dict())
        return
    r = diff.report
    out.print(f"[bold]report {r.id}[/] {safe(r.title or '-')}")
    out.print(f"url {safe(r.url)}")
    for label, v in (("from", diff.old), ("to", diff.new)):
        out.print(
            f"{label} version {v.number}: sha256 {short(v.sha256)}, snapshot {short(v.snapshot_id)}"
            f", first seen {format_rfc3339(v.first_seen)}"
        )
    if diff.unchanged:
        out.print("no difference in the extracted text or the table cells")
        return
    for change in diff.text:
        out.print(
            f"\n[bold]text of {safe(change.path)}[/] ({change.change}): "
            f"+{change.added_lines} -{change.removed_lines} line(s)"
        )
        for line in change.diff:
            style = "green" if line.startswith("+") else "red" if line.startswith("-") else ""
            style = "cyan" if line.startswith("@@") else style
            out.print(f"[{style}]{safe(line)}[/]" if style else safe(line), soft_wrap=True)
        if change.omitted_lines:
            out.print(f"[dim]… {change.omitted_lines} more diff line(s) (--max-lines)[/]")
    total = diff.cells_changed + diff.cells_added + diff.cells_removed
    if total:
        table = Table(
            title=f"\ntable cells: {diff.cells_changed} changed, {diff.cells_added} added, "
            f"{diff.cells_removed} removed",
            box=box.SIMPLE_HEAD,
        )
        for column in ("document / sheet", "cell", "row", "column", "change", "old", "new"):
            table.add_column(column, overflow="fold")
        for c in diff.cells:
            where = (
                c.sheet if c.sheet == c.document.rsplit("/", 1)[-1] else f"{c.document}: {c.sheet}"
            )
            table.add_row(
                safe(where),
                c.cell,
                safe(c.row_label or "-"),
                safe(c.column_label or "-"),
                c.change,
                safe(c.old if c.old is not None else "-"),
                safe(c.new if c.new is not None else "-"),
            )
        out.print(table)
        if diff.cells_omitted:
            out.print(f"[dim]… {diff.cells_omitted} more changed cell(s) (--max-cells)[/]")
