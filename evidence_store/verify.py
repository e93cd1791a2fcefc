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
from evidence_store.keys import unendorsed_signatures
from evidence_store.manifest import ManifestError, parse_manifest
from evidence_store.objects import ObjectStore
from evidence_store.signing import verify_signature
from evidence_store.support import CheckResult, ProgressCallback
from schemas import Manifest, format_rfc3339, utc_now


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


@dataclass(frozen=True)
class Unchecked:
    """Something verification could not check, and why: not a problem, not a pass either.

    ``what`` names it ("token 12", "Merkle tree 3", "snapshot <id>", "manifest <id>"),
    ``check`` the check left undone ("timestamp", "revocation", "index").
    """

    what: str
    check: str
    reason: str
    snapshot: str | None = None

    def __str__(self) -> str:
        return f"{self.what}: {self.check} not checked: {self.reason}"


# What ``require`` may ask for: a missing or unchecked timestamp token, or a token whose TSA
# certificates' revocation status is unknown, is then a problem instead of an unchecked item.
REQUIREMENTS = frozenset({"timestamps", "revocation"})
_REQUIRED_BY = {"timestamp": "timestamps", "revocation": "revocation"}
ARCHIVED_ANCHORS_NOTE = (
    "checked against trust anchors read from the archive itself, not supplied by the "
    "verifier: this shows the tokens match the anchors archived with them, but whoever could "
    "rewrite the archive could replace both; supply the TSA's CA certificate for full strength"
)


def check_requirements(require: frozenset[str]) -> None:
    """Raise ValueError for a requirement that is not one of :data:`REQUIREMENTS`."""
    unknown = set(require) - REQUIREMENTS
    if unknown:
        raise ValueError(
            f"unknown requirement(s) {sorted(unknown)}: choose from {sorted(REQUIREMENTS)}"
        )


@dataclass
class VerifyReport(CheckResult):
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
    unchecked: list[Unchecked] = field(default_factory=list)  # what could not be checked
    # Trust anchors the tokens chained to: source ("supplied" or "archived"), fingerprint
    # (SHA-256 of the DER), subject, number of tokens.
    anchors: list[dict[str, Any]] = field(default_factory=list)
    require: list[str] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)  # one summary per snapshot

    @property
    def archived_anchors_only(self) -> bool:
        """Some token was checked against archived anchors only (weaker: see the note)."""
        return any(a["source"] == "archived" for a in self.anchors)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every field, and ok, complete, verdict and the archived-anchor note."""
        data = asdict(self)
        data["ok"] = self.ok
        data["complete"] = self.complete
        data["verdict"] = self.verdict
        data["anchor_note"] = ARCHIVED_ANCHORS_NOTE if self.archived_anchors_only else None
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
    require: frozenset[str] = frozenset(),
) -> VerifyReport:
    """Verify the given snapshots (all when ``snapshot_ids`` is None) from their bytes.

    Their timestamp tokens (own, or their Merkle tree's with the inclusion proof) are
    verified against ``timestamp_anchors`` (PEM/DER certificates) when given, else against
    the trust anchors archived with each token; with the TSA certificates' revocation status
    against ``timestamp_crls`` and the archived CRLs. With ``custody_log`` (and all
    snapshots), also the whole custody log, its anchored heads, the index against the log,
    the store's manifests against the index, and the signing keys' endorsement chain.

    What could not be checked (tokens without any anchor, unknown revocation status,
    snapshots or trees without a token, manifests the index does not list) is in
    ``report.unchecked``; "timestamps" or "revocation" in ``require`` (see
    :data:`REQUIREMENTS`) makes the matching unchecked items problems instead.
    """
    check_requirements(require)
    report = VerifyReport(started_at=format_rfc3339(utc_now()), require=sorted(require))
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
        report.problems.extend(
            Problem("key-unendorsed", message, snapshot=sid)
            for sid, message in unendorsed_signatures(session, snapshot_ids)
        )

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
    from evidence_store.timestamps.checks import check_tokens

    tokens = check_tokens(
        objects, index, [s.id for s in selected], timestamp_anchors, timestamp_crls
    )
    report.timestamps, times = tokens.verified, tokens.times
    report.problems.extend(
        Problem("timestamp-invalid", message, snapshot=snap) for snap, message in tokens.problems
    )
    report.untimestamped = sum(1 for s in selected if s.id not in times)
    report.anchors = tokens.anchors
    _add_unchecked(report, tokens.unchecked, require)
    if custody_log:
        report.problems.extend(
            _check_custody(objects, index, timestamp_anchors, timestamp_crls, report, require)
        )
        if complete:
            _check_store_manifests(objects, index, {s.id for s in selected}, report)
        from evidence_store.keys import check_key_history

        with index.session() as session:
            report.problems.extend(
                Problem("key-history", message) for message in check_key_history(objects, session)
            )
    report.problems.sort(key=lambda p: (p.snapshot or "", p.kind, p.artifact or ""))
    counts: dict[str, int] = defaultdict(int)
    for problem in report.problems:
        counts[problem.snapshot or ""] += 1
    gaps: dict[str, int] = defaultdict(int)
    for item in report.unchecked:
        gaps[item.snapshot or ""] += 1
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
            "unchecked": gaps.get(snap.id, 0),
        }
        for snap in selected
    ]
    report.finished_at = format_rfc3339(utc_now())
    return report


def _add_unchecked(
    report: VerifyReport,
    gaps: Iterable[tuple[str, str, str, str | None]],
    require: frozenset[str],
) -> None:
    """File each gap as unchecked, or as a problem when ``require`` asks for that check."""
    for what, check, reason, snapshot in gaps:
        if _REQUIRED_BY.get(check) in require:
            report.problems.append(
                Problem(
                    f"{check}-unchecked",
                    f"{what}: required, but not checked: {reason}",
                    snapshot=snapshot,
                )
            )
        else:
            report.unchecked.append(Unchecked(what, check, reason, snapshot))


def _check_custody(
    objects: ObjectStore,
    index: Index,
    timestamp_anchors: Sequence[bytes] | None,
    timestamp_crls: Sequence[bytes],
    report: VerifyReport,
    require: frozenset[str] = frozenset(),
) -> list[Problem]:
    """Walk the custody log's chain, cross-check it with the index, and check the timestamps
    of its anchored heads."""
    from evidence_store.custody import verify_log
    from evidence_store.timestamps.checks import custody_anchor_check

    with index.session() as session:
        log = verify_log(session)
        anchors = custody_anchor_check(objects, session, timestamp_anchors, timestamp_crls)
    report.custody = {
        "entries": log.entries,
        "head": log.head,
        "anchors_verified": anchors.verified,
        "ok": not log.problems and not anchors.problems,
    }
    for use in anchors.anchors:
        known = next(
            (
                a
                for a in report.anchors
                if (a["source"], a["fingerprint"]) == (use["source"], use["fingerprint"])
            ),
            None,
        )
        if known is None:
            report.anchors.append(dict(use))
        else:
            known["tokens"] += use["tokens"]
    _add_unchecked(report, anchors.unchecked, require)
    return [Problem("custody-log", message) for message in log.problems] + [
        Problem("custody-anchor", message) for message in anchors.problems
    ]


# A manifest is a few kilobytes (a large capture's, some hundred); an object larger than this
# is an artifact, and is not read whole to find out.
_MAX_MANIFEST_BYTES = 8 << 20


def _check_store_manifests(
    objects: ObjectStore, index: Index, indexed: set[str], report: VerifyReport
) -> None:
    """Find manifests in the store that the index does not list.

    One the custody log records as archived was removed from the index: a problem. One the
    log does not know was never committed (an archive interrupted before its commit, which
    `store sweep` lists too) or was removed together with its log entries: which of the two,
    only the custody log's timestamped heads can tell, so it is listed as unchecked.
    """
    from sqlalchemy import and_

    from evidence_store.custody import ARCHIVED
    from evidence_store.index.models import CustodyEvent
    from evidence_store.sweep import referenced_digests
    from evidence_store.timestamps.anchors import anchor_object_digests

    referenced = referenced_digests(index) | indexed
    with index.session() as session:
        referenced |= anchor_object_digests(session)
    candidates: dict[str, Manifest] = {}
    for digest in objects.iter_digests():
        if digest in referenced:
            continue
        manifest = _read_manifest(objects, digest)
        if manifest is not None:
            candidates[digest] = manifest
    if not candidates:
        return
    with index.session() as session:
        logged = set(
            session.scalars(
                select(CustodyEvent.snapshot_id).where(
                    and_(
                        CustodyEvent.action == ARCHIVED,
                        CustodyEvent.snapshot_id.in_(list(candidates)),
                    )
                )
            )
        )
        positions = {
            (name, seq): sid
            for name, seq, sid in session.execute(
                select(Collection.name, Snapshot.sequence, Snapshot.id).join(Snapshot.collection)
            )
        }
    for digest, manifest in sorted(candidates.items()):
        where = f"{manifest.collection} #{manifest.sequence}"
        if digest in logged:
            report.problems.append(
                Problem(
                    "snapshot-removed",
                    f"the manifest of {where} is in the store and the custody log records it "
                    "as archived, but the index does not list it",
                    snapshot=digest,
                )
            )
            continue
        holder = positions.get((manifest.collection, manifest.sequence))
        reason = (
            f"a manifest of {where} that the index does not list (the position is held by "
            f"snapshot {holder}) and the custody log does not name: left by an archive "
            "interrupted before its commit"
            if holder
            else f"a manifest of {where} that neither the index nor the custody log lists: "
            "left by an archive interrupted before its commit, or a snapshot removed together "
            "with its custody entries"
        )
        report.unchecked.append(Unchecked(f"manifest {digest}", "index", reason, digest))


def _read_manifest(objects: ObjectStore, digest: str) -> Manifest | None:
    """The object as one of our manifests, or None when it is something else."""
    try:
        with objects.open(digest) as stream:
            head = stream.read(_MAX_MANIFEST_BYTES + 1)
    except (EvidenceError, OSError):
        return None  # unreadable: `store sweep` lists it; it cannot be judged here
    if len(head) > _MAX_MANIFEST_BYTES or not head.startswith(b"{"):
        return None
    try:
        return parse_manifest(head)
    except ManifestError:
        return None
