"""The records step of the ad sources: archived responses → normalised ads in the index.

Every ad source archives each API page, export or bundle as a snapshot before anything is
parsed; its capture metadata carries an ``ads`` block saying what the snapshot is::

    {"platform": "meta", "kind": "page", "query_key": "<sha256>", "page": 3, "pages": 3}
    {"platform": "meta", "kind": "creative", "ad_id": "1234"}         # the rendered creative

``kind`` "page" (an API answer, in the WARC), "file" (an export or bundle artifact) or
"creative". The last page of a query says how many pages it had (``pages``): only a query
whose every page was archived and parsed in this run may mark the ads it no longer returned
as unseen, so that a page that failed never reads as a wave of removals.
"""

from __future__ import annotations

import gc
import importlib
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from warcio.archiveiterator import ArchiveIterator

from evidence_store.archive import EvidenceStore
from evidence_store.manifest import parse_manifest
from records.ads.store import Provenance, RecordStats, link_creative, mark_unseen, record_ads
from schemas import CaptureOutcome, CollectContext, ParseResult
from schemas.ad import AdRecord
from schemas.time import utc_now

log = logging.getLogger(__name__)
PLATFORMS = ("meta", "tiktok", "google", "x")


@dataclass(frozen=True)
class Payload:
    """One archived answer to parse: a WARC response's body, or an artifact's bytes."""

    snapshot_id: str
    record_id: str | None  # WARC-Record-ID of the response (None: an artifact)
    url: str | None
    status: int | None
    media_type: str | None
    body: bytes
    name: str | None  # the artifact's or the file's name
    ads: dict[str, Any] = field(default_factory=dict)  # the snapshot's ``ads`` block


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off for a bounded, cycle-free piece of work.

    A page of ads is some 300,000 containers (the parsed JSON, the records) that all live until
    the page is done: CPython's collector, counting them as survivors, runs a full collection
    about once a page, which cost more than the normalising itself (a 5,000-ad profile: 11 full
    collections, 2.4 s of 4.3 s). Nothing here makes reference cycles, so nothing is left for
    the collector to find; refcounting frees the temporaries as before. Only a collector that
    was on is turned back on (a caller that turned it off keeps it off)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def normaliser(platform: str) -> Any:
    """``records.ads.platforms.<platform>.normalise``."""
    if platform not in PLATFORMS:
        raise ValueError(f"unknown ad platform {platform!r}")
    return importlib.import_module(f"records.ads.platforms.{platform}").normalise


def payloads(evidence: EvidenceStore, snapshot_id: str) -> Iterator[Payload]:
    """The answers archived in a snapshot of an ad source (none if it is not one)."""
    manifest = parse_manifest(evidence.objects.get(snapshot_id))
    ads = manifest.capture.get("ads")
    if not isinstance(ads, dict):
        return
    if ads.get("kind", "page") == "page":
        for artifact in manifest.artifacts:
            if artifact.role != "warc":
                continue
            with evidence.objects.open(artifact.sha256) as stream:
                for record in ArchiveIterator(stream):
                    if record.rec_type != "response" or record.http_headers is None:
                        continue
                    status = int(record.http_headers.get_statuscode() or 0)
                    if not 200 <= status < 300:
                        continue
                    yield Payload(
                        snapshot_id=snapshot_id,
                        record_id=record.rec_headers.get_header("WARC-Record-ID"),
                        url=record.rec_headers.get_header("WARC-Target-URI"),
                        status=status,
                        media_type=record.http_headers.get_header("Content-Type"),
                        body=record.content_stream().read(),
                        name=None,
                        ads=ads,
                    )
    elif ads.get("kind") == "file":
        roles = set(ads.get("roles") or ["export", "bundle", "original"])
        for artifact in manifest.artifacts:
            if artifact.role in roles:
                yield Payload(
                    snapshot_id=snapshot_id,
                    record_id=None,
                    url=manifest.source_url,
                    status=None,
                    media_type=artifact.media_type,
                    body=evidence.objects.get(artifact.sha256),
                    name=artifact.name,
                    ads=ads,
                )


def parse_run(
    evidence: EvidenceStore, settings: Any, context: CollectContext, snapshot_ids: list[str]
) -> ParseResult:
    """Index the ads in the run's snapshots; then removals for the queries fetched whole."""
    result = ParseResult()
    totals = RecordStats()
    pages: dict[str, set[int]] = {}
    expected: dict[str, int] = {}
    broken: set[str] = set()
    creatives: list[tuple[str, str, str]] = []
    for snapshot_id in snapshot_ids:
        manifest = parse_manifest(evidence.objects.get(snapshot_id))
        ads = manifest.capture.get("ads")
        if not isinstance(ads, dict):
            continue
        key = ads.get("query_key")
        if ads.get("kind") == "creative":
            creatives.append((ads["platform"], str(ads["ad_id"]), snapshot_id))
            continue
        try:
            normalise = normaliser(ads["platform"])
            parsed = [
                (payload, list(normalise(payload))) for payload in payloads(evidence, snapshot_id)
            ]
            if not parsed:
                raise ValueError("no successful answer in the snapshot")
            # One transaction per snapshot (its pages and details together), not per answer.
            with evidence.index.writing(f"ads:{ads['platform']}") as session:
                for payload, records in parsed:
                    totals.add(
                        record_ads(
                            session,
                            records,
                            Provenance(
                                snapshot_id,
                                payload.record_id,
                                context.run_id,
                                manifest.captured_at,
                            ),
                            query_key=key,
                        )
                    )
        except (ValueError, KeyError, TypeError, ValidationError) as exc:
            if key:
                broken.add(key)
            log.warning("snapshot %s: cannot parse ads: %s", snapshot_id, exc)
            result.outcomes.append(
                CaptureOutcome(
                    url=manifest.source_url or snapshot_id,
                    outcome="unparseable",
                    mode="parse",
                    error=f"snapshot {snapshot_id[:16]}: {type(exc).__name__}: {exc}"[:500],
                )
            )
            continue
        if key:
            pages.setdefault(key, set()).add(int(ads.get("page") or 1))
            if ads.get("pages") is not None:
                expected[key] = int(ads["pages"])
    removed = 0
    now = utc_now()
    for key, count in expected.items():
        if key in broken or pages.get(key) != set(range(1, count + 1)):
            continue  # not every page of the query was read in this run: no removals
        with evidence.index.writing("ads:removals") as session:
            removed += len(mark_unseen(session, key, context.run_id, now))
    linked = 0
    for platform, ad_id, snapshot_id in creatives:
        with evidence.index.writing(f"ads:{platform}") as session:
            linked += link_creative(session, platform, ad_id, snapshot_id)
    result.records = totals.ads
    result.stats["ads"] = {
        "seen": totals.ads,
        "new": totals.new_ads,
        "new_versions": totals.new_versions,
        "unchanged": totals.unchanged,
        "reappeared": totals.reappeared,
        "unseen": removed,
        "creatives": linked,
        "by_platform": totals.by_platform,
    }
    return result


def normalise_all(platform: str, payloads_: Iterable[Payload]) -> list[AdRecord]:
    """Every ad in ``payloads_`` (tests and benchmarks: no index involved)."""
    normalise = normaliser(platform)
    return [ad for payload in payloads_ for ad in normalise(payload)]
