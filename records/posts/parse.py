"""The records step of the post sources: archived captures of post pages → posts in the index.

A post source archives each post page (browser capture: WARC, screenshot, PDF, DOM) with the
platform's own data and the media as artifacts; its capture metadata carries a ``post`` block::

    {"platform": "tiktok", "kind": "post", "post_id": "7345…", "watched_by": "account:@name"}
    {"platform": "tiktok", "kind": "listing", "watched_by": "hashtag:wahl"}   # not parsed

For each ``kind`` "post" snapshot the platform's ``parse(capture)`` makes a ``PostRecord`` (or
None when the capture holds nothing it can read: the outcome "unparseable"), indexed by
``records.posts.store``.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from pydantic import ValidationError
from warcio.archiveiterator import ArchiveIterator

from evidence_store.archive import EvidenceStore
from evidence_store.manifest import parse_manifest
from records.posts.store import Provenance, record_post
from schemas import CaptureOutcome, CollectContext, Manifest, ParseResult

log = logging.getLogger(__name__)
PLATFORMS = ("tiktok", "x")


@dataclass(frozen=True)
class Response:
    url: str
    status: int
    media_type: str | None
    body: bytes
    record_id: str | None


@dataclass
class PostCapture:
    """One archived capture of a post page, as a platform parser reads it."""

    evidence: EvidenceStore
    snapshot_id: str
    manifest: Manifest
    post: dict[str, Any] = field(default_factory=dict)

    @property
    def metadata(self) -> dict[str, Any]:
        """The snapshot's capture metadata (final URL, status, the ``post`` block, media)."""
        return self.manifest.capture

    def artifact(self, role: str, name: str | None = None) -> bytes | None:
        """The bytes of the first artifact with this role (and name), or None."""
        for entry in self.manifest.artifacts:
            if entry.role == role and (name is None or entry.name == name):
                return self.evidence.objects.get(entry.sha256)
        return None

    def artifacts(self, role: str) -> list[Any]:
        """The manifest entries (role, name, media type, size, sha256) with this role."""
        return [entry for entry in self.manifest.artifacts if entry.role == role]

    @cached_property
    def responses(self) -> list[Response]:
        """Every response recorded in the capture's WARC (the page and what it loaded)."""
        found: list[Response] = []
        for entry in self.manifest.artifacts:
            if entry.role != "warc":
                continue
            with self.evidence.objects.open(entry.sha256) as stream:
                for record in ArchiveIterator(stream):
                    if record.rec_type != "response" or record.http_headers is None:
                        continue
                    found.append(
                        Response(
                            url=record.rec_headers.get_header("WARC-Target-URI") or "",
                            status=int(record.http_headers.get_statuscode() or 0),
                            media_type=record.http_headers.get_header("Content-Type"),
                            body=record.content_stream().read(),
                            record_id=record.rec_headers.get_header("WARC-Record-ID"),
                        )
                    )
        return found


def parser(platform: str) -> Any:
    """``records.posts.platforms.<platform>.parse``."""
    if platform not in PLATFORMS:
        raise ValueError(f"unknown post platform {platform!r}")
    return importlib.import_module(f"records.posts.platforms.{platform}").parse


def parse_run(
    evidence: EvidenceStore, settings: Any, context: CollectContext, snapshot_ids: list[str]
) -> ParseResult:
    """Index the posts the run captured; count new posts, versions and status changes."""
    result = ParseResult()
    counts = {"posts": 0, "new": 0, "new_versions": 0, "status_changes": 0}
    changes: list[dict[str, str]] = []
    for snapshot_id in snapshot_ids:
        manifest = parse_manifest(evidence.objects.get(snapshot_id))
        post = manifest.capture.get("post")
        if not isinstance(post, dict) or post.get("kind") != "post":
            continue
        capture = PostCapture(evidence, snapshot_id, manifest, post)
        try:
            record = parser(post["platform"])(capture)
            if record is None:
                raise ValueError("the capture holds no post data the parser can read")
        except (ValueError, KeyError, TypeError, ValidationError) as exc:
            log.warning("snapshot %s: cannot parse the post: %s", snapshot_id, exc)
            result.outcomes.append(
                CaptureOutcome(
                    url=manifest.source_url or snapshot_id,
                    outcome="unparseable",
                    mode="parse",
                    error=f"snapshot {snapshot_id[:16]}: {type(exc).__name__}: {exc}"[:500],
                )
            )
            continue
        with evidence.index.writing(f"posts:{record.platform}") as session:
            change = record_post(
                session,
                record,
                Provenance(snapshot_id, context.run_id, manifest.captured_at),
                watched_by=post.get("watched_by"),
            )
        counts["posts"] += 1
        counts["new"] += change.new_post
        counts["new_versions"] += change.new_version
        if change.status_to is not None:
            counts["status_changes"] += 1
            changes.append(
                {
                    "post": f"{record.platform}:{record.post_id}",
                    "from": change.status_from or "",
                    "to": change.status_to,
                }
            )
    result.records = counts["posts"]
    result.stats["posts"] = counts | {"changes": changes[:100]}
    return result
