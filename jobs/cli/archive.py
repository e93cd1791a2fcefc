"""The commands that archive: `capture` (single pages), `crawl` (any registered source) and
`ingest` (files obtained elsewhere). Each is one run of a source through ``jobs.crawl``.

Exit status: 0 every item archived, 3 some were not (the run is partial), 2 none was (the
run failed) or the command could not start, 130 a signal stopped it (interrupted).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from jobs.capture import capture as capture_pages
from jobs.cli.common import (
    ConsoleProgress,
    JsonOption,
    err,
    out,
    print_json,
    safe,
    short,
    state,
    warn,
)
from jobs.config import Settings
from jobs.crawl import CrawlResult
from jobs.crawl import crawl as crawl_source
from jobs.ingest import ingest as ingest_files

EXIT_PARTIAL = 3
EXIT_NOTHING_ARCHIVED = 2
EXIT_INTERRUPTED = 130

CollectionOption = Annotated[
    str | None,
    typer.Option("--collection", help="Collection to add to (default: the source's own)."),
]
NoteOption = Annotated[str | None, typer.Option("--note", help="Why, for the record.")]
SourceOption = Annotated[
    str | None,
    typer.Option(
        "--source",
        help="Name to record as the source; it also picks the timestamp mode "
        "(\\[timestamps] sources in evidence.toml).",
    ),
]
AllowPrivateOption = Annotated[
    bool,
    typer.Option(
        "--allow-private",
        help="Allow loopback, link-local and private addresses (fixture sites, intranets).",
    ),
]


def _settings(allow_private: bool = False) -> Settings:
    settings = state.settings
    if allow_private and not settings.allow_private:
        settings = settings.model_copy(update={"allow_private": True})
    return settings


def _finish(result: CrawlResult, what: str, as_json: bool) -> None:
    """Warnings, the summary line and the exit status every archiving command shares."""
    console = err if as_json else out  # --json keeps stdout for the JSON alone
    for run in result.interrupted:
        warn(
            f"run {run.id} ({run.kind}, started {run.started_at:%Y-%m-%d %H:%M}Z) was left "
            "running by a process that is gone: marked interrupted"
        )
    for sid, reason in result.after.untimestamped[:10]:
        warn(f"untimestamped {sid[:16]}: {reason}")
    for message in result.after.warnings:
        warn(message)
    if result.after.earlier_stamped or result.after.earlier_failed:
        console.print(
            f"timestamped {result.after.earlier_stamped} snapshot(s) of earlier runs"
            + (
                f", {result.after.earlier_failed} still without"
                if result.after.earlier_failed
                else ""
            )
        )
    if result.parsed is not None:
        console.print(
            f"records: {result.parsed.records:,} from this run's snapshots"
            + (
                f", {len(result.parsed.snapshots)} derived snapshot(s)"
                if result.parsed.snapshots
                else ""
            )
        )
    counts = ", ".join(f"{n} {k}" for k, n in result.counts().items()) or "nothing"
    console.print(
        f"{len(result.items)} {what}: {safe(counts)}; run {result.run_id} {result.status}"
        f" (collection {safe(result.collection)})"
    )
    if result.status == "interrupted":  # a signal stopped the crawl: as Ctrl-C exits
        raise typer.Exit(EXIT_INTERRUPTED)
    if result.status == "failed":
        raise typer.Exit(EXIT_NOTHING_ARCHIVED)
    if result.status == "partial":
        raise typer.Exit(EXIT_PARTIAL)


def _outcome_table(result: CrawlResult, title: str) -> Table:
    table = Table(title=safe(title), box=box.SIMPLE_HEAD)
    # Ids and outcome names are read and copied whole; the URL and the errors fold.
    table.add_column("snapshot", no_wrap=True)
    table.add_column("outcome", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("item", overflow="fold")
    table.add_column("artifacts (sha256) / error", overflow="fold")
    for o in result.outcomes:
        digests = "\n".join(f"{a.role} {a.sha256[:16]}" for a in o.artifacts)
        table.add_row(
            short(o.snapshot) if o.snapshot else "-",
            o.outcome if o.mode != "robots" else "robots.txt",
            str(o.status or "-"),
            safe(o.final_url or o.url),
            digests or safe(o.error or ""),
        )
    return table


def capture(
    urls: Annotated[
        list[str] | None, typer.Argument(help="URLs to capture; each becomes one snapshot.")
    ] = None,
    urls_file: Annotated[
        Path | None, typer.Option("--urls-file", help="A file with one URL per line.")
    ] = None,
    http: Annotated[bool, typer.Option("--http", help="Plain HTTP capture (the default).")] = False,
    browser: Annotated[
        bool, typer.Option("--browser", help="Render with Chromium: screenshot, PDF, DOM too.")
    ] = False,
    collection: CollectionOption = None,
    note: NoteOption = None,
    ignore_robots: Annotated[
        bool,
        typer.Option("--ignore-robots", help="Do not obey robots.txt (it is archived anyway)."),
    ] = False,
    timeout: Annotated[
        float | None, typer.Option("--timeout", min=1, help="Seconds allowed per request [30].")
    ] = None,
    max_bytes: Annotated[
        int | None,
        typer.Option("--max-bytes", min=1024, help="Largest response accepted, in bytes [50 MiB]."),
    ] = None,
    allow_private: AllowPrivateOption = False,
    source: SourceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Capture public pages as evidence: every exchange into a WARC, archived as snapshots."""
    from evidence_store.errors import EvidenceError

    if http and browser:
        raise EvidenceError("choose --http or --browser, not both")
    with ConsoleProgress() as progress:
        result = capture_pages(
            _settings(allow_private),
            urls or [],
            urls_file=urls_file,
            browser=browser,
            collection=collection or "default",
            note=note,
            source=source,
            obey_robots=not ignore_robots,
            timeout=timeout,
            max_bytes=max_bytes,
            progress=progress,
        )
    if as_json:
        print_json(result.to_dict()["outcomes"])
    else:
        out.print(_outcome_table(result, f"capture into collection {result.collection!r}"))
    _finish(result, "URL(s)", as_json)


def crawl(
    source: Annotated[
        str,
        typer.Argument(
            help="A registered source or an entry of \\[sources] (`evidence sources list`)."
        ),
    ],
    arguments: Annotated[
        list[str] | None,
        typer.Option(
            "--arg",
            "-a",
            help="A setting for this run, key=value (repeat for lists: -a url=A -a url=B).",
        ),
    ] = None,
    note: NoteOption = None,
    allow_private: AllowPrivateOption = False,
    trigger: Annotated[
        str, typer.Option("--trigger", hidden=True, help="Who started it: manual or schedule.")
    ] = "manual",
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            max=256,
            help="Processes capturing the run's items side by side (one run, one store).",
        ),
    ] = 1,
    as_json: JsonOption = False,
) -> None:
    """Run a registered source once with its settings (\\[sources.NAME]) and -a arguments."""
    with ConsoleProgress() as progress:
        if workers > 1:
            from jobs.workers import crawl_parallel

            result = crawl_parallel(
                _settings(allow_private),
                source,
                arguments or [],
                workers=workers,
                note=note,
                trigger=trigger,
                config=state.config_path,
                progress=progress,
            )
        else:
            result = crawl_source(
                _settings(allow_private),
                source,
                arguments or [],
                note=note,
                trigger=trigger,
                progress=progress,
            )
    finish_run_output(result, f"{source} into collection {result.collection!r}", as_json)


def finish_run_output(result: CrawlResult, title: str, as_json: bool) -> None:
    """A run's whole output: its JSON or its table, then the summary and the exit status."""
    if as_json:
        print_json(result.to_dict())
    else:
        out.print(_outcome_table(result, title))
    _finish(result, "item(s)", as_json)


def ingest(
    files: Annotated[
        list[Path], typer.Argument(help="Files to preserve; each becomes one snapshot.")
    ],
    collection: Annotated[
        str, typer.Option("--collection", help="Collection to add to.")
    ] = "default",
    source_url: Annotated[
        str | None,
        typer.Option("--source-url", help="Where the files came from (secrets are redacted)."),
    ] = None,
    note: NoteOption = None,
    media_type: Annotated[
        str | None,
        typer.Option("--media-type", help="Media type, type/subtype (default: from the name)."),
    ] = None,
    source: SourceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Preserve files obtained elsewhere (a report, a user's data export) as snapshots."""
    with ConsoleProgress() as progress:
        result = ingest_files(
            state.settings,
            files,
            collection=collection,
            source=source,
            source_url=source_url,
            note=note,
            media_type=media_type,
            progress=progress,
        )
    if as_json:
        print_json(
            [
                {
                    "file": o.url,
                    "outcome": o.outcome,
                    "error": o.error,
                    "snapshot": o.snapshot,
                    "collection": result.collection,
                    "sequence": o.sequence,
                    "timestamp": result.after.timestamps.get(o.snapshot or ""),
                    "artifacts": [a.model_dump(mode="json") for a in o.artifacts],
                }
                for o in result.outcomes
            ]
        )
    else:
        table = Table(
            title=f"{len(result.snapshots)} snapshot(s) archived in collection "
            f"{safe(repr(result.collection))}"
        )
        for column in ("snapshot", "seq", "file", "bytes", "sha256 / error"):
            table.add_column(column, overflow="fold")
        for o in result.outcomes:
            art = o.artifacts[0] if o.artifacts else None
            table.add_row(
                short(o.snapshot) if o.snapshot else o.outcome,
                str(o.sequence or "-"),
                safe(Path(o.url).name),
                f"{art.size:,}" if art else "-",
                art.sha256 if art else safe(o.error or ""),
            )
        out.print(table)
    _finish(result, "file(s)", as_json)
