"""`evidence exhibit`: court-exhibit bundles (PDFs, originals, proofs) and their offline check."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from jobs.cli.common import ConsoleProgress, JsonOption, out, print_json, safe, state, warn
from jobs.exhibit import build_exhibits, build_timeline, parse_moment, verify_bundle

exhibit_app = typer.Typer(
    help="Court exhibits: bundles a judge can read and an expert can check offline.",
    no_args_is_help=True,
)

OutputOption = Annotated[
    Path, typer.Option("--output", "-o", help="The bundle: a new folder, or a FILE.zip.")
]
CaseOption = Annotated[str, typer.Option("--case", help="The case name, printed on every page.")]
LangOption = Annotated[str, typer.Option("--lang", help="Language of the PDFs: de or en.")]


@exhibit_app.command("build")
def build_command(
    items: Annotated[
        list[str],
        typer.Argument(
            help="One exhibit each: a snapshot id or unique prefix, sor:UUID, "
            "ad:PLATFORM:ID or post:PLATFORM:ID."
        ),
    ],
    output: OutputOption,
    case: CaseOption,
    prefix: Annotated[str, typer.Option("--prefix", help="Exhibit label prefix.")] = "K",
    start: Annotated[int, typer.Option("--start", help="Number of the first exhibit.")] = 1,
    lang: LangOption = "de",
    as_json: JsonOption = False,
) -> None:
    """Build an exhibit bundle: one PDF per exhibit, an index PDF, the originals, VERIFY.md."""
    with ConsoleProgress() as progress:
        result = build_exhibits(
            state.settings,
            items,
            output,
            case=case,
            prefix=prefix,
            start=start,
            lang=lang,
            progress=progress,
        )
    _print_bundle(result, as_json, what=f"{len(result.exhibits)} exhibit(s)")


@exhibit_app.command("timeline")
def timeline_command(
    item: Annotated[
        str,
        typer.Argument(
            help="The page: its URL as it was captured (or snapshot:<id> for the URL a "
            "snapshot captured); or a record: ad:PLATFORM:ID, post:PLATFORM:ID."
        ),
    ],
    output: OutputOption,
    case: CaseOption,
    prefix: Annotated[str, typer.Option("--prefix", help="Exhibit label prefix.")] = "K",
    start: Annotated[int, typer.Option("--start", help="Number of the exhibit.")] = 1,
    lang: LangOption = "de",
    since: Annotated[
        str | None,
        typer.Option("--from", help="Only captures from then on (2026-03-01 or RFC 3339)."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--to", help="Only captures until then (a date counts whole)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """One exhibit of a page across its captures: present, changed, gone, with the changes."""
    with ConsoleProgress() as progress:
        result = build_timeline(
            state.settings,
            item,
            output,
            case=case,
            prefix=prefix,
            start=start,
            lang=lang,
            since=parse_moment(since) if since else None,
            until=parse_moment(until, end_of_day=True) if until else None,
            progress=progress,
        )
    [exhibit] = result.exhibits
    _print_bundle(result, as_json, what=f"timeline of {len(exhibit['snapshots'])} capture(s)")


def _print_bundle(result: Any, as_json: bool, *, what: str) -> None:
    """A built bundle: its JSON, or a line per exhibit and a summary (both commands)."""
    for message in result.warnings:
        warn(message)
    if as_json:
        print_json(
            {
                "path": str(result.path),
                "digest": result.digest,
                "file_sha256": result.file_sha256,
                "size": result.size,
                "files": result.files,
                "exhibits": result.exhibits,
                "timestamp": result.timestamp,
                "timestamp_note": result.timestamp_note or None,
            }
        )
        return
    for exhibit in result.exhibits:
        out.print(
            f"{safe(exhibit['label'])}  {safe(exhibit['title'])}  "
            f"(pdf sha256 {exhibit['pdf_sha256']})",
            soft_wrap=True,
        )
    stamped = (
        f"timestamped {result.timestamp['gen_time']} by {safe(result.timestamp['tsa'])}"
        if result.timestamp
        else "NOT timestamped"
    )
    out.print(
        f"wrote {safe(result.path)}: {what}, {result.files} files, {result.size:,} bytes; "
        f"bundle digest (SHA256SUMS) {result.digest}, {stamped}",
        soft_wrap=True,
    )


@exhibit_app.command("verify")
def verify_command(
    path: Annotated[Path, typer.Argument(help="The bundle: its folder or its .zip.")],
    as_json: JsonOption = False,
) -> None:
    """Check a bundle offline (no database, no store); exit 1 names each file that fails."""
    with ConsoleProgress() as progress:
        check = verify_bundle(path, progress=progress)
    if as_json:
        print_json(check.to_dict())
    else:
        for problem in check.problems:
            out.print(f"[red]FAIL[/] {safe(problem.file)}: {safe(problem.reason)}", soft_wrap=True)
        for item in check.unchecked:
            out.print(f"[yellow]UNCHECKED[/] {safe(item)}", soft_wrap=True)
        verdict = "OK" if check.ok else f"{len(check.problems)} PROBLEM(S)"
        stamped = (
            f"bundle timestamped {check.bundle_timestamp}"
            if check.bundle_timestamp
            else "bundle not timestamped"
        )
        out.print(
            f"{verdict}: {check.files} files ({check.bytes:,} bytes), {check.exhibits} "
            f"exhibit(s), {check.snapshots} snapshot(s), {check.signatures} signature(s), "
            f"{check.timestamps} timestamp(s)"
            + (f" and {check.renewals} renewal(s)" if check.renewals else "")
            + f" verified; {stamped}",
            soft_wrap=True,
        )
    if not check.ok:
        sys.exit(1)
