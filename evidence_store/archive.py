"""``archive(capture)``: bytes first, verified; manifest and chain next; index rows last.

The order is the crash-safety argument. Objects are written and read back before any row
refers to them; the manifest is built, signed and stored while the collection's chain lock is
held; the snapshot, its artifacts, the new chain head and the custody entry are committed in one
transaction. A crash before the commit leaves only unreferenced objects (found by
``evidence store sweep``); after it, the whole snapshot.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from evidence_store import custody
from evidence_store.errors import EvidenceError, IntegrityError, StoreError
from evidence_store.index import Index
from evidence_store.index.models import Artifact, Collection, Run, SigningKey, Snapshot, Source
from evidence_store.manifest import manifest_bytes, software_versions
from evidence_store.objects import ObjectStore, PutResult
from evidence_store.signing import Signer
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


def _put_verified(objects: ObjectStore, data: bytes | BinaryIO, media_type: str) -> PutResult:
    """Store bytes, then read them back from the store and check digest and size."""
    result = objects.put(data, media_type=media_type)
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
                result = _put_verified(objects, stream, artifact.media_type)
        except OSError as exc:
            raise EvidenceError(f"cannot read {artifact.path}: {exc.strerror}") from None
    else:
        assert artifact.data is not None
        result = _put_verified(objects, artifact.data, artifact.media_type)
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
            raise EvidenceError(f"no such file: {path}")
        if not path.is_file():
            raise EvidenceError(f"not a regular file: {path}")
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise EvidenceError(f"cannot read {path}: {exc.strerror}") from None


def _collection(session: Session, name: str) -> Collection:
    found = session.scalars(select(Collection).where(Collection.name == name)).first()
    if found is None:
        found = Collection(name=name, created_at=utc_now(), chain_length=0)
        session.add(found)
        session.flush()
    return found


def _trust_key(session: Session, signer: Signer) -> None:
    if session.get(SigningKey, signer.info.fingerprint) is None:
        session.add(
            SigningKey(
                fingerprint=signer.info.fingerprint,
                algorithm=signer.info.algorithm,
                public_key=signer.info.public_key,
                created_at=utc_now(),
            )
        )


def _source_id(session: Session, capture: Capture) -> int | None:
    if capture.source is None:
        return None
    source = session.scalars(select(Source).where(Source.name == capture.source)).first()
    if source is None:
        source = Source(
            name=capture.source, kind=capture.kind, url=capture.source_url, created_at=utc_now()
        )
        session.add(source)
        session.flush()
    return source.id


def archive(evidence: EvidenceStore, capture: Capture) -> ArchivedSnapshot:
    """Archive one capture as a snapshot; returns only once it is durably committed."""
    _check_inputs(capture)
    objects = evidence.objects
    entries = [_store_artifact(objects, artifact) for artifact in capture.artifacts]

    with evidence.index.writing(
        collection_lock(capture.collection), custody.CUSTODY_LOCK
    ) as session:
        collection = _collection(session, capture.collection)
        if capture.run_id is not None and session.get(Run, capture.run_id) is None:
            raise EvidenceError(f"unknown run {capture.run_id!r}")
        _trust_key(session, evidence.signer)
        source_id = _source_id(session, capture)
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
            signer=evidence.signer.info,
        )
        body = manifest_bytes(manifest)
        snapshot_id = hashlib.sha256(body).hexdigest()
        stored = _put_verified(objects, body, "application/json")
        if stored.sha256 != snapshot_id:  # pragma: no cover - would mean a broken hash function
            raise StoreError(f"manifest stored as sha256:{stored.sha256}, expected {snapshot_id}")
        signature = _put_verified(objects, evidence.signer.sign(body), SIGNATURE_MEDIA_TYPE)

        session.add(
            Snapshot(
                id=snapshot_id,
                collection_id=collection.id,
                sequence=manifest.sequence,
                previous_id=manifest.previous,
                kind=manifest.kind,
                source_id=source_id,
                run_id=capture.run_id,
                source_url=manifest.source_url,
                note=manifest.note,
                captured_at=manifest.captured_at,
                archived_at=manifest.archived_at,
                manifest_size=len(body),
                signature_sha256=signature.sha256,
                key_fingerprint=evidence.signer.info.fingerprint,
                artifacts=[
                    Artifact(position=i, **entry.model_dump()) for i, entry in enumerate(entries)
                ],
            )
        )
        collection.chain_length = manifest.sequence
        collection.chain_head = snapshot_id
        session.flush()
        custody.record(
            session,
            action="archived",
            actor=evidence.actor,
            snapshot_id=snapshot_id,
            collection_id=collection.id,
            reason=capture.note,
            details={
                "kind": capture.kind,
                "artifacts": len(entries),
                "bytes": sum(e.size for e in entries),
                "signature_sha256": signature.sha256,
            },
        )
    return ArchivedSnapshot(
        id=snapshot_id,
        collection=capture.collection,
        sequence=manifest.sequence,
        manifest=manifest,
        signature_sha256=signature.sha256,
    )
