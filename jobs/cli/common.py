"""What every `evidence` command shares: settings, consoles, safe text, JSON, progress bars."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from jobs.config import Settings, load_settings

# Emoji codes (":x:") and highlighting would change what an archived text looks like.
out = Console(highlight=False, emoji=False)
err = Console(stderr=True, highlight=False, emoji=False)

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
SnapshotArg = Annotated[str, typer.Argument(help="Snapshot id or a unique prefix of it.")]

# C0 and C1 controls (escape sequences, OSC titles, backspaces, line breaks that forge lines)
# and the bidirectional overrides that reorder what a terminal shows.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# What json.dumps(ensure_ascii=False) leaves raw of those (it escapes C0 itself).
_UNSAFE_IN_JSON = re.compile("[\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def plain(value: Any) -> str:
    """Text from users or captured pages with control characters shown as escapes."""
    return _UNSAFE.sub(_visible, str(value))


def safe(value: Any) -> str:
    """``plain`` text made literal for rich (no markup, no control characters)."""
    return escape(plain(value))


class State:
    config_path: Path | None = None
    _settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path)
        return self._settings


state = State()


def print_json(data: Any) -> None:
    """Write data as indented JSON on stdout (the `--json` output of every command).

    The values stay exact; C1 controls and bidi overrides are written as \\u escapes (which
    json.dumps leaves raw) so that the JSON is also safe on a terminal.
    """
    text = json.dumps(data, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write(_UNSAFE_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text) + "\n")


def short(digest: str) -> str:
    return digest[:16]


def warn(message: str) -> None:
    """One warning line on stderr (never wrapped: scripts and logs read it whole)."""
    err.print(f"[yellow]warning:[/] {safe(message)}", soft_wrap=True)


class _Amount(ProgressColumn):
    """done/total for items, sizes for bytes."""

    _bytes = DownloadColumn()

    def render(self, task: Task) -> Text:
        if task.fields.get("unit") == "bytes":
            return self._bytes.render(task)
        total = "?" if task.total is None else f"{int(task.total)}"
        return Text(f"{int(task.completed)}/{total}")


class ConsoleProgress:
    """A job's ``Progress`` as a transient rich bar on stderr, one stage at a time."""

    def __init__(self) -> None:
        self._bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            _Amount(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[item]}"),
            console=err,
            transient=True,
            # Only on a terminal: in logs and pipes a bar is noise, and the summary says it all.
            disable=not err.is_terminal,
        )
        self._task: TaskID | None = None

    def __enter__(self) -> ConsoleProgress:
        self._bar.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._bar.stop()

    def stage(self, description: str, total: float | None = None, *, unit: str = "items") -> None:
        if self._task is not None:
            self._bar.remove_task(self._task)
        self._task = self._bar.add_task(safe(description), total=total, unit=unit, item="")

    def advance(self, amount: float = 1, *, item: str | None = None) -> None:
        if self._task is None:
            self.stage("working")
        assert self._task is not None
        fields = {"item": safe(item[-60:])} if item is not None else {}
        self._bar.update(self._task, advance=amount, **fields)

    def total(self, total: float | None) -> None:
        if self._task is not None:
            self._bar.update(self._task, total=total)
