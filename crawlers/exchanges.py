"""One HTTP exchange as it crossed the network: the unit a capture WARC is made of."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from http import HTTPStatus
from typing import Any, BinaryIO


def reason_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


@dataclass
class Exchange:
    """A request and the response to it, bytes as transferred (Content-Encoding intact)."""

    method: str
    url: str
    request_headers: list[tuple[str, str]]
    request_body: bytes
    sent_at: datetime
    status: int
    reason: str
    response_headers: list[tuple[str, str]]
    # Bytes, or an open file for a body too large to hold (a dump, a bundle): the WARC
    # writer streams it.
    body: bytes | BinaryIO
    received_at: datetime
    ip: str | None = None
    protocol: str | None = None
    certificate_pem: str | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        """The first response header of that name (case-insensitive)."""
        lowered = name.lower()
        return next((v for k, v in self.response_headers if k.lower() == lowered), None)
