"""Timestamping archived snapshots and checking their tokens.

After a snapshot is committed, its id (the manifest's SHA-256) is sent to the configured TSAs
in order. The reply (``.tsr``) is stored as an object and indexed; when no TSA answers, the
snapshot stays untimestamped — reported by the CLI, listed by `evidence timestamp retry`,
logged in the custody log — and a later retry timestamps it. Nothing is dropped silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from evidence_store import custody
from evidence_store.archive import EvidenceStore, put_verified
from evidence_store.index import Index
from evidence_store.index.models import Snapshot, TimestampRecord
from evidence_store.index.models.timestamp import SUBJECT_SNAPSHOT
from evidence_store.objects import ObjectStore
from evidence_store.timestamps.client import request_timestamp
from evidence_store.timestamps.verify import TimestampError, verify_token
from schemas import utc_now

REPLY_MEDIA_TYPE = "application/timestamp-reply"


@dataclass(frozen=True)
class TimestampSettings:
    """Which TSAs to ask, how long to wait, and which CAs to trust for their tokens."""

    tsa_urls: tuple[str, ...] = ()
    trust_anchors: tuple[Path, ...] = ()
    timeout: float = 10.0

    @property
    def enabled(self) -> bool:
        return bool(self.tsa_urls)

    def anchors(self) -> list[bytes]:
        return [path.read_bytes() for path in self.trust_anchors]


@dataclass
class TimestampRun:
    """What one timestamping pass did."""

    timestamped: list[tuple[str, str, str]] = field(default_factory=list)  # id, time, tsa
    failed: list[tuple[str, str]] = field(default_factory=list)  # id, reason


def untimestamped(evidence: EvidenceStore) -> list[str]:
    """Ids of snapshots that no TSA has timestamped yet, oldest first."""
    with evidence.index.session() as session:
        stamped = select(TimestampRecord.snapshot_id)
        query = (
            select(Snapshot.id).where(Snapshot.id.not_in(stamped)).order_by(Snapshot.archived_at)
        )
        return list(session.scalars(query))


def timestamp_snapshots(
    evidence: EvidenceStore, snapshot_ids: Sequence[str], config: TimestampSettings
) -> TimestampRun:
    """Ask the TSAs for a token over each snapshot id; store and index every token granted."""
    run = TimestampRun()
    anchors = config.anchors() or None
    for snapshot_id in snapshot_ids:
        try:
            token = request_timestamp(
                bytes.fromhex(snapshot_id),
                config.tsa_urls,
                timeout=config.timeout,
                trust_anchors=anchors,
            )
        except TimestampError as exc:
            run.failed.append((snapshot_id, str(exc)))
            with evidence.index.writing(custody.CUSTODY_LOCK) as session:
                custody.record(
                    session,
                    action="timestamp-failed",
                    actor=evidence.actor,
                    snapshot_id=snapshot_id,
                    details={"failures": [list(f) for f in exc.failures]},
                )
            continue
        stored = put_verified(evidence.objects, token.response_der, REPLY_MEDIA_TYPE)
        evidence.objects.flush()  # durable before the row that names it
        with evidence.index.writing(custody.CUSTODY_LOCK) as session:
            session.add(
                TimestampRecord(
                    subject=SUBJECT_SNAPSHOT,
                    imprint=snapshot_id,
                    snapshot_id=snapshot_id,
                    tsa_url=token.tsa_url,
                    gen_time=token.gen_time,
                    serial_number=str(token.serial_number),
                    reply_sha256=stored.sha256,
                    reply_size=stored.size,
                    created_at=utc_now(),
                )
            )
            session.flush()
            custody.record(
                session,
                action="timestamped",
                actor=evidence.actor,
                snapshot_id=snapshot_id,
                details={
                    "tsa": token.tsa_url,
                    "gen_time": token.gen_time.isoformat(),
                    "reply_sha256": stored.sha256,
                },
            )
        run.timestamped.append((snapshot_id, token.gen_time.isoformat(), token.tsa_url))
    return run


def check_tokens(
    objects: ObjectStore, index: Index, snapshot_ids: Sequence[str], anchors: Sequence[bytes]
) -> tuple[int, list[tuple[str, str]]]:
    """Verify every stored token of these snapshots: (tokens verified, [(snapshot, problem)])."""
    problems: list[tuple[str, str]] = []
    verified = 0
    with index.session() as session:
        records = list(
            session.scalars(
                select(TimestampRecord).where(TimestampRecord.snapshot_id.in_(list(snapshot_ids)))
            )
        )
    for record in records:
        try:
            reply = objects.get(record.reply_sha256)
        except Exception as exc:  # missing or unreadable: reported like any other problem
            problems.append((record.snapshot_id, f"timestamp reply unreadable: {exc}"))
            continue
        if not anchors:
            problems.append(
                (record.snapshot_id, "no TSA trust anchors configured: token not checked")
            )
            continue
        try:
            result = verify_token(reply, bytes.fromhex(record.snapshot_id), anchors)
        except TimestampError as exc:
            problems.append((record.snapshot_id, f"timestamp from {record.tsa_url}: {exc}"))
            continue
        if result.info.gen_time != record.gen_time:
            problems.append((record.snapshot_id, "timestamp time differs between token and index"))
            continue
        verified += 1
    return verified, problems
