"""`evidence keys`: the manifest-signing keys, their rotation and their exportable history."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from evidence_store.errors import EvidenceError
from evidence_store.keys import export_key_history, list_keys, rotate_key
from evidence_store.signing import KEY_FILE, Signer
from jobs.cli.common import JsonOption, err, out, print_json, record_custody, short, state
from jobs.context import open_evidence, open_index
from schemas import format_rfc3339

keys_app = typer.Typer(
    help="Manifest-signing keys: list, rotate, export the history.", no_args_is_help=True
)


def _local_fingerprint(keys_dir: Path) -> str | None:
    # Listing must not create a key on a machine that has none yet.
    path = keys_dir / KEY_FILE
    return Signer.load(path).info.fingerprint if path.exists() else None


@keys_app.command("list")
def keys_list(as_json: JsonOption = False) -> None:
    """Every key the index trusts, oldest first; the key of this machine is marked."""
    settings = state.settings
    index = open_index(settings)
    with index.session() as session:
        entries = list_keys(session)
    local = _local_fingerprint(settings.keys_dir)
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
    if not reason or not reason.strip():
        raise EvidenceError("a key rotation needs --reason (it goes into the custody log)")
    settings = state.settings
    evidence = open_evidence(settings)
    rotation = rotate_key(
        settings.keys_dir, evidence.objects, evidence.index, actor=settings.actor, reason=reason
    )
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
    if output.exists():
        raise EvidenceError(f"{output} exists: an export is never overwritten")
    settings = state.settings
    evidence = open_evidence(settings)
    with evidence.index.session() as session:
        result = export_key_history(evidence.objects, session, output)
    record_custody(
        evidence.index,
        action="exported",
        actor=settings.actor,
        details={
            "format": "key-history",
            "folder": str(result.path.absolute()),
            "keys": result.keys,
            "sha256sums": result.sha256sums,
            "problems": len(result.problems),
        },
    )
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
            err.print(f"[red]PROBLEM[/] {escape(problem)}")
        out.print(
            f"wrote {escape(str(result.path))}: {result.keys} key(s), "
            f"SHA256SUMS sha256 {result.sha256sums}"
        )
    if result.problems:
        raise typer.Exit(1)
