"""`evidence keys`: the manifest-signing keys, their rotation and their exportable history."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from jobs import keys
from jobs.cli.common import JsonOption, err, out, print_json, safe, short, state, warn
from schemas import format_rfc3339

keys_app = typer.Typer(
    help="Manifest-signing keys: list, rotate, export the history.", no_args_is_help=True
)


@keys_app.command("list")
def keys_list(as_json: JsonOption = False) -> None:
    """Every key the index trusts, oldest first; the key of this machine is marked."""
    entries, local = keys.keys(state.settings)
    if as_json:
        print_json([e.to_dict() | {"this_machine": e.fingerprint == local} for e in entries])
        return
    table = Table(title=f"{len(entries)} signing key(s)", box=box.SIMPLE_HEAD)
    for column in ("fingerprint", "created (UTC)", "retired (UTC)", "endorsed by", "active"):
        table.add_column(column, overflow="fold")
    for e in entries:
        active = "yes" if e.active else "no"
        if e.fingerprint == local:
            active += " (this machine)"
        table.add_row(
            e.fingerprint,
            format_rfc3339(e.created_at),
            format_rfc3339(e.retired_at) if e.retired_at else "-",
            short(e.endorsed_by.removeprefix("sha256:")) if e.endorsed_by else "-",
            active,
        )
    out.print(table)


@keys_app.command("rotate")
def keys_rotate(
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why the key is replaced (custody log).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Replace this machine's signing key; the old key endorses the new one and is destroyed."""
    rotation = keys.rotate(state.settings, reason=reason)
    if as_json:
        print_json(
            {
                "old": rotation.old.fingerprint,
                "new": rotation.new.fingerprint,
                "rotated_at": format_rfc3339(rotation.rotated_at),
                "record_sha256": rotation.record_sha256,
                "endorsement_sha256": rotation.endorsement_sha256,
                "custody_entry": rotation.custody_hash,
            }
        )
        return
    out.print(f"retired {rotation.old.fingerprint}")
    out.print(f"active  {rotation.new.fingerprint}")
    out.print(
        f"rotated at {format_rfc3339(rotation.rotated_at)}; endorsement "
        f"sha256:{rotation.endorsement_sha256}"
    )


@keys_app.command("export")
def keys_export(
    output: Annotated[Path, typer.Option("--output", "-o", help="The folder to create.")],
    as_json: JsonOption = False,
) -> None:
    """Write the key history (public keys, endorsements, openssl instructions) to a new folder.

    Exits 1 when the history does not check out; the folder is written anyway.
    """
    exported = keys.export_history(state.settings, output)
    for message in exported.warnings:
        warn(message)
    result = exported.result
    if as_json:
        print_json(
            {
                "folder": str(result.path),
                "keys": result.keys,
                "sha256sums": result.sha256sums,
                "problems": result.problems,
            }
        )
    else:
        for problem in result.problems:
            err.print(f"[red]PROBLEM[/] {safe(problem)}")
        out.print(
            f"wrote {safe(str(result.path))}: {result.keys} key(s), "
            f"SHA256SUMS sha256 {result.sha256sums}"
        )
    if result.problems:
        raise typer.Exit(1)
