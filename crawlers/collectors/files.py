"""`files`: preserve files obtained elsewhere (a report, a user's data export), one snapshot each.

`evidence ingest FILE...` runs this source; `evidence crawl files -a path=FILE` does too.
Each file is hashed with its size and modification time read before and after: a file that
changes while it is read is read again (up to ``attempts`` times) and otherwise refused, and the
store must then see the same digest, so a file that grows during archiving is never stored
with more bytes than its record says. Files whose reported size is not their length (``/proc``
entries) are recorded without a size rather than with a false one.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import Field, field_validator

from crawlers.redaction import Redactor
from evidence_store.errors import InputError, SourceChangedError
from schemas import (
    Capture,
    CaptureArtifact,
    CaptureOutcome,
    CollectContext,
    SourceSettings,
    SourceSpec,
)
from schemas import format_rfc3339 as rfc3339

MEDIA_TYPE = re.compile(r"^[A-Za-z0-9][\w.+-]*/[A-Za-z0-9][\w.+-]*(\s*;.*)?$")


def check_media_type(value: str) -> str:
    """A media type such as ``text/csv``; raises ValueError naming the bad value."""
    if not MEDIA_TYPE.match(value) or len(value) > 255:
        raise ValueError(f"invalid media type {value!r}: use type/subtype, e.g. text/csv")
    return value


def redact_source_url(url: str) -> tuple[str, list[str]]:
    """The URL with passwords and token parameters redacted, as captures redact theirs."""
    return Redactor().redact_url(url)


class FilesSettings(SourceSettings):
    paths: list[Path] = Field(
        default_factory=list, description="files to preserve; each becomes one snapshot"
    )
    source_url: str | None = Field(
        default=None, description="where the files came from (secrets in it are redacted)"
    )
    media_type: str | None = Field(
        default=None, description="media type of every file (default: guessed from the name)"
    )
    attempts: int = Field(
        default=3, ge=1, le=10, description="reads of a file that changes while it is read"
    )

    @field_validator("paths")
    @classmethod
    def _paths(cls, value: list[Path]) -> list[Path]:
        # Refused before the run starts: a missing file must not leave half a run behind.
        for path in value:
            try:
                check_file(path)
            except InputError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("media_type")
    @classmethod
    def _media_type(cls, value: str | None) -> str | None:
        return None if value is None else check_media_type(value)


@dataclass(frozen=True)
class HashedFile:
    path: Path
    sha256: str
    size: int
    reported_size: int | None  # None: the file system's size is not the file's length
    modified_at: datetime


def check_file(path: Path) -> None:
    """Refuse what cannot be preserved, before anything is read or written."""
    if not path.exists():
        raise InputError(f"no such file: {path}")
    if not path.is_file():
        raise InputError(f"not a regular file: {path}")
    if not os.access(path, os.R_OK):
        raise InputError(f"cannot read {path}: permission denied")


def hash_file(path: Path, attempts: int = 3) -> HashedFile:
    """SHA-256 and length of a file that did not change while it was read."""
    for _ in range(attempts):
        try:
            with open(path, "rb") as stream:
                before = os.fstat(stream.fileno())
                digest = hashlib.file_digest(stream, "sha256")
                size = stream.tell()
                after = os.fstat(stream.fileno())
            renamed = os.stat(path)
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror}") from None
        unchanged = (before.st_size, before.st_mtime_ns) == (after.st_size, after.st_mtime_ns)
        same_file = (renamed.st_ino, renamed.st_dev) == (before.st_ino, before.st_dev)
        if not (unchanged and same_file):
            continue  # written to, or replaced, while it was read: read it again
        if size == before.st_size or _pseudo_size(before.st_size, size):
            return HashedFile(
                path=path,
                sha256=digest.hexdigest(),
                size=size,
                reported_size=before.st_size if size == before.st_size else None,
                modified_at=datetime.fromtimestamp(before.st_mtime_ns / 1e9, UTC),
            )
    raise SourceChangedError(
        f"{path} changed while it was read ({attempts} attempts): not archived; "
        "preserve it once it is complete"
    )


def _pseudo_size(reported: int, actual: int) -> bool:
    # procfs reports 0 and sysfs one page for files whose length is only known when read.
    return reported in (0, 4096) and reported != actual


def file_capture(
    hashed: HashedFile,
    *,
    collection: str,
    source: str | None,
    source_url: str | None,
    redacted: list[str],
    note: str | None,
    media_type: str | None,
    run_id: str | None,
) -> Capture:
    """The capture of one hashed file; the store refuses it if the bytes differ by then."""
    path = hashed.path
    metadata: dict[str, object] = {
        "original_name": path.name,
        "original_path": str(path.absolute()),
        "original_modified_at": rfc3339(hashed.modified_at),
        "ingested_on_host": socket.gethostname(),
    }
    if hashed.reported_size is not None:
        metadata["original_size"] = hashed.reported_size
    if redacted:
        metadata["redacted"] = sorted(set(redacted))
    return Capture(
        collection=collection,
        kind="ingest",
        source=source,
        source_url=source_url,
        note=note,
        run_id=run_id,
        metadata=metadata,
        artifacts=[
            CaptureArtifact(
                role="original",
                name=path.name,
                media_type=media_type
                or mimetypes.guess_type(path.name)[0]
                or "application/octet-stream",
                path=path,
                sha256=hashed.sha256,
            )
        ],
    )


def collect(settings: FilesSettings, context: CollectContext) -> Iterator[Capture | CaptureOutcome]:
    """Captures of the configured files, in order (the `files` source's collector); a file
    that cannot be read whole becomes an outcome that says why, and the others go on."""
    source_url, redacted = (None, [])
    if settings.source_url:
        source_url, redacted = redact_source_url(settings.source_url)
    for path in settings.paths:
        check_file(path)
    for path in settings.paths:
        try:
            hashed = hash_file(path, settings.attempts)
        except InputError as exc:
            outcome = "changed-while-read" if isinstance(exc, SourceChangedError) else "unreadable"
            yield CaptureOutcome(url=str(path), outcome=outcome, mode="file", error=str(exc))
            continue
        yield file_capture(
            hashed,
            collection=context.collection,
            source=context.source,
            source_url=source_url,
            redacted=redacted,
            note=context.note,
            media_type=settings.media_type,
            run_id=context.run_id,
        )


SOURCE = SourceSpec(
    name="files",
    kind="upload",
    description="files obtained elsewhere (reports, data exports), one snapshot per file",
    settings=FilesSettings,
    collection="default",
    collect=collect,
)
