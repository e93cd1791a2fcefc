"""Alerts: a message to a webhook and/or by e-mail when a run needs a person.

A run needs a person when it failed, was interrupted or partial, or when a source that yielded
snapshots last time yields none now (an auth wall or a broken source is not silence). Which
triggers alert is a setting (``[alerts] on``, scheduled runs by default). An alert that cannot
be sent is a warning of the run, never its failure.
"""

from __future__ import annotations

import json
import smtplib
import socket
import urllib.request
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from evidence_store.archive import EvidenceStore
from evidence_store.index.models import Run, Source

if TYPE_CHECKING:
    from jobs.config import Settings
    from jobs.crawl import CrawlResult


def alert_reason(evidence: EvidenceStore, result: CrawlResult) -> str | None:
    """Why this run needs a person, or None."""
    if result.status in ("failed", "interrupted", "partial"):
        counts = ", ".join(f"{n} {k}" for k, n in result.counts().items()) or "no items"
        return f"run {result.status}: {counts}"
    if result.snapshots:
        return None
    with evidence.index.session() as session:
        previous = session.scalars(
            select(Run)
            .join(Source, Run.source_id == Source.id)
            .where(Source.name == result.source, Run.id != result.run_id)
            .where(Run.status.in_(("succeeded", "partial")))
            .order_by(Run.started_at.desc())
        ).first()
    if previous is not None and previous.stats.get("snapshots", 0) > 0:
        return (
            f"the source yielded nothing, where its run {previous.id} yielded "
            f"{previous.stats['snapshots']} snapshot(s)"
        )
    return None


def alert_message(result: CrawlResult, reason: str) -> dict[str, Any]:
    return {
        "type": "dsa-evidence/run-alert",
        "source": result.source,
        "run": result.run_id,
        "status": result.status,
        "reason": reason,
        "collection": result.collection,
        "counts": result.counts(),
        "host": socket.gethostname(),
        "failures": [
            {"item": o.url, "outcome": o.outcome, "error": o.error}
            for o in result.items
            if o.outcome != "archived"
        ][:50],
    }


def alert_if_needed(settings: Settings, evidence: EvidenceStore, result: CrawlResult) -> list[str]:
    """Send the configured alerts if the run needs a person; warnings for those not sent."""
    config = settings.alerts
    if config.webhook_url is None and config.smtp_host is None:
        return []
    reason = alert_reason(evidence, result)
    if reason is None:
        return []
    message = alert_message(result, reason)
    warnings = []
    if config.webhook_url is not None:
        try:
            post_webhook(config.webhook_url.get_secret_value(), message, config.timeout)
        except (OSError, ValueError) as exc:
            # The URL itself may hold a token (Slack, Teams): never repeat it.
            warnings.append(f"alert not sent to the webhook: {type(exc).__name__}: {exc}")
    if config.smtp_host is not None:
        try:
            send_mail(config, message)
        except (OSError, smtplib.SMTPException) as exc:
            warnings.append(f"alert not sent by e-mail via {config.smtp_host}: {exc}")
    return warnings


def post_webhook(url: str, message: dict[str, Any], timeout: float) -> None:
    """POST the message as JSON; any answer but 2xx is an error."""
    request = urllib.request.Request(
        url,
        data=json.dumps(message).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "dsa-evidence alerts"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        if not 200 <= response.status < 300:
            raise ValueError(f"the webhook answered HTTP {response.status}")


def send_mail(config: Any, message: dict[str, Any]) -> None:
    """Send the message by SMTP (STARTTLS and login when configured)."""
    mail = EmailMessage()
    mail["Subject"] = f"[dsa-evidence] {message['source']}: run {message['status']}"
    mail["From"] = config.smtp_from
    mail["To"] = ", ".join(config.smtp_to)
    mail.set_content(
        f"{message['reason']}\n\n{json.dumps(message, indent=2, ensure_ascii=False)}\n"
    )
    with smtplib.SMTP(config.smtp_host, config.smtp_port, timeout=config.timeout) as smtp:
        if config.smtp_starttls:
            smtp.starttls()
        if config.smtp_username is not None and config.smtp_password is not None:
            smtp.login(config.smtp_username, config.smtp_password.get_secret_value())
        smtp.send_message(mail)
