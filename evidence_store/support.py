"""Small helpers every layer shares: progress callbacks, durable file writes, verdicts.

This module imports nothing of the project but the standard library, so that any module may
use it without creating an import cycle.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ProgressCallback = Callable[[int], None]
"""Called with an increment (objects, snapshots or bytes, as the caller documents)."""


def verdict(problems: int, unchecked: int) -> str:
    """The one-line result: "OK" only when nothing failed and nothing was left unchecked."""
    if problems:
        tail = f", {unchecked} unchecked" if unchecked else ""
        return f"{problems} problem(s){tail}"
    return f"OK with {unchecked} unchecked" if unchecked else "OK"


class CheckResult:
    """What every check's result says about itself (its ``problems`` and ``unchecked``)."""

    problems: list[Any]
    unchecked: list[Any]

    @property
    def ok(self) -> bool:
        """No problem found. Things may still have been left unchecked: see ``complete``."""
        return not self.problems

    @property
    def complete(self) -> bool:
        """No problem found and nothing left unchecked."""
        return self.ok and not self.unchecked

    @property
    def verdict(self) -> str:
        """ "OK", "OK with N unchecked", or "N problem(s)" (with ", M unchecked")."""
        return verdict(len(self.problems), len(self.unchecked))


def fsync_dir(path: Path) -> None:
    """Make a directory's entries durable (new files, links, renames, removals)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data`` (permissions ``mode``) so that a crash leaves either the
    old content or the new, never a truncated file.

    Temporary file beside the target, fsync, rename, fsync of the folder.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
