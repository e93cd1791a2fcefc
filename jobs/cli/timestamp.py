"""`evidence timestamp`: retry, renew, and archive the revocation lists of RFC 3161 tokens."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

import typer

from jobs import timestamps
from jobs.cli.common import ConsoleProgress, JsonOption, err, out, print_json, safe, state

timestamp_app = typer.Typer(help="RFC 3161 timestamps of snapshots.", no_args_is_help=True)


@timestamp_app.command("retry")
def timestamp_retry(
    list_only: Annotated[
        bool, typer.Option("--list", help="Only list what has no timestamp yet.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Ask the TSAs again for every Merkle root and snapshot that has no timestamp yet."""
    settings = state.settings
    pending = timestamps.pending(settings)
    if list_only or not pending.snapshots:
        if as_json:
            print_json({"untimestamped": pending.snapshots, "trees": pending.trees})
        else:
            for sid in pending.snapshots:
                out.print(sid)
            out.print(
                f"{len(pending.snapshots)} snapshot(s) without a timestamp"
                + (
                    f", in {len(pending.trees)} Merkle tree(s) awaiting a token"
                    if pending.trees
                    else ""
                )
            )
        return
    with ConsoleProgress() as progress:
        run = timestamps.retry(settings, progress=progress)
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
            err.print(f"[yellow]untimestamped[/] {sid[:16]}: {safe(reason)}")
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
    within = None if all_ else timedelta(days=expiring_within)
    with ConsoleProgress() as progress:
        run = timestamps.renew(state.settings, expiring_within=within, progress=progress)
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
            err.print(f"[yellow]not renewed[/] timestamp {record_id}: {safe(reason)}")
        out.print(
            f"renewed {len(run.renewed)} timestamp(s); {run.not_due} not due"
            + (f"; stopped: {len(run.failed)} failed" if run.failed else "")
        )
    if run.failed:
        raise typer.Exit(1)


@timestamp_app.command("crls")
def timestamp_crls(as_json: JsonOption = False) -> None:
    """Fetch and archive the CRLs named in the TSA certificates of the stored tokens."""
    with ConsoleProgress() as progress:
        result = timestamps.archive_crls(state.settings, progress=progress)
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
            f"archived CRL of {safe(entry['issuer'])} (thisUpdate {entry['this_update']}, "
            f"{entry['revoked']} revoked) from {safe(entry['url'])}"
        )
    for url, reason in result.failed:
        err.print(f"[yellow]CRL not archived[/] {safe(url)}: {safe(reason)}")
    for url, reason in result.stale:
        err.print(f"CRL not fetched (an earlier one is archived) {safe(url)}: {safe(reason)}")
    out.print(
        f"{len(result.archived)} CRL(s) archived, {result.unchanged} unchanged, "
        f"{len(result.failed)} failed"
        + (f", {len(result.stale)} not fetched but archived before" if result.stale else "")
    )
