"""Verification from the bytes, with a written report for an exhibit; logged in custody.

Tokens are checked against the trust anchors the verifier supplies ([timestamps]
trust_anchors) or, where none are supplied, against the anchors archived with the tokens;
the report says which. What could not be checked is listed, never summarised as OK.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evidence_store.errors import EvidenceError
from evidence_store.queries import resolve_snapshot
from evidence_store.verify import REQUIREMENTS, VerifyReport
from evidence_store.verify import verify as verify_snapshots
from jobs.access import record_access
from jobs.config import Settings
from jobs.context import open_evidence
from jobs.progress import NO_PROGRESS, Progress
from schemas import format_rfc3339


@dataclass
class Verification:
    report: VerifyReport
    scope: str | list[str]
    report_file: Path | None = None
    report_sha256: str | None = None
    warnings: list[str] = field(default_factory=list)


def supplied_anchors(settings: Settings) -> list[bytes] | None:
    """The trust anchors the verifier supplies, or None: use those archived with the tokens."""
    config = settings.timestamp_settings()
    return config.anchors() if config.trust_anchors else None


def verify(
    settings: Settings,
    refs: list[str] | None = None,
    *,
    workers: int | None = None,
    report_path: Path | None = None,
    report_format: str | None = None,
    require: frozenset[str] = frozenset(),
    progress: Progress = NO_PROGRESS,
) -> Verification:
    """Verify the snapshots ``refs`` (ids or prefixes), or everything (with the custody log,
    the index against the log and the store) when ``refs`` is None."""
    if report_format not in (None, "text", "json"):
        raise EvidenceError(f"report format {report_format!r}: use text or json")
    if unknown := set(require) - REQUIREMENTS:
        allowed = ", ".join(sorted(REQUIREMENTS))
        raise EvidenceError(f"cannot require {', '.join(sorted(unknown))}: choose from {allowed}")
    if report_path is not None and report_path.exists():
        raise EvidenceError(f"{report_path} exists: a report is never overwritten")
    if report_path is not None and not report_path.absolute().parent.is_dir():
        raise EvidenceError(f"cannot write the report: no folder {report_path.absolute().parent}")
    evidence = open_evidence(settings)
    everything = refs is None
    ids = None
    if refs is not None:
        with evidence.index.session() as session:
            ids = [resolve_snapshot(session, ref).id for ref in refs]
    config = settings.timestamp_settings()
    progress.stage("verifying", unit="bytes")
    report = verify_snapshots(
        evidence.objects,
        evidence.index,
        ids,
        workers=workers or settings.verify_workers,
        progress=lambda n: progress.advance(n),
        on_total=progress.total,
        timestamp_anchors=supplied_anchors(settings),
        timestamp_crls=config.crl_data(),
        custody_log=everything,
        require=frozenset(require),
    )
    result = Verification(report=report, scope="all" if everything else list(ids or []))
    details: dict[str, Any] = {
        "scope": result.scope,
        "snapshots": report.snapshots,
        "bytes": report.bytes_hashed,
        "problems": len(report.problems),
        "unchecked": len(report.unchecked),
        "require": sorted(require),
    }
    if report_path is not None:
        from exhibits.report import ReportContext, write_report

        context = ReportContext(
            actor=settings.actor,
            database=evidence.index.describe(),
            object_store=evidence.objects.url,
            scope="all snapshots" if everything else ", ".join(ids or []),
            trust_anchors=config.trust_anchors,
            crls=config.crls,
            archived_crls=_archived_crl_lines(evidence),
        )
        result.report_sha256 = write_report(report, context, report_path, report_format)
        result.report_file = report_path.absolute()
        details["report"] = {"file": str(result.report_file), "sha256": result.report_sha256}
    if warning := record_access(evidence, action="verified", details=details):
        result.warnings.append(warning)
    return result


def _archived_crl_lines(evidence: Any) -> tuple[str, ...]:
    from evidence_store.timestamps.revocation import newest_crls

    with evidence.index.session() as session:
        return tuple(
            f"{row.issuer}, thisUpdate {format_rfc3339(row.this_update)}, sha256 {row.crl_sha256}"
            for row in newest_crls(session)
        )
