"""archive() and verify() over a real local store and a real SQLite / PostgreSQL index."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import subprocess
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from sqlalchemy import select, text, update

from evidence_store.archive import EvidenceStore, archive
from evidence_store.errors import EvidenceError, StoreError
from evidence_store.index import Artifact, Collection, CustodyEvent, Index, SigningKey, Snapshot
from evidence_store.manifest import parse_manifest
from evidence_store.objects import LocalStore, ObjectStore, PutResult
from evidence_store.signing import Signer, public_key_pem
from evidence_store.sweep import sweep
from evidence_store.verify import verify
from schemas import Capture, CaptureArtifact


def capture(n: int = 0, collection: str = "default", **kw: object) -> Capture:
    return Capture(
        collection=collection,
        kind="capture",
        source_url=f"https://example.org/post/{n}",
        metadata={"n": n, "headers": {"Content-Type": "text/html"}},
        artifacts=[
            CaptureArtifact(
                role="warc",
                name="capture.warc.gz",
                media_type="application/warc",
                data=f"warc {n}".encode(),
            ),
            CaptureArtifact(
                role="screenshot", name="page.png", media_type="image/png", data=os.urandom(2048)
            ),
        ],
        **kw,  # type: ignore[arg-type]
    )


def flip_byte(path: Path, offset: int = 0) -> None:
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def kinds(report) -> set[str]:
    return {p.kind for p in report.problems}


def test_archive_stores_verifies_and_chains(evidence: EvidenceStore) -> None:
    first = archive(evidence, capture(1))
    second = archive(evidence, capture(2))
    # The snapshot id is the SHA-256 of the stored manifest bytes.
    body = evidence.objects.get(second.id)
    assert hashlib.sha256(body).hexdigest() == second.id
    manifest = parse_manifest(body)
    assert manifest.previous == first.id and manifest.sequence == 2
    assert first.manifest.previous is None and first.sequence == 1
    assert [a.role for a in manifest.artifacts] == ["warc", "screenshot"]
    assert manifest.signer.fingerprint == evidence.signer.info.fingerprint
    assert manifest.software["dsa-evidence"]
    # RFC 3339 UTC with milliseconds in the canonical JSON.
    raw = json.loads(body)
    assert raw["captured_at"].endswith("Z") and len(raw["captured_at"]) == len(
        "2026-11-28T12:00:00.000Z"
    )
    report = verify(evidence.objects, evidence.index)
    assert report.ok, report.problems
    assert report.snapshots == 2 and report.objects == 4
    with evidence.index.session() as session:
        coll = session.scalars(select(Collection)).one()
        assert (coll.chain_length, coll.chain_head) == (2, second.id)
        events = session.scalars(select(CustodyEvent).order_by(CustodyEvent.id)).all()
        assert [e.action for e in events] == ["archived", "archived"]
        assert events[1].previous_hash == events[0].entry_hash


def test_signature_verifies_with_openssl(evidence: EvidenceStore, tmp_path: Path) -> None:
    archived = archive(evidence, capture(1))
    with evidence.index.session() as session:
        sig = session.get(Snapshot, archived.id).signature_sha256
    (tmp_path / "manifest.json").write_bytes(evidence.objects.get(archived.id))
    (tmp_path / "manifest.sig").write_bytes(evidence.objects.get(sig))
    (tmp_path / "key.pem").write_bytes(public_key_pem(archived.manifest.signer))
    cmd = [
        "openssl",
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        "key.pem",
        "-rawin",
        "-in",
        "manifest.json",
        "-sigfile",
        "manifest.sig",
    ]
    ok = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
    assert ok.returncode == 0 and "Signature Verified Successfully" in ok.stdout
    flip_byte(tmp_path / "manifest.json", 10)
    assert subprocess.run(cmd, cwd=tmp_path, capture_output=True).returncode != 0


def test_identical_bytes_are_stored_once(evidence: EvidenceStore) -> None:
    art = [CaptureArtifact(role="original", name="a", data=b"same")]
    a = archive(evidence, Capture(artifacts=art))
    b = archive(evidence, Capture(artifacts=art))
    assert a.id != b.id
    digests = list(evidence.objects.iter_digests())
    assert len(digests) == 1 + 2 + 2  # one shared artifact; two manifests, two signatures
    assert verify(evidence.objects, evidence.index).ok


def test_collections_have_separate_chains(evidence: EvidenceStore) -> None:
    a1 = archive(evidence, capture(1, collection="tiktok"))
    b1 = archive(evidence, capture(2, collection="x"))
    a2 = archive(evidence, capture(3, collection="tiktok"))
    assert (a1.sequence, b1.sequence, a2.sequence) == (1, 1, 2)
    assert a2.manifest.previous == a1.id
    assert verify(evidence.objects, evidence.index).ok


def test_missing_input_file_stores_nothing(evidence: EvidenceStore, tmp_path: Path) -> None:
    good = tmp_path / "good.txt"
    good.write_text("good")
    bad = Capture(
        artifacts=[
            CaptureArtifact(role="a", name="good.txt", path=good),
            CaptureArtifact(role="b", name="gone.txt", path=tmp_path / "gone.txt"),
        ]
    )
    with pytest.raises(EvidenceError, match="no such file"):
        archive(evidence, bad)
    assert list(evidence.objects.iter_digests()) == []


class FailingStore(LocalStore):
    """A real local store whose Nth put fails, as a dying disk would."""

    def __init__(self, root: Path, fail_at: int) -> None:
        super().__init__(root)
        self.calls = 0
        self.fail_at = fail_at

    def put(self, data: bytes | BinaryIO, **options: Any) -> PutResult:
        self.calls += 1
        if self.calls == self.fail_at:
            raise StoreError("simulated I/O error")
        return super().put(data, **options)


@pytest.mark.parametrize("fail_at", [2, 3, 4])  # second artifact, manifest, signature
def test_store_failure_mid_archive_leaves_no_visible_snapshot(
    evidence: EvidenceStore, tmp_path: Path, fail_at: int
) -> None:
    archive(evidence, capture(0))
    failing = EvidenceStore(
        FailingStore(tmp_path / "objects", fail_at), evidence.index, evidence.signer, "pytest"
    )
    with pytest.raises(StoreError, match="simulated"):
        archive(failing, capture(1))
    with evidence.index.session() as session:
        assert session.scalars(select(Snapshot)).all().__len__() == 1
        assert session.scalars(select(Collection)).one().chain_length == 1
    assert verify(evidence.objects, evidence.index).ok
    # What was written before the failure is named at the store's next flush (the next
    # commit's, in a process that goes on), never referenced, and kept.
    assert not sweep(evidence.objects, evidence.index, actor="pytest").orphans
    failing.objects.flush()
    report = sweep(evidence.objects, evidence.index, actor="pytest")
    assert len(report.orphans) == fail_at - 1
    assert all(evidence.objects.exists(d) for d in report.orphans)
    # The chain continues where it was.
    assert archive(evidence, capture(2)).sequence == 2


# -- tampering: each is found by verify, precisely -----------------------------------------
def _artifact_path(evidence: EvidenceStore, role: str) -> tuple[str, Path]:
    with evidence.index.session() as session:
        digest = session.scalars(select(Artifact.sha256).where(Artifact.role == role)).first()
    assert isinstance(evidence.objects, LocalStore) and digest
    return digest, evidence.objects.path_of(digest)


def test_flipped_byte_in_artifact_is_reported(evidence: EvidenceStore) -> None:
    snap = archive(evidence, capture(1))
    digest, path = _artifact_path(evidence, "screenshot")
    flip_byte(path, 100)
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    report = verify(evidence.objects, evidence.index, [snap.id])
    [problem] = report.problems
    assert (problem.kind, problem.snapshot, problem.expected, problem.actual) == (
        "artifact-corrupt",
        snap.id,
        digest,
        actual,
    )
    assert "screenshot" in problem.artifact


def test_deleted_artifact_is_reported(evidence: EvidenceStore) -> None:
    snap = archive(evidence, capture(1))
    digest, path = _artifact_path(evidence, "warc")
    path.unlink()
    [problem] = verify(evidence.objects, evidence.index).problems
    assert (problem.kind, problem.snapshot, problem.expected) == (
        "artifact-missing",
        snap.id,
        digest,
    )


def test_flipped_byte_in_manifest_or_signature_is_reported(evidence: EvidenceStore) -> None:
    snap = archive(evidence, capture(1))
    assert isinstance(evidence.objects, LocalStore)
    flip_byte(evidence.objects.path_of(snap.id), 5)
    assert kinds(verify(evidence.objects, evidence.index)) == {"manifest-corrupt"}
    flip_byte(evidence.objects.path_of(snap.id), 5)  # undo
    flip_byte(evidence.objects.path_of(snap.signature_sha256), 5)
    assert kinds(verify(evidence.objects, evidence.index)) == {"signature-corrupt"}


def test_edited_digest_in_index_is_reported(evidence: EvidenceStore) -> None:
    archive(evidence, capture(1))
    forged = hashlib.sha256(b"forged").hexdigest()
    with evidence.index.writing() as session:
        session.execute(update(Artifact).where(Artifact.role == "warc").values(sha256=forged))
    report = verify(evidence.objects, evidence.index)
    assert {"index-mismatch", "artifact-missing"} <= kinds(report)
    mismatch = next(p for p in report.problems if p.kind == "index-mismatch")
    assert mismatch.actual == forged


def test_broken_chain_link_is_reported(evidence: EvidenceStore) -> None:
    archive(evidence, capture(1))
    second = archive(evidence, capture(2))
    third = archive(evidence, capture(3))
    with evidence.index.writing() as session:
        session.execute(update(Snapshot).where(Snapshot.id == third.id).values(previous_id=None))
    report = verify(evidence.objects, evidence.index)
    assert "chain-broken" in kinds(report) and "index-mismatch" in kinds(report)
    assert any(p.snapshot == third.id and p.expected == second.id for p in report.problems)


def test_removed_snapshot_row_breaks_the_chain(evidence: EvidenceStore) -> None:
    archive(evidence, capture(1))
    second = archive(evidence, capture(2))
    archive(evidence, capture(3))
    with evidence.index.writing() as session:
        # Dropping a row from the middle is exactly what the chain is there to expose.
        session.execute(
            text("UPDATE snapshots SET previous_id = NULL WHERE previous_id = :s"), {"s": second.id}
        )
        session.execute(text("DELETE FROM custody_events WHERE snapshot_id = :s"), {"s": second.id})
        session.execute(text("DELETE FROM artifacts WHERE snapshot_id = :s"), {"s": second.id})
        session.execute(text("DELETE FROM snapshots WHERE id = :s"), {"s": second.id})
    assert {"chain-gap", "chain-broken"} <= kinds(verify(evidence.objects, evidence.index))


def test_manifest_signed_by_unknown_key_is_reported(
    evidence: EvidenceStore, tmp_path: Path
) -> None:
    archive(evidence, capture(1))
    with evidence.index.writing() as session:
        other = Signer.load_or_create(tmp_path / "other-keys").info.public_key
        session.execute(update(SigningKey).values(public_key=other))
    assert kinds(verify(evidence.objects, evidence.index)) == {"key-untrusted"}


# -- concurrent writers --------------------------------------------------------------------
def _archive_many(db_url: str, root: str, worker: int, count: int) -> None:
    index = Index(db_url)
    ev = EvidenceStore(
        LocalStore(Path(root) / "objects"),
        index,
        Signer.load_or_create(Path(root) / "keys"),
        f"w{worker}",
    )
    for i in range(count):
        archive(ev, capture(worker * 1000 + i, collection="shared"))
    index.dispose()


def test_concurrent_processes_keep_one_unbroken_chain(
    evidence: EvidenceStore, db_url: str, tmp_path: Path
) -> None:
    evidence.index.ensure_schema()
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_archive_many, args=(db_url, str(tmp_path), w, 8)) for w in range(4)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with evidence.index.session() as session:
        sequences = sorted(session.scalars(select(Snapshot.sequence)))
    assert sequences == list(range(1, 33))
    report = verify(evidence.objects, evidence.index)
    assert report.ok, report.problems


def test_archive_and_verify_on_every_store(store: ObjectStore, tmp_path: Path) -> None:
    """The same archive/verify cycle on the local store and on S3 (moto or MinIO)."""
    index = Index(f"sqlite:///{tmp_path / 'index.sqlite'}")
    evidence = EvidenceStore(store, index, Signer.load_or_create(tmp_path / "keys"), "pytest")
    big = os.urandom(6 * 1024 * 1024)  # above the S3 multipart threshold used in the tests
    first = archive(evidence, capture(1))
    second = archive(
        evidence, Capture(artifacts=[CaptureArtifact(role="original", name="big.bin", data=big)])
    )
    assert second.manifest.previous == first.id
    assert store.get(second.id) and hashlib.sha256(store.get(second.id)).hexdigest() == second.id
    report = verify(store, index)
    assert report.ok, report.problems
    assert report.bytes_hashed >= len(big)
    index.dispose()
