"""Court exhibits: building a bundle (timestamped, logged as an export) and checking one.

Building reads the index and the store; the bundle's digest (the SHA-256 of its SHA256SUMS)
is timestamped with the configured TSAs (the token is stored in the bundle, and stored,
indexed and logged in the archive like every token), and every snapshot in it gets an
"exported" custody entry naming the bundle and its digest. Checking a bundle needs neither
the index nor the store (:func:`verify_bundle`).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evidence_store.errors import EvidenceError
from evidence_store.timestamps.tokens import TimestampError
from jobs.access import record_access
from jobs.config import Settings
from jobs.context import open_evidence
from jobs.progress import NO_PROGRESS, Progress

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.orm import Session

    from exhibits.items import ExhibitItem


@dataclass
class ExhibitBuild:
    """What ``build_exhibits`` or ``build_timeline`` wrote."""

    path: Path
    digest: str  # SHA-256 of the bundle's SHA256SUMS: what is timestamped and logged
    file_sha256: str | None  # of the ZIP, when the bundle is one
    size: int
    files: int
    exhibits: list[dict[str, Any]]
    timestamp: dict[str, Any] | None  # tsa, gen_time, serial of the bundle's token
    timestamp_note: str  # why there is no token, or ""
    warnings: list[str] = field(default_factory=list)


def build_exhibits(
    settings: Settings,
    refs: list[str],
    output: Path,
    *,
    case: str,
    prefix: str = "K",
    start: int = 1,
    lang: str = "de",
    progress: Progress = NO_PROGRESS,
) -> ExhibitBuild:
    """Build an exhibit bundle (a folder, or a ``.zip``) of the items ``refs`` (snapshot ids
    or unique prefixes), one exhibit each, numbered ``prefix`` + ``start``, ``start + 1``, …"""
    progress.stage("building exhibits", total=len(refs))
    return _build(
        settings, refs, output, case=case, prefix=prefix, start=start, lang=lang, progress=progress
    )


def build_timeline(
    settings: Settings,
    ref: str,
    output: Path,
    *,
    case: str,
    prefix: str = "K",
    start: int = 1,
    lang: str = "de",
    since: datetime | None = None,
    until: datetime | None = None,
    progress: Progress = NO_PROGRESS,
) -> ExhibitBuild:
    """Build a bundle of one timeline exhibit: the captures of the page ``ref`` names (a URL
    as it was requested), oldest first, optionally only those captured within ``since`` and
    ``until``, with the changes between them (see ``exhibits.timeline``). ``ad:`` and
    ``post:`` references are refused until the records layer exists."""
    from exhibits.timeline import resolve_timeline

    progress.stage("building the timeline exhibit", total=1)
    return _build(
        settings,
        [ref],
        output,
        case=case,
        prefix=prefix,
        start=start,
        lang=lang,
        progress=progress,
        resolve=functools.partial(resolve_timeline, since=since, until=until),
    )


def parse_moment(text: str, *, end_of_day: bool = False) -> datetime:
    """A ``--from``/``--to`` value: RFC 3339 (``2026-03-01T12:00:00+01:00``), or a date
    (``2026-03-01``: midnight UTC, or the day's last moment with ``end_of_day``); a time
    without a zone is UTC."""
    value = text.strip()
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            moment = datetime.combine(day, time.max if end_of_day else time.min, tzinfo=UTC)
        else:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise EvidenceError(
            f"{text!r} is not a time: give 2026-03-01 or 2026-03-01T12:00:00+01:00"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _build(
    settings: Settings,
    refs: list[str],
    output: Path,
    *,
    case: str,
    prefix: str,
    start: int,
    lang: str,
    progress: Progress,
    resolve: Callable[[Session, str], ExhibitItem] | None = None,
) -> ExhibitBuild:
    """Build, timestamp the digest, put the bundle in place, log an export per snapshot."""
    from exhibits.bundle import BundleOptions, BundleStamp, build_bundle, finish_bundle

    if output.exists():
        raise EvidenceError(f"{output} exists: an exhibit bundle is never overwritten")
    options = BundleOptions(case=case, prefix=prefix, start=start, lang=lang)
    options.check()
    evidence = open_evidence(settings)
    config = settings.timestamp_settings()
    pending = build_bundle(
        evidence.objects,
        evidence.index,
        refs,
        output,
        options,
        configured_anchors=config.anchors(),
        on_exhibit=lambda label: progress.advance(item=label),
        **({"resolve": resolve} if resolve is not None else {}),
    )
    stamp: BundleStamp | None = None
    note = ""
    try:
        if not config.enabled:
            note = (
                "no time-stamping authority is configured ([timestamps] tsa_urls): the bundle's "
                "digest is not timestamped"
            )
        else:
            progress.stage("timestamping the bundle")
            from evidence_store.timestamps.service import timestamp_exhibit

            try:
                token = timestamp_exhibit(
                    evidence,
                    pending.digest,
                    config,
                    {"case": case, "bundle": str(output.absolute())},
                )
            except TimestampError as exc:
                note = f"no TSA timestamped the bundle's digest: {exc}"
            else:
                stamp = BundleStamp(
                    reply=token.response_der,
                    chain_pem=_chain_pem(token.info.certificates),
                    tsa_url=token.tsa_url,
                    gen_time=token.gen_time,
                    serial=str(token.serial_number),
                )
        path = finish_bundle(pending, stamp, note)
    except BaseException:
        pending.discard()
        raise
    file_sha256 = None
    size = pending.size
    if path.suffix == ".zip":
        with open(path, "rb") as stream:
            file_sha256 = hashlib.file_digest(stream, "sha256").hexdigest()
        size = path.stat().st_size
    timestamp = (
        {"tsa": stamp.tsa_url, "gen_time": stamp.gen_time.isoformat(), "serial": stamp.serial}
        if stamp
        else None
    )
    warnings = [note] if note else []
    labels = {sid: e.label for e in pending.exhibits for sid in e.snapshots}
    for snapshot_id in dict.fromkeys(pending.snapshots):
        details: dict[str, Any] = {
            "format": "exhibit-bundle",
            "case": case,
            "exhibit": labels[snapshot_id],
            "file": str(path.absolute()),
            "sha256": pending.digest,
            "timestamp": timestamp,
        }
        if file_sha256:
            details["file_sha256"] = file_sha256
        warning = record_access(
            evidence, action="exported", snapshot_id=snapshot_id, details=details
        )
        if warning and warning not in warnings:
            warnings.append(warning)
    return ExhibitBuild(
        path=path,
        digest=pending.digest,
        file_sha256=file_sha256,
        size=size,
        files=pending.files,
        exhibits=[
            {
                "label": e.label,
                "title": e.title,
                "kind": e.kind,
                "url": e.url,
                "captured_at": e.captured_at,
                "captured_until": e.captured_until,
                "snapshots": e.snapshots,
                "pdf": e.pdf,
                "pdf_sha256": e.pdf_sha256,
            }
            for e in pending.exhibits
        ],
        timestamp=timestamp,
        timestamp_note=note,
        warnings=warnings,
    )


def _chain_pem(certificates: tuple[bytes, ...]) -> bytes | None:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    if not certificates:
        return None
    return b"".join(
        x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM) for der in certificates
    )


def verify_bundle(path: Path, *, progress: Progress = NO_PROGRESS) -> Any:
    """Check a bundle (folder or ZIP) offline: no index, no store. Returns a ``BundleCheck``;
    a bundle that cannot be read at all raises ``EvidenceError``."""
    from exhibits.verify import verify_bundle as check

    return check(path, progress=lambda what: progress.advance(item=what))
