"""Timestamp upkeep: retry what no TSA stamped, renew old tokens, archive the TSAs' CRLs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from evidence_store.errors import EvidenceError
from jobs.config import Settings
from jobs.context import open_evidence
from jobs.progress import NO_PROGRESS, Progress


def require_tsa(config: Any) -> None:
    if not config.enabled:
        raise EvidenceError(
            "no TSA configured: set [timestamps] tsa_urls (EVIDENCE_TIMESTAMPS__TSA_URLS)"
        )


@dataclass
class Pending:
    snapshots: list[str]
    trees: list[int]


def pending(settings: Settings) -> Pending:
    """Snapshots without a timestamp, and Merkle trees awaiting a token."""
    from evidence_store.timestamps.service import untimestamped, untimestamped_trees

    evidence = open_evidence(settings)
    return Pending(untimestamped(evidence), untimestamped_trees(evidence))


def retry(settings: Settings, *, progress: Progress = NO_PROGRESS) -> Any:
    """Ask the TSAs again for every untimestamped Merkle root and snapshot (a TimestampRun)."""
    from evidence_store.timestamps.service import retry as retry_pending
    from evidence_store.timestamps.service import untimestamped

    config = settings.timestamp_settings()
    require_tsa(config)
    evidence = open_evidence(settings)
    progress.stage("timestamping", total=len(untimestamped(evidence)))
    return retry_pending(evidence, config, lambda n: progress.advance(n))


def renew(
    settings: Settings,
    *,
    expiring_within: timedelta | None,
    progress: Progress = NO_PROGRESS,
) -> Any:
    """Timestamp tokens again before their TSA certificates end (None: every current token)."""
    from evidence_store.timestamps.service import renew_timestamps

    config = settings.timestamp_settings()
    require_tsa(config)
    evidence = open_evidence(settings)
    progress.stage("renewing timestamps")
    return renew_timestamps(
        evidence,
        config,
        expiring_within=expiring_within,
        progress=lambda n: progress.advance(n),
        on_total=progress.total,
    )


def archive_crls(settings: Settings, *, progress: Progress = NO_PROGRESS) -> Any:
    """Fetch and archive the CRLs named in the TSA certificates of the stored tokens."""
    from evidence_store.timestamps.revocation import archive_crls as fetch_and_archive

    config = settings.timestamp_settings()
    evidence = open_evidence(settings)
    progress.stage("fetching revocation lists")
    return fetch_and_archive(evidence, anchors=config.anchors(), timeout=config.timeout)
