"""UTC times, always written as RFC 3339 with milliseconds (``2026-11-28T12:00:00.123Z``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, PlainSerializer


def utc_now() -> datetime:
    """The current time in UTC, truncated to milliseconds so that it round-trips exactly."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def format_rfc3339(value: datetime) -> str:
    """Format an aware datetime as RFC 3339 UTC with milliseconds and a ``Z`` suffix."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: evidence times must carry a time zone")
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 timestamp; it must name its offset (``Z`` or ``+hh:mm``)."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no time zone")
    return value.astimezone(UTC)


def _to_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetime: evidence times must carry a time zone")
    value = value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


UtcDateTime = Annotated[
    datetime,
    AfterValidator(_to_utc),
    PlainSerializer(format_rfc3339, return_type=str, when_used="json"),
]
"""An aware datetime normalised to UTC and milliseconds; serialised as RFC 3339 in JSON."""
