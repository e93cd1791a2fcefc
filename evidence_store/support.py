"""Small helpers every layer shares: progress callbacks and durable file writes.

This module imports nothing of the project but the standard library, so that any module may
use it without creating an import cycle.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

ProgressCallback = Callable[[int], None]
"""Called with an increment (objects, snapshots or bytes, as the caller documents)."""


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
