"""`dsa-sor`: the DSA Transparency Database's daily dumps of statements of reasons.

For each day and platform asked for, the dump zip (``sor-{platform}-{day}-{variant}.zip``) is
streamed to disk with the SHA-1 published beside it (``.zip.sha1``), checked against it, and
archived as it was served: one snapshot holding the zip and the checksum file. A dump whose
digest differs from the published one is not archived (it would be evidence of a broken
transfer, not of what the Commission published) and the run says so. ``records.sor.ingest``
then streams each archived dump into Parquet for DuckDB.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Literal

from pydantic import Field, field_validator

from crawlers.download import Client, DownloadError
from crawlers.urls import AddressPolicy
from schemas import (
    Capture,
    CaptureArtifact,
    CaptureOutcome,
    CollectContext,
    SourceSettings,
    SourceSpec,
)

BASE_URL = "https://transparency.dsa.ec.europa.eu"
DOWNLOAD_PATH = "/explore-data/download/"
SHA1_LINE = re.compile(r"^([0-9a-fA-F]{40})\s+\*?(\S+)\s*$")


def platform_slug(name: str) -> str:
    """The platform as the dump file names spell it: ``TikTok`` → ``tiktok``,
    ``Google Shopping`` → ``google-shopping``; ``global`` is every platform."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.strip().lower()).strip("-")
    if not slug:
        raise ValueError(f"invalid platform {name!r}")
    return slug


def dump_filename(platform: str, day: date, variant: str) -> str:
    """``sor-{platform}-{YYYY-MM-DD}-{full|light}.zip``."""
    return f"sor-{platform_slug(platform)}-{day.isoformat()}-{variant}.zip"


class DsaSorSettings(SourceSettings):
    base_url: str = Field(
        default=BASE_URL,
        description="the Transparency Database (dumps under /explore-data/download/)",
    )
    dates: list[date] = Field(
        default_factory=list,
        description="days whose dumps to fetch, YYYY-MM-DD (default: the day before yesterday, "
        "UTC, the newest day the Commission has surely published)",
    )
    platforms: list[str] = Field(
        default_factory=lambda: ["global"],
        description='"global" (every platform in one dump) or platform names (TikTok, X)',
    )
    variant: Literal["full", "light"] = Field(
        default="full", description="full, or light (without the free-text fields)"
    )
    timeout: float = Field(default=120.0, gt=0, le=3600, description="network timeout, seconds")
    attempts: int = Field(default=4, ge=1, le=20, description="tries of a failing download")

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"invalid base_url {value!r}: give http(s)://host")
        return value.rstrip("/")

    @field_validator("platforms")
    @classmethod
    def _platforms(cls, value: list[str]) -> list[str]:
        slugs = [platform_slug(name) for name in value]
        if not slugs:
            raise ValueError("give at least one platform (or global)")
        return list(dict.fromkeys(slugs))

    def days(self, today: date | None = None) -> list[date]:
        """The days to fetch (the configured ones, or the default)."""
        if self.dates:
            return list(dict.fromkeys(self.dates))
        return [(today or datetime.now(UTC).date()) - timedelta(days=2)]


def parse_sha1_file(body: bytes, filename: str) -> str:
    """The digest of a ``sha1sum`` line (``<sha1>  <filename>``) naming ``filename``."""
    text = body.decode("utf-8", "replace").strip()
    match = SHA1_LINE.match(text.splitlines()[0] if text else "")
    if match is None:
        raise DownloadError("invalid-checksum-file", f"{filename}.sha1 is not a sha1sum line")
    if match.group(2) != filename:
        raise DownloadError(
            "invalid-checksum-file",
            f"{filename}.sha1 names another file ({match.group(2)})",
        )
    return match.group(1).lower()


def collect(
    settings: DsaSorSettings, context: CollectContext
) -> Iterator[Capture | CaptureOutcome]:
    """One capture per dump (zip and checksum), or an outcome saying why there is none."""
    client = Client(
        policy=AddressPolicy(allow_private=context.allow_private),
        timeout=settings.timeout,
        attempts=settings.attempts,
    )
    for day in settings.days():
        for platform in settings.platforms:
            filename = dump_filename(platform, day, settings.variant)
            url = f"{settings.base_url}{DOWNLOAD_PATH}{filename}"
            try:
                yield _fetch_dump(client, context, url, filename, day, platform, settings.variant)
            except DownloadError as exc:
                yield CaptureOutcome(url=url, outcome=exc.outcome, mode="dump", error=str(exc))


def _fetch_dump(
    client: Client,
    context: CollectContext,
    url: str,
    filename: str,
    day: date,
    platform: str,
    variant: str,
) -> Capture:
    checksum = client.get(f"{url}.sha1")
    assert checksum.body is not None
    published = parse_sha1_file(checksum.body, filename)
    dest = context.workdir / filename
    dump = client.download(url, dest)
    if dump.sha1 != published:
        dest.unlink(missing_ok=True)
        raise DownloadError(
            "checksum-mismatch",
            f"{filename}: SHA-1 {dump.sha1} of the {dump.size} bytes received is not the "
            f"published {published}: not archived",
        )
    return Capture(
        collection=context.collection,
        kind="dump",
        source=context.source,
        source_url=dump.final_url,
        note=context.note,
        run_id=context.run_id,
        metadata={
            "dsa_sor": {
                "day": day.isoformat(),
                "platform": platform,
                "variant": variant,
                "filename": filename,
                "sha1": published,
                "sha1_verified": True,
            },
            "http": {
                "url": url,
                "status": dump.status,
                "headers": dump.headers,
                "server_ip": dump.server_ip,
                "redirects": dump.redirects,
                "checksum_url": checksum.final_url,
            },
        },
        artifacts=[
            CaptureArtifact(
                role="dump",
                name=filename,
                media_type="application/zip",
                path=dest,
                sha256=dump.sha256,
            ),
            CaptureArtifact(
                role="checksum",
                name=f"{filename}.sha1",
                media_type="text/plain",
                data=checksum.body,
            ),
        ],
    )


SOURCE = SourceSpec(
    name="dsa-sor",
    kind="dump",
    description="DSA Transparency Database: daily dumps of statements of reasons, "
    "checked against their SHA-1 and ingested into Parquet",
    settings=DsaSorSettings,
    collection="dsa-sor",
    timestamp_mode="merkle",
    collect=collect,
    records="records.sor.ingest:parse_run",
)
