"""``archive(capture)``: bytes first, verified; manifest and chain next; index rows last.

The order is the crash-safety argument. Objects are written, checked (``put_verified``) and
made durable (``ObjectStore.flush``) before any row refers to them; the manifest is built,
signed and stored while the collection's chain lock is held; the snapshot, its artifacts, the
new chain head and the custody entry are committed in one transaction. A crash before the
commit leaves only unreferenced objects (found by ``evidence store sweep``); after it, the
whole snapshot.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from evidence_store import custody
from evidence_store.errors import (
    EvidenceError,
    InputError,
    IntegrityError,
    SigningKeyError,
    SourceChangedError,
)
from evidence_store.index import Index
from evidence_store.index.models import Artifact, Collection, Run, SigningKey, Snapshot, Source
from evidence_store.manifest import manifest_bytes, software_versions
from evidence_store.objects import ObjectStore, PutResult
from evidence_store.signing import Signer, endorsed_history, unendorsed_key_message
from schemas import ArtifactEntry, Capture, CaptureArtifact, Manifest, utc_now

SIGNATURE_MEDIA_TYPE = "application/vnd.dsa-evidence.ed25519-signature"


@dataclass(frozen=True)
class EvidenceStore:
    """The parts archive and verify work on: bytes, index, signing key, and who is acting."""

    objects: ObjectStore
    index: Index
    signer: Signer
    actor: str


@dataclass(frozen=True)
class ArchivedSnapshot:
    """What ``archive`` committed."""

    id: str
    collection: str
    sequence: int
    manifest: Manifest
    signature_sha256: str


def collection_lock(name: str) -> str:
    return f"collection:{name}"


def put_verified(objects: ObjectStore, data: bytes | BinaryIO, media_type: str) -> PutResult:
    """Store bytes and make sure the store keeps them: digest and size.

    Where the store has checked the object itself (``PutResult.checked``: S3's checksum of
    what the server received, the local store's digest of what it wrote, re-read from the
    disk with ``verify_on_write``) that check stands; otherwise, and always for bytes that
    were already stored, the object is read back and re-hashed. The object is made durable
    by the ``objects.flush()`` that precedes the commit (which raises if a check failed).
    """
    result = objects.put(data, media_type=media_type, durable=False)
    if result.checked:
        return result
    actual, size = objects.hash_object(result.sha256)
    if actual != result.sha256 or size != result.size:
        raise IntegrityError(
            f"object sha256:{result.sha256} read back from {objects.url} as sha256:{actual} "
            f"({size} bytes, expected {result.size}): the store did not keep the bytes"
        )
    return result


def _store_artifact(objects: ObjectStore, artifact: CaptureArtifact) -> ArtifactEntry:
    if artifact.path is not None:
        try:
            with open(artifact.path, "rb") as stream:
                result = put_verified(objects, stream, artifact.media_type)
        except OSError as exc:
            raise InputError(f"cannot read {artifact.path}: {exc.strerror}") from None
    else:
        assert artifact.data is not None
        result = put_verified(objects, artifact.data, artifact.media_type)
    if artifact.sha256 is not None and result.sha256 != artifact.sha256:
        raise SourceChangedError(
            f"{artifact.path or artifact.name} changed while it was archived (sha256 "
            f"{artifact.sha256[:16]}… when hashed, {result.sha256[:16]}… when stored); "
            "nothing of it was committed"
        )
    return ArtifactEntry(
        role=artifact.role,
        name=artifact.name,
        media_type=artifact.media_type,
        size=result.size,
        sha256=result.sha256,
    )


def _check_inputs(capture: Capture) -> None:
    # Fail before anything is written: a missing file must not leave half a capture behind.
    for artifact in capture.artifacts:
        if artifact.path is None:
            continue
        path = Path(artifact.path)
        if not path.exists():
            raise InputError(f"no such file: {path}")
        if not path.is_file():
            raise InputError(f"not a regular file: {path}")
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror}") from None


def _collection(session: Session, name: str) -> Collection:
    found = session.scalars(select(Collection).where(Collection.name == name)).first()
    if found is None:
        found = Collection(name=name, created_at=utc_now(), chain_length=0)
        session.add(found)
        session.flush()
    return found


def _key_refusal(session: Session, signer: Signer) -> tuple[str | None, bool]:
    """Why ``signer`` may not sign now (None if it may), and whether the index lacks it."""
    fp = signer.info.fingerprint
    known = session.get(SigningKey, fp)
    if known is not None and known.retired_at is not None:
        return (
            f"the signing key {fp} was retired at {known.retired_at.isoformat()} (rotated): "
            "restart to load the current key"
        ), False
    history = endorsed_history(session)
    if fp in history:
        return None, False
    # The history is read in one statement: deciding "no keys yet" from a second query could
    # see another process's genesis commit between the two (READ COMMITTED) and refuse the key.
    if not history:
        return None, known is None  # the first key of a new index is the genesis of its history
    # A key file replaced by hand (or a fresh key made after the old one was lost) would
    # otherwise start a second, unendorsed line that verification could not tell from ours.
    return unendorsed_key_message(fp, history), False


def _trust_key(session: Session, signer: Signer) -> None:
    # Checked under the custody lock that rotation takes too: after a rotation commits, no
    # manifest signed by the old key gets in (a long-running process must reload), and of two
    # machines starting on one new index with different keys only the first becomes genesis.
    refusal, new = _key_refusal(session, signer)
    if refusal is not None:
        raise SigningKeyError(refusal)
    if new:
        session.add(
            SigningKey(
                fingerprint=signer.info.fingerprint,
                algorithm=signer.info.algorithm,
                public_key=signer.info.public_key,
                created_at=utc_now(),
            )
        )


def check_signer(evidence: EvidenceStore) -> None:
    """Raise ``SigningKeyError`` if the index would refuse the store's signing key.

    ``archive`` and ``archive_many`` call it before writing anything, so a refused key leaves
    no orphaned objects; the commit checks again under the lock.
    """
    with evidence.index.session() as session:
        refusal, _ = _key_refusal(session, evidence.signer)
    if refusal is not None:
        raise SigningKeyError(refusal)


def source_row(session: Session, name: str, *, kind: str, url: str | None = None) -> Source:
    """The source called ``name``, created on first use."""
    source = session.scalars(select(Source).where(Source.name == name)).first()
    if source is None:
        source = Source(name=name, kind=kind, url=url, created_at=utc_now())
        session.add(source)
        session.flush()
    return source


def _source_id(session: Session, capture: Capture) -> int | None:
    if capture.source is None:
        return None
    return source_row(session, capture.source, kind=capture.kind, url=capture.source_url).id


def store_artifacts(objects: ObjectStore, capture: Capture) -> list[ArtifactEntry]:
    """Steps 1 and 2: store every artifact of a capture, each checked by ``put_verified``.

    The objects become durable at the flush in ``commit_snapshots``.
    """
    _check_inputs(capture)
    return [_store_artifact(objects, artifact) for artifact in capture.artifacts]


def archive(evidence: EvidenceStore, capture: Capture) -> ArchivedSnapshot:
    """Archive one capture as a snapshot; returns only once it is durably committed."""
    check_signer(evidence)
    entries = store_artifacts(evidence.objects, capture)
    return commit_snapshots(evidence, [(capture, entries)])[0]


def archive_many(
    evidence: EvidenceStore, captures: Iterable[Capture], *, workers: int = 4, batch: int = 16
) -> Iterator[ArchivedSnapshot]:
    """Archive many captures in order: bytes stored in parallel, snapshots committed in groups.

    Hashing and fsync release the GIL, so the artifacts of later captures are written (and
    their fsyncs started) while earlier ones are signed and committed. Up to ``batch`` captures
    whose bytes are stored go into one transaction (group commit: one lock, one fsync of the
    database log, one flush of the object store), and each is still whole or absent after a
    crash. Chain order is input order. At most
    ``2 * batch`` captures are in flight, which bounds memory. If a capture fails, the error is
    raised once the captures before it are committed and yielded (the failed capture is the one
    after the last yielded); bytes already stored for later ones stay as orphans for
    `evidence store sweep`.
    """
    check_signer(evidence)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="archive") as pool:
        pending: deque[tuple[Capture, Future[list[ArtifactEntry]]]] = deque()

        def commit_ready(minimum: int) -> tuple[list[ArchivedSnapshot], BaseException | None]:
            group: list[tuple[Capture, list[ArtifactEntry]]] = []
            while pending and len(group) < batch and (len(group) < minimum or pending[0][1].done()):
                capture, stored = pending[0]
                try:
                    entries = stored.result()
                except BaseException as exc:
                    # What precedes the failure is committed and handed out before it is raised.
                    return (commit_snapshots(evidence, group, pool) if group else []), exc
                pending.popleft()
                group.append((capture, entries))
            return (commit_snapshots(evidence, group, pool) if group else []), None

        def drain(minimum: int) -> Iterator[ArchivedSnapshot]:
            archived, error = commit_ready(minimum)
            yield from archived
            if error is not None:
                raise error

        try:
            for capture in captures:
                pending.append((capture, pool.submit(store_artifacts, evidence.objects, capture)))
                if len(pending) >= 2 * batch:
                    yield from drain(minimum=1)
            while pending:
                yield from drain(minimum=len(pending))
        finally:
            for _, stored in pending:
                stored.cancel()


def _check_not_deleted_meanwhile(
    session: Session, objects: ObjectStore, items: list[tuple[Capture, list[ArtifactEntry]]]
) -> None:
    """Refuse to commit if the retention policy removed bytes these captures share.

    An artifact whose bytes were already stored (by a snapshot since deleted under the
    retention policy) may have been removed after our read-back: the policy deletes under the
    custody lock, which we hold now, so what exists at this point stays.
    """
    digests = {entry.sha256 for _, entries in items for entry in entries}
    if not digests:
        return
    shared = session.scalars(
        select(Artifact.sha256)
        .join(Snapshot, Artifact.snapshot_id == Snapshot.id)
        .where(Artifact.sha256.in_(digests), Snapshot.deleted_at.is_not(None))
        .distinct()
    )
    for digest in shared:
        if not objects.exists(digest):
            raise IntegrityError(
                f"object sha256:{digest} was removed by the retention policy while this "
                "capture was being archived; nothing was committed: capture it again"
            )


def _locks(items: list[tuple[Capture, list[ArtifactEntry]]]) -> list[str]:
    return [collection_lock(c.collection) for c in {c.collection: c for c, _ in items}.values()]


def commit_snapshots(
    evidence: EvidenceStore,
    items: list[tuple[Capture, list[ArtifactEntry]]],
    pool: ThreadPoolExecutor | None = None,
) -> list[ArchivedSnapshot]:
    """Steps 3 and 4 for captures whose bytes are stored: under the chain locks, build, sign and
    store each manifest, then insert every row in one transaction."""
    objects = evidence.objects
    signer = evidence.signer
    with evidence.index.writing(*_locks(items), custody.CUSTODY_LOCK) as session:
        _check_not_deleted_meanwhile(session, objects, items)
        _trust_key(session, signer)
        collections: dict[str, Collection] = {}
        built: list[tuple[Capture, Manifest, bytes, str, int | None]] = []
        for capture, entries in items:
            collection = collections.get(capture.collection)
            if collection is None:
                collection = collections[capture.collection] = _collection(
                    session, capture.collection
                )
            if capture.run_id is not None and session.get(Run, capture.run_id) is None:
                raise EvidenceError(f"unknown run {capture.run_id!r}")
            manifest = Manifest(
                collection=capture.collection,
                sequence=collection.chain_length + 1,
                previous=collection.chain_head,
                kind=capture.kind,
                captured_at=capture.captured_at,
                archived_at=utc_now(),
                source_url=capture.source_url,
                source=capture.source,
                run_id=capture.run_id,
                note=capture.note,
                artifacts=entries,
                capture=capture.metadata,
                software=software_versions(),
                clock={"source": "system", "timezone": "UTC"},
                signer=signer.info,
            )
            body = manifest_bytes(manifest)
            snapshot_id = hashlib.sha256(body).hexdigest()
            collection.chain_length = manifest.sequence
            collection.chain_head = snapshot_id
            built.append((capture, manifest, body, snapshot_id, _source_id(session, capture)))

        # Manifests and signatures are written (in parallel where a pool is given) and checked
        # before any row names them.
        blobs = [body for _, _, body, _, _ in built] + [signer.sign(b) for _, _, b, _, _ in built]
        media = ["application/json"] * len(built) + [SIGNATURE_MEDIA_TYPE] * len(built)
        if pool is not None and len(blobs) > 2:
            stored = list(
                pool.map(lambda bm: put_verified(objects, *bm), zip(blobs, media, strict=True))
            )
        else:
            stored = [put_verified(objects, b, m) for b, m in zip(blobs, media, strict=True)]
        signatures = [r.sha256 for r in stored[len(built) :]]
        # Every object of these snapshots is durable (fsynced, named, its directory fsynced)
        # before a row names it; a failed fsync or verify_on_write read-back raises here.
        objects.flush()

        snapshot_rows, artifact_rows, events = [], [], []
        for (capture, manifest, body, snapshot_id, source_id), signature in zip(
            built, signatures, strict=True
        ):
            snapshot_rows.append(
                {
                    "id": snapshot_id,
                    "collection_id": collections[capture.collection].id,
                    "sequence": manifest.sequence,
                    "previous_id": manifest.previous,
                    "kind": manifest.kind,
                    "source_id": source_id,
                    "run_id": capture.run_id,
                    "source_url": manifest.source_url,
                    "note": manifest.note,
                    "captured_at": manifest.captured_at,
                    "archived_at": manifest.archived_at,
                    "manifest_size": len(body),
                    "signature_sha256": signature,
                    "key_fingerprint": signer.info.fingerprint,
                }
            )
            artifact_rows.extend(
                {"snapshot_id": snapshot_id, "position": i, **entry.model_dump()}
                for i, entry in enumerate(manifest.artifacts)
            )
            events.append(
                custody.Event(
                    action="archived",
                    actor=evidence.actor,
                    snapshot_id=snapshot_id,
                    collection_id=collections[capture.collection].id,
                    reason=capture.note,
                    details={
                        "kind": capture.kind,
                        "artifacts": len(manifest.artifacts),
                        "bytes": sum(e.size for e in manifest.artifacts),
                        "signature_sha256": signature,
                    },
                )
            )
        session.flush()  # the collection rows (chain heads) before the snapshots that need them
        session.execute(insert(Snapshot), snapshot_rows)
        session.execute(insert(Artifact), artifact_rows)
        custody.append(session, events)
    return [
        ArchivedSnapshot(
            id=sid, collection=c.collection, sequence=m.sequence, manifest=m, signature_sha256=sig
        )
        for (c, m, _, sid, _), sig in zip(built, signatures, strict=True)
    ]
