"""From a finished page capture to a `Capture` the evidence store can archive.

Every exchange becomes a request and a response record in one WARC file per page; resources
(screenshot, PDF, DOM) become resource records and artifacts of their own; a metadata record
(under ``urn:metadata:``, so replay is not disturbed) and a metadata artifact carry the
capture's facts. Secrets are redacted before anything is written.
"""

from __future__ import annotations

import json
import socket
import uuid
from pathlib import Path
from typing import Any

from crawlers.items import PageCapture
from crawlers.redaction import Redactor
from crawlers.warc import CaptureWarc
from evidence_store.manifest import software_versions
from schemas import Capture, CaptureArtifact, format_rfc3339

WARC_MEDIA_TYPE = "application/warc"


def _transfer_headers(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    # Scrapy hands over bodies with the chunked transfer coding already removed; a WARC reader
    # would try to de-chunk them again, so the header is kept under another name.
    return [
        ("X-Archive-Orig-Transfer-Encoding", v) if k.lower() == "transfer-encoding" else (k, v)
        for k, v in headers
    ]


def capture_metadata(
    page: PageCapture, redactor: Redactor, user_agent: str | None
) -> dict[str, Any]:
    """The facts of a capture, redacted: what an expert asks about besides the bytes."""
    chain = [
        {
            "url": redactor.redact_url(ex.url)[0],
            "status": ex.status,
            "location": redactor.redact_url(ex.header("Location") or "")[0] or None,
        }
        for ex in page.exchanges
    ]
    last = page.exchanges[-1] if page.exchanges else None
    duration = (page.finished_at - page.started_at).total_seconds() * 1000
    data: dict[str, Any] = {
        "requested_url": redactor.redact_url(page.requested_url)[0],
        "final_url": redactor.redact_url(page.final_url)[0] if page.final_url else None,
        "mode": page.mode,
        "outcome": page.outcome,
        "status": page.status,
        "error": page.error,
        "redirect_chain": chain,
        "timings": {
            "started_at": format_rfc3339(page.started_at),
            "finished_at": format_rfc3339(page.finished_at),
            "duration_ms": round(duration, 3),
        },
        "server_ip": last.ip if last else None,
        "protocol": last.protocol if last else None,
        "tls": {"certificate_chain_pem": [last.certificate_pem]}
        if last and last.certificate_pem
        else None,
        "user_agent": user_agent,
        "capture_host": socket.gethostname(),
    }
    data.update(page.details)
    return data


def build_capture(
    page: PageCapture,
    *,
    workdir: Path,
    redactor: Redactor,
    collection: str,
    note: str | None,
    run_id: str | None,
    operator: str | None,
    source: str | None = None,
    user_agent: str | None,
) -> Capture:
    """Write the page's WARC into ``workdir`` and describe every artifact for archive()."""
    warc_path = workdir / f"capture-{uuid.uuid4().hex}.warc.gz"
    metadata = capture_metadata(page, redactor, user_agent)
    with CaptureWarc(
        warc_path,
        software=software_versions(),
        operator=operator,
        host=socket.gethostname(),
        user_agent=user_agent,
        redactor=redactor,
    ) as warc:
        first_response: str | None = None
        for ex in page.exchanges:
            request_id = warc.request(
                ex.url, ex.method, ex.request_headers, ex.request_body, date=ex.sent_at
            )
            response_id = warc.response(
                ex.url,
                ex.status,
                ex.reason,
                _transfer_headers(ex.response_headers),
                ex.body,
                date=ex.received_at,
                ip=ex.ip,
                concurrent_to=request_id,
                truncated=ex.notes.get("truncated"),
            )
            first_response = first_response or response_id
        for res in page.resources:
            warc.resource(
                f"urn:{res.role}:{redactor.redact_url(page.requested_url)[0]}",
                res.media_type,
                res.data,
                date=page.finished_at,
                concurrent_to=first_response,
                redacted=res.redacted,
            )
        warc.metadata(
            f"urn:metadata:{redactor.redact_url(page.requested_url)[0]}",
            metadata,
            date=page.finished_at,
            concurrent_to=first_response,
        )
    metadata, names = redactor.redact_data(metadata)
    metadata["redacted"] = sorted(set(warc.redacted) | set(names))
    artifacts = [
        CaptureArtifact(
            role="warc", name="capture.warc.gz", media_type=WARC_MEDIA_TYPE, path=warc_path
        ),
        *(
            CaptureArtifact(role=r.role, name=r.name, media_type=r.media_type, data=r.data)
            for r in page.resources
        ),
        CaptureArtifact(
            role="metadata",
            name="capture-metadata.json",
            media_type="application/json",
            data=json.dumps(metadata, indent=2, ensure_ascii=False, sort_keys=True).encode(),
        ),
    ]
    return Capture(
        collection=collection,
        kind=f"capture-{page.mode}",
        captured_at=page.started_at,
        source_url=metadata["requested_url"],
        run_id=run_id,
        source=source,
        note=note,
        metadata=metadata,
        artifacts=artifacts,
    )
