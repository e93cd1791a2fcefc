"""``evidence verify``: recompute everything from the bytes and compare it with the index.

Checks, per snapshot: the manifest object hashes to the snapshot id, parses, is canonical and
agrees with the index rows; its signature verifies under a key the index trusts; every artifact
re-hashes to its digest and size. Per collection: the chain links each manifest to the one
before, without gaps, up to the recorded head. Hashing runs in a thread pool (hashlib releases
the GIL), largest objects first, and each distinct object is hashed once.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from evidence_store.errors import EvidenceError, ObjectNotFound
from evidence_store.index import Index
from evidence_store.index.models import Collection, SigningKey, Snapshot
from evidence_store.manifest import ManifestError, parse_manifest
from evidence_store.objects import ObjectStore
from evidence_store.signing import verify_signature
from schemas import Manifest, format_rfc3339, utc_now

ProgressCallback = Callable[[int], None]


@dataclass(frozen=True)
class Problem:
    """One thing that failed, precisely enough for a report: where, what, expected, actual."""

    kind: str
    message: str
    snapshot: str | None = None
    artifact: str | None = None
    expected: str | None = None
    actual: str | None = None

    def __str__(self) -> str:
        where = f"snapshot {self.snapshot}" if self.snapshot else "index"
        if self.artifact:
            where += f" artifact {self.artifact}"
        detail = ""
        if self.expected is not None or self.actual is not None:
            detail = f" (expected {self.expected}, actual {self.actual})"
        return f"{where}: {self.kind}: {self.message}{detail}"


@dataclass
class VerifyReport:
    """What a verification checked and what it found."""

    started_at: str
    finished_at: str = ""
    snapshots: int = 0
    objects: int = 0
    bytes_hashed: int = 0
    collections: int = 0
    timestamps: int = 0  # tokens verified (when trust anchors were given)
    untimestamped: int = 0  # snapshots no verified token covers
    custody: dict[str, Any] | None = None  # the custody log's check, when it was asked for
    problems: list[Problem] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)  # one summary per snapshot

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data


@dataclass(frozen=True)
class _Hashed:
    sha256: str | None  # None: missing
    size: int
    error: str | None = None


def _hash(objects: ObjectStore, digest: str, progress: ProgressCallback | None) -> _Hashed:
    # Progress is reported per object: a callback per chunk would cost more than the hashing.
    try:
        actual, size = objects.hash_object(digest)
    except ObjectNotFound:
        return _Hashed(None, 0, "missing from the store")
    except EvidenceError as exc:
        return _Hashed(None, 0, str(exc))
    except OSError as exc:
        return _Hashed(None, 0, f"cannot read: {exc}")
    if progress is not None:
        progress(size)
    return _Hashed(actual, size)


def _check_manifest(
    objects: ObjectStore,
    snap: Snapshot,
    trusted: dict[str, str],
    retired: dict[str, datetime] | None = None,
) -> tuple[Manifest | None, list[Problem]]:
    problems: list[Problem] = []

    def problem(kind: str, message: str, **kw: Any) -> None:
        problems.append(Problem(kind, message, snapshot=snap.id, **kw))

    try:
        body = objects.get(snap.id)
    except ObjectNotFound:
        problem("manifest-missing", "the manifest object is not in the store", expected=snap.id)
        return None, problems
    except EvidenceError as exc:
        problem("manifest-unreadable", str(exc))
        return None, problems

    actual = hashlib.sha256(body).hexdigest()
    if actual != snap.id:
        problem(
            "manifest-corrupt",
            "the manifest bytes do not hash to the snapshot id",
            expected=snap.id,
            actual=actual,
        )
        return None, problems
    try:
        manifest = parse_manifest(body)
    except ManifestError as exc:
        problem("manifest-invalid", str(exc))
        return None, problems

    try:
        signature = objects.get(snap.signature_sha256)
    except ObjectNotFound:
        problem(
            "signature-missing",
            "the signature object is not in the store",
            expected=snap.signature_sha256,
        )
        signature = None
    if signature is not None:
        sig_digest = hashlib.sha256(signature).hexdigest()
        if sig_digest != snap.signature_sha256:
            problem(
                "signature-corrupt",
                "the signature object does not hash to its digest",
                expected=snap.signature_sha256,
                actual=sig_digest,
            )
        elif (reason := verify_signature(manifest.signer, body, signature)) is not None:
            problem("signature-invalid", reason)
    fp = manifest.signer.fingerprint
    if trusted.get(fp) != manifest.signer.public_key:
        problem(
            "key-untrusted", "the manifest is signed by a key the index does not trust", actual=fp
        )
    # A retired key's private half may have leaked: what it signs afterwards is not ours.
    retired_at = (retired or {}).get(fp)
    if retired_at is not None and manifest.archived_at > retired_at:
        problem(
            "key-retired",
            f"signed by key {fp} after its retirement at {format_rfc3339(retired_at)}",
            expected=f"archived_at <= {format_rfc3339(retired_at)}",
            actual=format_rfc3339(manifest.archived_at),
        )
    if fp != snap.key_fingerprint:
        problem(
            "index-mismatch",
            "key fingerprint differs between manifest and index",
            expected=fp,
            actual=snap.key_fingerprint,
        )

    # The index must say what the signed manifest says.
    pairs = {
        "collection": (manifest.collection, snap.collection.name),
        "sequence": (str(manifest.sequence), str(snap.sequence)),
        "previous": (manifest.previous, snap.previous_id),
        "kind": (manifest.kind, snap.kind),
        "source_url": (manifest.source_url, snap.source_url),
        "note": (manifest.note, snap.note),
        "captured_at": (format_rfc3339(manifest.captured_at), format_rfc3339(snap.captured_at)),
        "archived_at": (format_rfc3339(manifest.archived_at), format_rfc3339(snap.archived_at)),
        "artifact count": (str(len(manifest.artifacts)), str(len(snap.artifacts))),
    }
    for name, (expected, actual_value) in pairs.items():
        if expected != actual_value:
            problem(
                "index-mismatch",
                f"{name} differs between manifest and index",
                expected=expected,
                actual=actual_value,
            )
    for entry, row in zip(manifest.artifacts, snap.artifacts, strict=False):
        for attr in ("role", "name", "media_type", "size", "sha256"):
            expected, actual_value = str(getattr(entry, attr)), str(getattr(row, attr))
            if expected != actual_value:
                problem(
                    "index-mismatch",
                    f"artifact {attr} differs between manifest and index",
                    artifact=f"#{row.position} {entry.role}",
                    expected=expected,
                    actual=actual_value,
                )
    return manifest, problems


def _artifact_problems(
    digest: str, size: int, hashed: _Hashed, snapshot: str, label: str
) -> list[Problem]:
    where = {"snapshot": snapshot, "artifact": label}
    if hashed.error is not None:
        kind = "artifact-missing" if "missing" in hashed.error else "artifact-unreadable"
        return [Problem(kind, hashed.error, expected=digest, **where)]
    if hashed.sha256 != digest:
        message = "the stored bytes do not hash to the recorded digest"
        return [
            Problem("artifact-corrupt", message, expected=digest, actual=hashed.sha256, **where)
        ]
    if hashed.size != size:
        message = "the stored size differs from the recorded size"
        return [
            Problem("artifact-size", message, expected=str(size), actual=str(hashed.size), **where)
        ]
    return []


def _check_chains(
    snapshots: list[Snapshot], collections: Iterable[Collection], complete: bool
) -> list[Problem]:
    """Links between consecutive manifests; with ``complete``, also gaps and the head."""
    problems: list[Problem] = []
    by_id = {s.id: s for s in snapshots}
    for snap in snapshots:
        if snap.sequence == 1:
            if snap.previous_id is not None:
                problems.append(
                    Problem(
                        "chain-broken",
                        "the first snapshot of a chain names a predecessor",
                        snapshot=snap.id,
                        actual=snap.previous_id,
                    )
                )
            continue
        prev = by_id.get(snap.previous_id or "")
        if prev is None and complete:
            problems.append(
                Problem(
                    "chain-broken",
                    "the previous manifest is not in the index",
                    snapshot=snap.id,
                    expected=snap.previous_id,
                )
            )
        elif prev is not None and (
            prev.sequence != snap.sequence - 1 or prev.collection_id != snap.collection_id
        ):
            problems.append(
                Problem(
                    "chain-broken",
                    "the previous manifest is not the one before in the same collection",
                    snapshot=snap.id,
                    expected=f"{snap.collection.name}#{snap.sequence - 1}",
                    actual=f"{prev.collection.name}#{prev.sequence}",
                )
            )
    if not complete:
        return problems
    grouped: dict[int, list[Snapshot]] = defaultdict(list)
    for snap in snapshots:
        grouped[snap.collection_id].append(snap)
    for coll in collections:
        chain = sorted(grouped.get(coll.id, []), key=lambda s: s.sequence)
        sequences = [s.sequence for s in chain]
        if sequences != list(range(1, len(chain) + 1)):
            missing = sorted(set(range(1, max(sequences, default=0) + 1)) - set(sequences))
            problems.append(
                Problem(
                    "chain-gap",
                    f"collection {coll.name!r} is missing chain positions {missing[:10]}",
                )
            )
        head = chain[-1].id if chain else None
        if coll.chain_head != head or coll.chain_length != len(chain):
            problems.append(
                Problem(
                    "chain-head",
                    f"collection {coll.name!r} records a head that is not its last snapshot",
                    expected=f"{head} ({len(chain)} links)",
                    actual=f"{coll.chain_head} ({coll.chain_length} links)",
                )
            )
    return problems


def verify(
    objects: ObjectStore,
    index: Index,
    snapshot_ids: list[str] | None = None,
    *,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
    on_total: Callable[[int], None] | None = None,
    timestamp_anchors: Sequence[bytes] | None = None,
    timestamp_crls: Sequence[bytes] = (),
    custody_log: bool = False,
) -> VerifyReport:
    """Verify the given snapshots (all when ``snapshot_ids`` is None) from their bytes.

    With ``timestamp_anchors``, their tokens (own, or their Merkle tree's with the inclusion
    proof) are verified too, with the TSA certificates' revocation status against
    ``timestamp_crls`` and the archived CRLs; with ``custody_log``, the whole custody log and
    its anchors and the signing keys' endorsement chain.
    """
    report = VerifyReport(started_at=format_rfc3339(utc_now()))
    with index.session() as session:
        query = select(Snapshot).options(
            selectinload(Snapshot.artifacts), selectinload(Snapshot.collection)
        )
        complete = snapshot_ids is None
        if complete:
            chain_rows = list(session.scalars(query))
            selected = chain_rows
        else:
            selected = list(session.scalars(query.where(Snapshot.id.in_(snapshot_ids))))
            # Chain links are checked against each selected snapshot's predecessor row.
            prev_ids = {s.previous_id for s in selected if s.previous_id}
            chain_rows = selected + list(session.scalars(query.where(Snapshot.id.in_(prev_ids))))
        collections = list(session.scalars(select(Collection)))
        keys = list(session.scalars(select(SigningKey)))
        trusted = {k.fingerprint: k.public_key for k in keys}
        retired = {k.fingerprint: k.retired_at for k in keys if k.retired_at is not None}

    report.snapshots = len(selected)
    report.collections = len({s.collection_id for s in selected})
    sizes: dict[str, int] = {}
    owners: dict[str, list[tuple[Snapshot, str]]] = defaultdict(list)
    for snap in selected:
        if snap.deleted_at is not None:
            # The retention policy removed its artifacts; manifest, signature and chain stay
            # and are still checked.
            continue
        for art in snap.artifacts:
            sizes[art.sha256] = art.size
            owners[art.sha256].append((snap, f"#{art.position} {art.role} {art.name}"))
    if on_total is not None:
        on_total(sum(sizes.values()))

    workers = workers or os.cpu_count() or 2
    with ThreadPoolExecutor(max_workers=workers) as pool:
        # Hashing releases the GIL and goes to the pool first, largest objects first so that
        # one big object does not finish alone at the end; the manifest checks, which are
        # mostly Python, run meanwhile in this thread.
        order = sorted(sizes, key=lambda d: -sizes[d])
        hash_jobs = {d: pool.submit(_hash, objects, d, progress) for d in order}
        for snap in selected:
            report.problems.extend(_check_manifest(objects, snap, trusted, retired)[1])
        for digest, job in hash_jobs.items():
            hashed = job.result()
            report.objects += 1
            report.bytes_hashed += hashed.size
            for snap, label in owners[digest]:
                report.problems.extend(
                    _artifact_problems(digest, sizes[digest], hashed, snap.id, label)
                )

    report.problems.extend(
        _check_chains(chain_rows if complete else selected, collections, complete)
    )
    times: dict[str, list[dict[str, Any]]] = {}
    if timestamp_anchors is not None:
        from evidence_store.timestamps.service import check_tokens

        tokens = check_tokens(
            objects, index, [s.id for s in selected], timestamp_anchors, timestamp_crls
        )
        report.timestamps, times = tokens.verified, tokens.times
        report.problems.extend(
            Problem("timestamp-invalid", message, snapshot=snap)
            for snap, message in tokens.problems
        )
        report.untimestamped = sum(1 for s in selected if s.id not in times)
    if custody_log:
        report.problems.extend(
            _check_custody(objects, index, timestamp_anchors, timestamp_crls, report)
        )
        from evidence_store.keys import check_key_history

        with index.session() as session:
            report.problems.extend(
                Problem("key-history", message) for message in check_key_history(objects, session)
            )
    report.problems.sort(key=lambda p: (p.snapshot or "", p.kind, p.artifact or ""))
    counts: dict[str, int] = defaultdict(int)
    for problem in report.problems:
        counts[problem.snapshot or ""] += 1
    report.results = [
        {
            "snapshot": snap.id,
            "collection": snap.collection.name,
            "sequence": snap.sequence,
            "captured_at": format_rfc3339(snap.captured_at),
            "artifacts": len(snap.artifacts),
            "bytes": sum(a.size for a in snap.artifacts),
            "timestamps": times.get(snap.id, []),
            "problems": counts.get(snap.id, 0),
        }
        for snap in selected
    ]
    report.finished_at = format_rfc3339(utc_now())
    return report


def _check_custody(
    objects: ObjectStore,
    index: Index,
    timestamp_anchors: Sequence[bytes] | None,
    timestamp_crls: Sequence[bytes],
    report: VerifyReport,
) -> list[Problem]:
    """Walk the custody log's chain and check the timestamps of its anchored heads."""
    from evidence_store.custody import verify_log
    from evidence_store.timestamps.service import check_custody_anchors

    with index.session() as session:
        log = verify_log(session)
        anchored, anchor_problems = check_custody_anchors(
            objects, session, timestamp_anchors, timestamp_crls
        )
    report.custody = {
        "entries": log.entries,
        "head": log.head,
        "anchors_verified": anchored,
        "ok": not log.problems and not anchor_problems,
    }
    return [Problem("custody-log", message) for message in log.problems] + [
        Problem("custody-anchor", message) for message in anchor_problems
    ]
