"""What every `evidence` command shares: settings, consoles, JSON output, custody logging."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from evidence_store import custody
from jobs.config import Settings, load_settings

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
SnapshotArg = Annotated[str, typer.Argument(help="Snapshot id or a unique prefix of it.")]


class State:
    config_path: Path | None = None
    _settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path)
        return self._settings


state = State()


def record_custody(index: Any, **event: Any) -> None:
    """Log an access in the custody log; on read-only media say that it could not be logged."""
    if index.read_only:
        err.print(
            f"[yellow]warning:[/] custody log not updated ({event['action']}): read-only index"
        )
        return
    with index.writing(custody.CUSTODY_LOCK) as session:
        custody.record(session, **event)


def print_json(data: Any) -> None:
    """Write data as indented JSON on stdout (the `--json` output of every command)."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def short(digest: str) -> str:
    return digest[:16]


def count_progress(description: str) -> Progress:
    """A transient progress bar on stderr for work counted in items (objects, snapshots)."""
    return Progress(
        TextColumn(f"[bold]{description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err,
        transient=True,
    )


def bytes_progress(description: str) -> Progress:
    """A transient progress bar on stderr for work measured in bytes."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )
