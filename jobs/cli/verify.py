"""`evidence verify`: recompute everything from the bytes; name what could not be checked."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from evidence_store.errors import EvidenceError
from jobs.cli.common import ConsoleProgress, JsonOption, err, out, print_json, safe, state, warn
from jobs.verify import verify as verify_evidence


def verify(
    snapshots: Annotated[
        list[str] | None, typer.Argument(help="Snapshot ids or unique prefixes.")
    ] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Verify every snapshot and every chain.")
    ] = False,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, help="Hashing threads.")
    ] = None,
    report_path: Annotated[
        Path | None,
        typer.Option("--report", help="Also write the report to this new file (.json: JSON)."),
    ] = None,
    report_format: Annotated[
        str | None, typer.Option("--report-format", help="text or json (default: by suffix).")
    ] = None,
    require: Annotated[
        list[str] | None,
        typer.Option(
            "--require",
            help="Make an unchecked or missing item a failure: timestamps, revocation.",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Re-hash artifacts from the store and check manifests, signatures, chains, timestamps
    and (with --all) the custody log, the index against it, and the store's manifests."""
    if bool(snapshots) == all_:
        raise EvidenceError("give snapshot ids or --all (not both, not neither)")
    with ConsoleProgress() as progress:
        result = verify_evidence(
            state.settings,
            None if all_ else snapshots,
            workers=workers,
            report_path=report_path,
            report_format=report_format,
            require=frozenset(require or ()),
            progress=progress,
        )
    report = result.report
    for message in result.warnings:
        warn(message)
    if result.report_file is not None:
        err.print(f"report written to {safe(report_path)} (sha256 {result.report_sha256})")
    if as_json:
        print_json(report.to_dict())
    else:
        for problem in report.problems:
            err.print(f"[red]PROBLEM[/] {safe(problem)}")
        for item in report.unchecked:
            err.print(f"[yellow]UNCHECKED[/] {safe(item)}")
        if report.archived_anchors_only:
            err.print(
                "[yellow]note:[/] timestamps were checked against trust anchors archived with "
                "them, not supplied ones: set \\[timestamps] trust_anchors for full strength"
            )
        color = "green" if report.complete else "yellow" if report.ok else "red"
        stamped = f", {report.timestamps} timestamp(s)" if report.timestamps else ""
        if report.custody is not None:
            stamped += f", custody log of {report.custody['entries']} entries"
        out.print(
            f"verified {report.snapshots} snapshot(s), {report.objects} object(s), "
            f"{report.bytes_hashed:,} bytes{stamped}: [{color}]{safe(report.verdict)}[/]"
        )
    if not report.ok:
        raise typer.Exit(1)
