"""The `evidence` command: archive, list, show, verify and sweep evidence.

Exit codes: 0 success, 1 verification found problems, 2 the command could not do its work
(bad input, unreachable store or database, invalid configuration).
"""

from __future__ import annotations

import json
import mimetypes
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from evidence_store.archive import archive
from evidence_store.errors import EvidenceError
from evidence_store.queries import list_snapshots, resolve_snapshot, snapshot_info
from evidence_store.sweep import sweep as sweep_store
from evidence_store.verify import verify as verify_snapshots
from jobs.cli.common import (
    JsonOption,
    SnapshotArg,
    bytes_progress,
    count_progress,
    err,
    out,
    print_json,
    record_custody,
    short,
    state,
)
from jobs.cli.custody import custody_app
from jobs.cli.hold import hold_app
from jobs.cli.keys import keys_app
from jobs.cli.retention import retention_app
from jobs.config import Settings
from jobs.context import open_evidence, open_index
from schemas import Capture, CaptureArtifact, format_rfc3339

app = typer.Typer(
    help="Evidence collection for DSA, GDPR and AI Act violations: archive, verify, export.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="The SQL index: schema migrations.", no_args_is_help=True)
snapshots_app = typer.Typer(help="Archived snapshots.", no_args_is_help=True)
store_app = typer.Typer(help="The object store.", no_args_is_help=True)
config_app = typer.Typer(help="Configuration.", no_args_is_help=True)
export_app = typer.Typer(help="Exports of archived snapshots.", no_args_is_help=True)
timestamp_app = typer.Typer(help="RFC 3161 timestamps of snapshots.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(snapshots_app, name="snapshots")
app.add_typer(store_app, name="store")
app.add_typer(config_app, name="config")
app.add_typer(export_app, name="export")
app.add_typer(timestamp_app, name="timestamp")
app.add_typer(custody_app, name="custody")
app.add_typer(keys_app, name="keys")
app.add_typer(hold_app, name="hold")
app.add_typer(retention_app, name="retention")


@app.callback()
def _root(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="TOML configuration file (default ./evidence.toml)."),
    ] = None,
) -> None:
    state.config_path = config
    state._settings = None


def _timestamp_new(
    evidence: Any, ids: list[str], *, source: str | None, run_id: str | None
) -> dict[str, str | None]:
    """Timestamp a run's new snapshots when TSAs are configured; {id: genTime or None}.

    Per snapshot or as one Merkle tree, as the source's mode says; then the custody log's head
    is anchored. A snapshot no TSA would stamp stays archived and is reported, never dropped.
    """
    config = state.settings.timestamp_settings()
    if not config.enabled or not ids:
        return {}
    from evidence_store.timestamps.service import (
        anchor_custody_head,
        retry,
        timestamp_new,
        untimestamped,
    )
    from evidence_store.timestamps.verify import TimestampError

    mode = config.mode_for(source)
    label = "one Merkle root over " if mode == "merkle" else ""
    with err.status(f"timestamping {label}{len(ids)} snapshot(s)"):
        run = timestamp_new(evidence, ids, config, source=source, run_id=run_id)
    result: dict[str, str | None] = {sid: when for sid, when, _ in run.timestamped}
    for sid, reason in run.failed[:10]:
        err.print(f"[yellow]untimestamped[/] {sid[:16]}: {escape(reason)}")
    for sid, _ in run.failed:
        result[sid] = None
    if run.failed:
        err.print(
            f"[yellow]{len(run.failed)} snapshot(s) archived without a timestamp;[/] "
            "`evidence timestamp retry` asks the TSAs again"
        )
    elif pending := untimestamped(evidence):
        # The TSAs answer again: earlier runs' untimestamped snapshots are stamped now, so
        # that nightly runs catch up without anyone running `timestamp retry`.
        with count_progress("timestamping earlier runs' snapshots") as progress:
            task = progress.add_task("", total=len(pending))
            earlier = retry(evidence, config, lambda n: progress.advance(task, n))
        err.print(
            f"timestamped {len(earlier.timestamped)} snapshot(s) of earlier runs"
            + (f", {len(earlier.failed)} still without" if earlier.failed else "")
        )
    if state.settings.timestamps.archive_crls:
        # CRLs issued since earlier runs' tokens show the TSAs' status at their times.
        from evidence_store.timestamps.revocation import archive_crls

        crls = archive_crls(evidence, anchors=config.anchors(), timeout=config.timeout)
        for url, reason in crls.failed:
            err.print(f"[yellow]CRL not archived[/] {escape(url)}: {escape(reason)}")
        if crls.stale:  # retired TSAs: one line, not one per nightly run and URL
            err.print(
                f"{len(crls.stale)} CRL distribution point(s) unreachable; "
                "their earlier CRLs stay archived"
            )
    if state.settings.timestamps.anchor_custody:
        try:
            anchor_custody_head(evidence, config)
        except TimestampError as exc:
            err.print(f"[yellow]custody log head not timestamped:[/] {escape(str(exc))}")
    return result


def _start_run(evidence: Any, kind: str, collection: str, source: str | None, note: str | None):
    from evidence_store.runs import start_run

    return start_run(evidence, kind=kind, collection=collection, source=source, note=note)


def _finish_run(evidence: Any, run_id: str, status: str, **stats: Any) -> None:
    from evidence_store.runs import finish_run

    finish_run(evidence, run_id, status=status, stats=stats)


SourceOption = Annotated[
    str | None,
    typer.Option(
        "--source",
        help="Name of the source (sets its timestamp mode: [timestamps.sources]).",
    ),
]


# -- db ------------------------------------------------------------------------------------
@db_app.command("upgrade")
def db_upgrade(as_json: JsonOption = False) -> None:
    """Create or migrate the index database to the current schema."""
    index = open_index(state.settings, auto_migrate=False)
    before = index.current_revision()
    after = index.upgrade()
    if as_json:
        print_json({"database": index.describe(), "from": before, "to": after})
    else:
        out.print(f"index {escape(index.describe())}: schema {before or 'empty'} -> {after}")


@db_app.command("status")
def db_status(as_json: JsonOption = False) -> None:
    """Show the schema revision of the index database."""
    index = open_index(state.settings, auto_migrate=False)
    current, head = index.current_revision(), index.head_revision()
    if as_json:
        print_json(
            {
                "database": index.describe(),
                "current": current,
                "head": head,
                "up_to_date": current == head,
            }
        )
    else:
        status = "up to date" if current == head else "needs `evidence db upgrade`"
        out.print(
            f"index {escape(index.describe())}: schema {current or 'empty'} (head {head}), {status}"
        )


# -- ingest --------------------------------------------------------------------------------
@app.command()
def ingest(
    files: Annotated[
        list[Path], typer.Argument(help="Files to preserve; each becomes one snapshot.")
    ],
    collection: Annotated[
        str, typer.Option("--collection", help="Collection to add to.")
    ] = "default",
    source_url: Annotated[
        str | None, typer.Option("--source-url", help="Where the file came from.")
    ] = None,
    note: Annotated[
        str | None, typer.Option("--note", help="Why it is preserved, for the record.")
    ] = None,
    media_type: Annotated[
        str | None,
        typer.Option("--media-type", help="Media type (default: guessed from the name)."),
    ] = None,
    source: SourceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Preserve files obtained elsewhere (a report, a user's data export) as snapshots."""
    captures = []
    for path in files:
        if not path.exists():
            raise EvidenceError(f"no such file: {path}")
        if not path.is_file():
            raise EvidenceError(f"not a regular file: {path}")
        stat = path.stat()
        captures.append(
            Capture(
                collection=collection,
                kind="ingest",
                source=source,
                source_url=source_url,
                note=note,
                metadata={
                    "original_name": path.name,
                    "original_path": str(path.absolute()),
                    "original_size": stat.st_size,
                    "original_modified_at": format_rfc3339(
                        datetime.fromtimestamp(stat.st_mtime, UTC)
                    ),
                    "ingested_on_host": socket.gethostname(),
                },
                artifacts=[
                    CaptureArtifact(
                        role="original",
                        name=path.name,
                        media_type=media_type
                        or mimetypes.guess_type(path.name)[0]
                        or "application/octet-stream",
                        path=path,
                    )
                ],
            )
        )
    evidence = open_evidence(state.settings)
    evidence.objects.check()
    results = []
    run_id = _start_run(evidence, "ingest", collection, source, note)
    try:
        with bytes_progress("archiving") as progress:
            task = progress.add_task("archiving", total=sum(p.stat().st_size for p in files))
            for path, capture in zip(files, captures, strict=True):
                progress.update(task, description=f"archiving {path.name}")
                archived = archive(evidence, capture.model_copy(update={"run_id": run_id}))
                results.append((path, archived))
                progress.advance(task, path.stat().st_size)
    except BaseException:
        _finish_run(evidence, run_id, "failed", snapshots=len(results))
        raise
    stamps = _timestamp_new(evidence, [a.id for _, a in results], source=source, run_id=run_id)
    _finish_run(
        evidence,
        run_id,
        "succeeded",
        snapshots=len(results),
        untimestamped=sum(1 for v in stamps.values() if v is None),
    )
    if as_json:
        print_json(
            [
                {
                    "file": str(path),
                    "snapshot": a.id,
                    "timestamp": stamps.get(a.id),
                    **a.manifest.model_dump(
                        mode="json", include={"collection", "sequence", "artifacts"}
                    ),
                }
                for path, a in results
            ]
        )
        return
    table = Table(title=f"{len(results)} snapshot(s) archived in collection {collection!r}")
    for column in ("snapshot", "seq", "file", "bytes", "sha256"):
        table.add_column(column, overflow="fold")
    for path, a in results:
        art = a.manifest.artifacts[0]
        table.add_row(short(a.id), str(a.sequence), escape(path.name), f"{art.size:,}", art.sha256)
    out.print(table)


# -- capture -------------------------------------------------------------------------------
@app.command()
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
    collection: Annotated[
        str, typer.Option("--collection", help="Collection to add to.")
    ] = "default",
    note: Annotated[str | None, typer.Option("--note", help="Why, for the record.")] = None,
    ignore_robots: Annotated[
        bool,
        typer.Option("--ignore-robots", help="Do not obey robots.txt (it is archived anyway)."),
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", min=1, help="Seconds allowed per request.")
    ] = 30,
    max_bytes: Annotated[
        int, typer.Option("--max-bytes", min=1024, help="Largest response accepted, in bytes.")
    ] = 50 * 1024 * 1024,
    source: SourceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Capture public pages as evidence: every exchange into a WARC, archived as snapshots."""
    from crawlers.runner import capture_pages
    from crawlers.spiders.pages import read_urls

    if http and browser:
        raise EvidenceError("choose --http or --browser, not both")
    try:
        targets = read_urls(urls, str(urls_file) if urls_file else None)
    except OSError as exc:
        raise EvidenceError(f"cannot read {urls_file}: {exc.strerror}") from None
    if not targets:
        raise EvidenceError("no URLs to capture: give URLs or --urls-file")
    evidence = open_evidence(state.settings)
    evidence.objects.check()
    run_id = _start_run(evidence, "capture", collection, source, note)
    with Progress(
        TextColumn("[bold]capturing"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.description}"),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task("", total=len(targets))

        def advance(outcome: Any) -> None:
            if outcome.mode != "robots":
                progress.update(task, advance=1, description=outcome.url[:60])

        outcomes = capture_pages(
            evidence,
            targets,
            mode="browser" if browser else "http",
            obey_robots=not ignore_robots,
            on_outcome=advance,
            EVIDENCE_COLLECTION=collection,
            EVIDENCE_NOTE=note,
            EVIDENCE_SOURCE=source,
            EVIDENCE_RUN_ID=run_id,
            EVIDENCE_OPERATOR=state.settings.actor,
            DOWNLOAD_TIMEOUT=timeout,
            DOWNLOAD_MAXSIZE=max_bytes,
        )
    archived = [o.snapshot for o in outcomes if o.snapshot]
    stamps = _timestamp_new(evidence, archived, source=source, run_id=run_id)
    pages = [o for o in outcomes if o.mode != "robots"]
    _finish_run(
        evidence,
        run_id,
        "succeeded" if all(o.snapshot for o in pages) else "partial",
        urls=len(targets),
        snapshots=len(archived),
        untimestamped=sum(1 for v in stamps.values() if v is None),
    )
    if as_json:
        print_json(
            [
                o.model_dump(mode="json") | {"timestamp": stamps.get(o.snapshot or "")}
                for o in outcomes
            ]
        )
    else:
        table = Table(title=f"capture into collection {collection!r}", box=box.SIMPLE_HEAD)
        for column in ("snapshot", "outcome", "status", "final URL", "artifacts (sha256)"):
            table.add_column(column, overflow="fold")
        for o in outcomes:
            digests = "\n".join(f"{a.role} {a.sha256[:16]}" for a in o.artifacts)
            table.add_row(
                short(o.snapshot) if o.snapshot else "-",
                o.outcome if o.mode != "robots" else "robots.txt",
                str(o.status or "-"),
                escape(o.final_url or o.url),
                digests or escape(o.error or ""),
            )
        out.print(table)
        counts: dict[str, int] = {}
        for o in outcomes:
            if o.mode != "robots":
                counts[o.outcome] = counts.get(o.outcome, 0) + 1
        summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        out.print(f"{len(targets)} URL(s): {summary}")


# -- snapshots -----------------------------------------------------------------------------
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
    index = open_index(state.settings)
    with index.session() as session:
        infos = list_snapshots(session, collection=collection, limit=limit)
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
            escape(i.collection),
            str(i.sequence),
            i.captured_at.strftime("%Y-%m-%d %H:%M:%SZ"),
            f"{sum(a.size for a in i.artifacts):,}",
            escape(i.source_url or i.note or ""),
        )
    out.print(table)


@snapshots_app.command("show")
def snapshots_show(
    snapshot: SnapshotArg,
    as_json: JsonOption = False,
) -> None:
    """Show one snapshot: its manifest data and artifacts (recorded in the custody log)."""
    settings = state.settings
    evidence = open_evidence(settings)
    with evidence.index.session() as session:
        info = snapshot_info(resolve_snapshot(session, snapshot))
    manifest = json.loads(evidence.objects.get(info.id))
    record_custody(evidence.index, action="viewed", actor=settings.actor, snapshot_id=info.id)
    if as_json:
        print_json({"snapshot": info.model_dump(mode="json"), "manifest": manifest})
        return
    out.print(f"[bold]snapshot[/] {info.id}")
    out.print(
        f"collection {escape(info.collection)} #{info.sequence}, previous {info.previous or '-'}"
    )
    captured, archived = format_rfc3339(info.captured_at), format_rfc3339(info.archived_at)
    out.print(f"kind {info.kind}; captured {captured}; archived {archived}")
    if info.source_url:
        out.print(f"source {escape(info.source_url)}")
    if info.note:
        out.print(f"note {escape(info.note)}")
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
        table.add_row(a.role, escape(a.name), a.media_type, f"{a.size:,}", a.sha256)
    out.print(table)
    if manifest.get("capture"):
        out.print("capture metadata:")
        out.print_json(data=manifest["capture"])


# -- verify --------------------------------------------------------------------------------
@app.command()
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
    as_json: JsonOption = False,
) -> None:
    """Re-hash artifacts from the store and check manifests, signatures, chains, timestamps
    and (with --all) the custody log."""
    if bool(snapshots) == all_:
        raise EvidenceError("give snapshot ids or --all (not both, not neither)")
    if report_format not in (None, "text", "json"):
        raise EvidenceError(f"--report-format {report_format!r}: use text or json")
    if report_path is not None and report_path.exists():
        raise EvidenceError(f"{report_path} exists: a report is never overwritten")
    settings = state.settings
    evidence = open_evidence(settings)
    ids = None
    if snapshots:
        with evidence.index.session() as session:
            ids = [resolve_snapshot(session, ref).id for ref in snapshots]
    with bytes_progress("verifying") as progress:
        task = progress.add_task("verifying", total=None)
        report = verify_snapshots(
            evidence.objects,
            evidence.index,
            ids,
            workers=workers or settings.verify_workers,
            progress=lambda n: progress.advance(task, n),
            on_total=lambda total: progress.update(task, total=total),
            timestamp_anchors=_anchors(settings),
            timestamp_crls=settings.timestamp_settings().crl_data(),
            custody_log=all_,
        )
    details: dict[str, Any] = {
        "scope": "all" if all_ else ids,
        "snapshots": report.snapshots,
        "bytes": report.bytes_hashed,
        "problems": len(report.problems),
    }
    if report_path is not None:
        from exhibits.report import ReportContext, write_report

        context = ReportContext(
            actor=settings.actor,
            database=evidence.index.describe(),
            object_store=evidence.objects.url,
            scope="all snapshots" if all_ else ", ".join(ids or []),
            trust_anchors=settings.timestamp_settings().trust_anchors,
            crls=settings.timestamp_settings().crls,
            archived_crls=_archived_crl_lines(evidence),
        )
        digest = write_report(report, context, report_path, report_format)
        details["report"] = {"file": str(report_path.absolute()), "sha256": digest}
        err.print(f"report written to {escape(str(report_path))} (sha256 {digest})")
    record_custody(evidence.index, action="verified", actor=settings.actor, details=details)
    if as_json:
        print_json(report.to_dict())
    else:
        for problem in report.problems:
            err.print(f"[red]PROBLEM[/] {escape(str(problem))}")
        verdict = "[green]OK[/]" if report.ok else f"[red]{len(report.problems)} problem(s)[/]"
        stamped = f", {report.timestamps} timestamp(s)" if report.timestamps else ""
        if report.custody is not None:
            stamped += f", custody log of {report.custody['entries']} entries"
        out.print(
            f"verified {report.snapshots} snapshot(s), {report.objects} object(s), "
            f"{report.bytes_hashed:,} bytes{stamped}: {verdict}"
        )
    if not report.ok:
        raise typer.Exit(1)


def _archived_crl_lines(evidence: Any) -> tuple[str, ...]:
    from evidence_store.timestamps.revocation import newest_crls

    with evidence.index.session() as session:
        return tuple(
            f"{row.issuer}, thisUpdate {format_rfc3339(row.this_update)}, sha256 {row.crl_sha256}"
            for row in newest_crls(session)
        )


def _anchors(settings: Settings) -> list[bytes] | None:
    config = settings.timestamp_settings()
    if not config.enabled and not config.trust_anchors:
        return None  # timestamping not configured: tokens are not checked
    return config.anchors()


# -- timestamp -----------------------------------------------------------------------------
def _require_tsa(config: Any) -> None:
    if not config.enabled:
        raise EvidenceError(
            "no TSA configured: set [timestamps] tsa_urls (EVIDENCE_TIMESTAMPS__TSA_URLS)"
        )


@timestamp_app.command("retry")
def timestamp_retry(
    list_only: Annotated[
        bool, typer.Option("--list", help="Only list what has no timestamp yet.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Ask the TSAs again for every Merkle root and snapshot that has no timestamp yet."""
    from evidence_store.timestamps.service import retry, untimestamped, untimestamped_trees

    settings = state.settings
    evidence = open_evidence(settings)
    pending, trees = untimestamped(evidence), untimestamped_trees(evidence)
    config = settings.timestamp_settings()
    if list_only or not pending:
        if as_json:
            print_json({"untimestamped": pending, "trees": trees})
        else:
            for sid in pending:
                out.print(sid)
            out.print(
                f"{len(pending)} snapshot(s) without a timestamp"
                + (f", in {len(trees)} Merkle tree(s) awaiting a token" if trees else "")
            )
        return
    _require_tsa(config)
    with count_progress("timestamping") as progress:
        task = progress.add_task("", total=len(pending))
        run = retry(evidence, config, lambda n: progress.advance(task, n))
    if as_json:
        print_json(
            {
                "timestamped": [
                    {"snapshot": s, "gen_time": t, "tsa": u} for s, t, u in run.timestamped
                ],
                "failed": [{"snapshot": s, "reason": r} for s, r in run.failed],
                "trees": run.trees,
            }
        )
    else:
        for sid, reason in run.failed[:10]:
            err.print(f"[yellow]untimestamped[/] {sid[:16]}: {escape(reason)}")
        out.print(f"timestamped {len(run.timestamped)}, still untimestamped {len(run.failed)}")
    if run.failed:
        raise typer.Exit(1)


@timestamp_app.command("renew")
def timestamp_renew(
    expiring_within: Annotated[
        int,
        typer.Option(
            "--expiring-within",
            min=0,
            help="Renew tokens whose TSA certificate ends within this many days.",
        ),
    ] = 365,
    all_: Annotated[
        bool, typer.Option("--all", help="Renew every current token, whatever its expiry.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Timestamp old tokens again (archive timestamps), before their TSA certificates end."""
    from datetime import timedelta

    from evidence_store.timestamps.service import renew_timestamps

    settings = state.settings
    evidence = open_evidence(settings)
    config = settings.timestamp_settings()
    _require_tsa(config)
    within = None if all_ else timedelta(days=expiring_within)
    with count_progress("renewing timestamps") as progress:
        task = progress.add_task("", total=None)
        run = renew_timestamps(
            evidence,
            config,
            expiring_within=within,
            progress=lambda n: progress.advance(task, n),
            on_total=lambda total: progress.update(task, total=total),
        )
    if as_json:
        print_json(
            {
                "renewed": [{"timestamp": i, "gen_time": t} for i, t in run.renewed],
                "failed": [{"timestamp": i, "reason": r} for i, r in run.failed],
                "not_due": run.not_due,
            }
        )
    else:
        for record_id, reason in run.failed:
            err.print(f"[yellow]not renewed[/] timestamp {record_id}: {escape(reason)}")
        out.print(
            f"renewed {len(run.renewed)} timestamp(s); {run.not_due} not due"
            + (f"; stopped: {len(run.failed)} failed" if run.failed else "")
        )
    if run.failed:
        raise typer.Exit(1)


@timestamp_app.command("crls")
def timestamp_crls(as_json: JsonOption = False) -> None:
    """Fetch and archive the CRLs named in the TSA certificates of the stored tokens."""
    from evidence_store.timestamps.revocation import archive_crls

    settings = state.settings
    evidence = open_evidence(settings)
    config = settings.timestamp_settings()
    with err.status("fetching revocation lists"):
        result = archive_crls(evidence, anchors=config.anchors(), timeout=config.timeout)
    if as_json:
        print_json(
            {
                "archived": result.archived,
                "unchanged": result.unchanged,
                "failed": [{"url": u, "reason": r} for u, r in result.failed],
                "stale": [{"url": u, "reason": r} for u, r in result.stale],
            }
        )
    else:
        _print_crls(result)
    if result.failed:
        raise typer.Exit(1)


def _print_crls(result: Any) -> None:
    for entry in result.archived:
        out.print(
            f"archived CRL of {escape(entry['issuer'])} (thisUpdate {entry['this_update']}, "
            f"{entry['revoked']} revoked) from {escape(entry['url'])}"
        )
    for url, reason in result.failed:
        err.print(f"[yellow]CRL not archived[/] {escape(url)}: {escape(reason)}")
    for url, reason in result.stale:
        err.print(f"CRL not fetched (an earlier one is archived) {escape(url)}: {escape(reason)}")
    out.print(
        f"{len(result.archived)} CRL(s) archived, {result.unchanged} unchanged, "
        f"{len(result.failed)} failed"
        + (f", {len(result.stale)} not fetched but archived before" if result.stale else "")
    )


# -- store ---------------------------------------------------------------------------------
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
    evidence = open_evidence(state.settings)
    report = sweep_store(
        evidence.objects, evidence.index, actor=evidence.actor, remove_temporary=remove_temporary
    )
    if as_json:
        print_json(report.__dict__)
        return
    for digest in report.orphans:
        out.print(f"orphan sha256:{digest}")
    for tmp in report.temporary:
        removed = " (removed)" if tmp in report.removed_temporary else ""
        out.print(f"temporary {escape(tmp)}{removed}")
    out.print(
        f"{report.objects} object(s), {report.referenced} referenced, "
        f"{len(report.orphans)} orphaned (kept, logged to the custody log), "
        f"{len(report.temporary)} temporary file(s)"
    )


# -- export --------------------------------------------------------------------------------
@export_app.command("wacz")
def export_wacz_command(
    snapshots: Annotated[list[str], typer.Argument(help="Snapshot ids or unique prefixes.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The .wacz file to write.")],
    title: Annotated[str | None, typer.Option("--title", help="Title in datapackage.json.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Package the WARCs of snapshots as a WACZ (replayable in pywb and ReplayWeb.page)."""
    from exhibits.export import export_snapshots_wacz
    from exhibits.wacz import WaczError

    if output.exists():
        raise EvidenceError(f"{output} exists: an export is never overwritten")
    settings = state.settings
    evidence = open_evidence(settings)
    try:
        path, ids = export_snapshots_wacz(
            evidence.objects, evidence.index, snapshots, output, title=title
        )
    except WaczError as exc:
        raise EvidenceError(f"cannot export WACZ: {exc}") from None
    import hashlib

    with open(path, "rb") as stream:
        digest = hashlib.file_digest(stream, "sha256").hexdigest()
    for snapshot_id in ids:
        record_custody(
            evidence.index,
            action="exported",
            actor=settings.actor,
            snapshot_id=snapshot_id,
            details={"format": "wacz", "file": str(path.absolute()), "sha256": digest},
        )
    if as_json:
        print_json({"file": str(path), "sha256": digest, "snapshots": ids})
    else:
        out.print(f"wrote {escape(str(path))} ({path.stat().st_size:,} bytes, sha256 {digest})")


# -- config --------------------------------------------------------------------------------
@config_app.command("show")
def config_show(as_json: JsonOption = False) -> None:
    """Show the effective configuration (secrets hidden)."""
    view = state.settings.public_view()
    if as_json:
        print_json(view)
        return
    table = Table(title="effective configuration")
    table.add_column("setting")
    table.add_column("value", overflow="fold")

    def rows(prefix: str, data: dict[str, Any]) -> None:
        for key, value in data.items():
            if isinstance(value, dict):
                rows(f"{prefix}{key}.", value)
            else:
                table.add_row(prefix + key, escape(str(value)))

    rows("", view)
    out.print(table)


def main() -> None:
    """Console entry point: one-line errors, exit status 2 for failures."""
    try:
        app()
    except EvidenceError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        sys.exit(2)
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        err.print(f"[red]error:[/] {escape(exc.strerror or str(exc))}{escape(where)}")
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
