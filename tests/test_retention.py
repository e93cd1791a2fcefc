"""Retention policies and legal holds: real stores (local folder, S3 on moto), real databases.

Time is the one thing the tests cannot let pass: the policy is evaluated at a ``now`` handed to
``apply_retention`` (or, for the CLI, at a clock moved forward in-process), while the index and
the objects are real. S3 lock state is read back from the server (HEAD, GetObjectLegalHold);
moto implements PutObjectLegalHold, GetObjectLegalHold, PutObjectRetention and refuses to
delete a locked version, but has no GetObjectRetention and never refuses a shorter retention
date, so the retention date is read from HEAD and "never shortened" is checked on our side.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from evidence_store.archive import EvidenceStore, archive
from evidence_store.errors import EvidenceError, SnapshotNotFound
from evidence_store.holds import HoldError, list_holds, release_hold, set_hold, sync_holds
from evidence_store.index import Index
from evidence_store.index.models import CustodyEvent, Snapshot
from evidence_store.objects import LocalStore, ObjectStore, object_key
from evidence_store.objects.base import ObjectLocked
from evidence_store.retention import apply_retention, retention_status, set_retention
from evidence_store.signing import Signer
from evidence_store.verify import verify
from schemas import Capture, CaptureArtifact, utc_now
from tests.conftest import run_cli

SHARED = b"shared bytes: the same stylesheet captured again and again\n"


@pytest.fixture(params=["local", "s3"])
def objects(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    """A store without retention dates (legal holds only), so that due objects can go."""
    if request.param == "local":
        yield LocalStore(tmp_path / "objects")
        return
    request.applymarker(pytest.mark.s3)
    from tests.s3support import make_s3_store

    s3 = make_s3_store(request, retention_mode=None)
    try:
        yield s3
    finally:
        s3.close()


def make_evidence(objects: ObjectStore, db_url: str, tmp_path: Path) -> EvidenceStore:
    return EvidenceStore(
        objects=objects,
        index=Index(db_url),
        signer=Signer.load_or_create(tmp_path / "keys"),
        actor="pytest",
    )


@pytest.fixture
def ev(objects: ObjectStore, tmp_path: Path) -> Iterator[EvidenceStore]:
    evidence = make_evidence(objects, f"sqlite:///{tmp_path / 'index.sqlite'}", tmp_path)
    try:
        yield evidence
    finally:
        evidence.index.dispose()


def capture(ev: EvidenceStore, collection: str, *blobs: bytes) -> str:
    artifacts = [
        CaptureArtifact(role="original", name=f"part{i}.bin", data=blob)
        for i, blob in enumerate(blobs)
    ]
    return archive(ev, Capture(collection=collection, kind="ingest", artifacts=artifacts)).id


def sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def later(days: float) -> datetime:
    return utc_now() + timedelta(days=days)


def events(ev: EvidenceStore, action: str | None = None) -> list[CustodyEvent]:
    with ev.index.session() as session:
        query = select(CustodyEvent).order_by(CustodyEvent.id)
        if action is not None:
            query = query.where(CustodyEvent.action == action)
        return list(session.scalars(query))


def deleted_at(ev: EvidenceStore, snapshot: str) -> datetime | None:
    with ev.index.session() as session:
        snap = session.get(Snapshot, snapshot)
        assert snap is not None
        return snap.deleted_at


def s3_hold(objects: ObjectStore, digest: str) -> bool | None:
    """The legal hold as the S3 server reports it (None on the local store)."""
    if not objects.supports_object_lock:
        return None
    client = objects._client  # type: ignore[attr-defined]
    return bool(client.is_object_legal_hold_enabled(objects.bucket, object_key(digest)))  # type: ignore[attr-defined]


def signature_of(ev: EvidenceStore, snapshot: str) -> str:
    with ev.index.session() as session:
        snap = session.get(Snapshot, snapshot)
        assert snap is not None
        return snap.signature_sha256


# -- the policy ------------------------------------------------------------------------------


def test_due_artifacts_go_shared_manifest_and_signature_stay(
    objects: ObjectStore, db_url: str, tmp_path: Path
) -> None:
    ev = make_evidence(objects, db_url, tmp_path)
    try:
        old = capture(ev, "ads", b"only in the old capture\n", SHARED)
        other = capture(ev, "reports", SHARED)  # another collection, no policy
        set_retention(ev, "ads", 30, "GDPR storage limitation: 30 days")

        early = apply_retention(ev, now=later(10))
        assert early.deleted == [] and deleted_at(ev, old) is None

        report = apply_retention(ev, now=later(31))
        assert report.ok, report.failed
        [deletion] = report.deleted
        assert deletion.snapshot == old
        assert deletion.removed == [sha(b"only in the old capture\n")]
        assert deletion.kept_shared == [sha(SHARED)]
        assert report.objects_removed == 1
        assert not objects.exists(sha(b"only in the old capture\n"))
        assert objects.exists(sha(SHARED))  # the other collection's snapshot still needs it
        assert objects.exists(old) and objects.exists(signature_of(ev, old))
        assert deleted_at(ev, old) is not None and deleted_at(ev, other) is None

        [event] = events(ev, "deleted")
        assert event.snapshot_id == old
        assert event.reason == "GDPR storage limitation: 30 days"
        assert event.details["removed"] == [sha(b"only in the old capture\n")]
        assert event.details["kept_shared"] == [sha(SHARED)]
        assert event.details["policy_days"] == 30
        [changed] = events(ev, "retention-changed")
        assert event.details["policy_event"] == changed.entry_hash
        assert changed.details == {"collection": "ads", "previous_days": None, "days": 30}

        # Verification still checks the deleted snapshot's manifest, signature and chain.
        result = verify(objects, ev.index)
        assert result.ok, [str(p) for p in result.problems]
        assert result.snapshots == 2

        again = apply_retention(ev, now=later(400))
        assert again.deleted == [] and len(events(ev, "deleted")) == 1
    finally:
        ev.index.dispose()


def test_shared_object_goes_with_the_last_snapshot_that_needs_it(ev: EvidenceStore) -> None:
    first = capture(ev, "ads", SHARED)
    second = capture(ev, "ads", SHARED, b"second\n")
    third = capture(ev, "other", SHARED)
    set_retention(ev, "ads", 5, "test policy")
    set_retention(ev, "other", 50, "test policy")
    report = apply_retention(ev, now=later(6))
    assert {d.snapshot for d in report.deleted} == {first, second}
    assert ev.objects.exists(sha(SHARED)) and not ev.objects.exists(sha(b"second\n"))
    report = apply_retention(ev, now=later(51))
    [deletion] = report.deleted
    assert deletion.snapshot == third and deletion.removed == [sha(SHARED)]
    assert not ev.objects.exists(sha(SHARED))
    assert verify(ev.objects, ev.index).ok


def test_capture_sharing_bytes_the_policy_removes_meanwhile_commits_nothing(
    ev: EvidenceStore,
) -> None:
    from evidence_store.archive import commit_snapshots, store_artifacts
    from evidence_store.errors import IntegrityError

    capture(ev, "ads", SHARED)
    set_retention(ev, "ads", 5, "test policy")
    new = Capture(
        collection="ads",
        kind="ingest",
        artifacts=[CaptureArtifact(role="original", name="again.bin", data=SHARED)],
    )
    # The new capture's bytes are stored (deduplicated, read back) before the policy runs...
    entries = store_artifacts(ev.objects, new)
    assert apply_retention(ev, now=later(6)).objects_removed == 1
    # ...so its commit must notice that the shared object is gone, and commit nothing.
    with pytest.raises(IntegrityError, match="removed by the retention policy"):
        commit_snapshots(ev, [(new, entries)])
    with ev.index.session() as session:
        assert len(list(session.scalars(select(Snapshot)))) == 1
    assert verify(ev.objects, ev.index).ok
    # Captured again, the bytes are stored anew and the snapshot is whole.
    again = archive(ev, new)
    assert ev.objects.exists(sha(SHARED)) and again.manifest.artifacts[0].sha256 == sha(SHARED)
    assert verify(ev.objects, ev.index).ok


def test_verify_still_catches_a_tampered_manifest_of_a_deleted_snapshot(tmp_path: Path) -> None:
    ev = make_evidence(
        LocalStore(tmp_path / "objects"), f"sqlite:///{tmp_path / 'i.sqlite'}", tmp_path
    )
    old = capture(ev, "ads", b"gone soon\n")
    set_retention(ev, "ads", 1, "test")
    apply_retention(ev, now=later(2))
    path = ev.objects.path_of(old)  # type: ignore[attr-defined]
    path.chmod(0o644)
    path.write_bytes(path.read_bytes().replace(b"ads", b"adz"))
    kinds = {p.kind for p in verify(ev.objects, ev.index).problems}
    assert "manifest-corrupt" in kinds and "artifact-missing" not in kinds
    ev.index.dispose()


# -- holds -----------------------------------------------------------------------------------


def test_snapshot_hold_blocks_deletion_until_released(ev: EvidenceStore) -> None:
    snap = capture(ev, "ads", b"held content\n")
    digests = [sha(b"held content\n"), snap, signature_of(ev, snap)]
    set_retention(ev, "ads", 1, "test policy")
    outcome = set_hold(ev, snap[:12], "Klage LG Berlin 15 O 123/26")
    assert outcome.hold.snapshot == snap and outcome.hold.id == 1
    if ev.objects.supports_object_lock:
        assert outcome.objects == 3 and outcome.failures == []
        assert all(s3_hold(ev.objects, d) for d in digests)
        assert ev.objects.stat(digests[0]).legal_hold is True

    report = apply_retention(ev, now=later(2))
    assert report.deleted == []
    [held] = report.held
    assert held["snapshot"] == snap and "legal hold #1" in held["holds"][0]
    assert "Klage LG Berlin" in held["holds"][0]
    with pytest.raises(HoldError, match=r"legal hold #1 on snapshot .*Klage LG Berlin"):
        apply_retention(ev, now=later(2), snapshots=[snap])
    assert ev.objects.exists(digests[0]) and deleted_at(ev, snap) is None

    released = release_hold(ev, snap, "case settled")
    assert released.hold.released_by == "pytest" and released.hold.release_reason == "case settled"
    if ev.objects.supports_object_lock:
        assert released.objects == 3
        assert not any(s3_hold(ev.objects, d) for d in digests)
    report = apply_retention(ev, now=later(2), snapshots=[snap[:10]])
    assert [d.snapshot for d in report.deleted] == [snap]
    assert not ev.objects.exists(digests[0])

    [hold_set] = events(ev, "hold-set")
    assert hold_set.reason == "Klage LG Berlin 15 O 123/26" and hold_set.snapshot_id == snap
    [hold_released] = events(ev, "hold-released")
    assert hold_released.reason == "case settled"
    assert hold_released.details["set_reason"] == "Klage LG Berlin 15 O 123/26"
    assert [e.action for e in events(ev)][-4:] == [
        "retention-changed",
        "hold-set",
        "hold-released",
        "deleted",
    ]


def test_collection_hold_and_overlapping_snapshot_hold(ev: EvidenceStore) -> None:
    first = capture(ev, "ads", b"first\n", SHARED)
    second = capture(ev, "ads", b"second\n", SHARED)
    set_retention(ev, "ads", 1, "test policy")
    collection_hold = set_hold(ev, "ads", "DSA Art. 40 data access request")
    assert collection_hold.hold.snapshot is None and collection_hold.hold.collection == "ads"
    set_hold(ev, first, "exhibit K3", kind="snapshot")

    report = apply_retention(ev, now=later(2))
    assert report.deleted == [] and {h["snapshot"] for h in report.held} == {first, second}
    [first_held] = [h for h in report.held if h["snapshot"] == first]
    assert len(first_held["holds"]) == 2
    # Named by the snapshot, the release takes the snapshot's own hold, not the collection's.
    assert release_hold(ev, first, "exhibit withdrawn").hold.id == 2
    assert [h.id for h in list_holds(ev)] == [1]
    assert [h.id for h in list_holds(ev, include_released=True)] == [1, 2]

    set_hold(ev, first, "exhibit K3 again")
    released = release_hold(ev, "ads", "request withdrawn", kind="collection")
    if ev.objects.supports_object_lock:
        # The second snapshot's own objects are free; the shared one and the first's stay held.
        assert not s3_hold(ev.objects, sha(b"second\n"))
        assert s3_hold(ev.objects, sha(SHARED)) and s3_hold(ev.objects, sha(b"first\n"))
        assert released.kept_on >= 3
    report = apply_retention(ev, now=later(2))
    assert [d.snapshot for d in report.deleted] == [second]
    # Shared with a held snapshot: kept.
    assert report.deleted[0].kept_shared == [sha(SHARED)]
    assert ev.objects.exists(sha(SHARED)) and ev.objects.exists(sha(b"first\n"))
    assert not ev.objects.exists(sha(b"second\n"))
    assert verify(ev.objects, ev.index).ok


def test_hold_sync_covers_snapshots_archived_after_a_collection_hold(ev: EvidenceStore) -> None:
    capture(ev, "ads", b"before the hold\n")
    set_hold(ev, "ads", "litigation")
    late = capture(ev, "ads", b"after the hold\n")
    result = sync_holds(ev)
    assert result.failures == []
    if ev.objects.supports_object_lock:
        assert s3_hold(ev.objects, sha(b"after the hold\n")) and s3_hold(ev.objects, late)
        assert result.switched_on >= 6
    else:
        assert result.switched_on == 0
    set_retention(ev, "ads", 1, "test policy")
    assert apply_retention(ev, now=later(2)).deleted == []


def test_bad_input_is_refused_with_a_clear_message(ev: EvidenceStore) -> None:
    snap = capture(ev, "ads", b"x\n")
    with pytest.raises(EvidenceError, match="a reason is required"):
        set_hold(ev, snap, "   ")
    with pytest.raises(EvidenceError, match="a reason is required"):
        set_retention(ev, "ads", 30, "")
    with pytest.raises(EvidenceError, match="between 1 and 36500, not -3"):
        set_retention(ev, "ads", -3, "negative")
    with pytest.raises(EvidenceError, match="not 0"):
        set_retention(ev, "ads", 0, "zero")
    with pytest.raises(EvidenceError, match="no collection 'nope'"):
        set_retention(ev, "nope", 3, "unknown")
    with pytest.raises(SnapshotNotFound, match="no snapshot ffffff"):
        set_hold(ev, "ffffff", "unknown", kind="snapshot")
    with pytest.raises(EvidenceError, match="no collection 'ffffff0', and no snapshot ffffff0"):
        set_hold(ev, "ffffff0", "unknown")
    with pytest.raises(EvidenceError, match="no active legal hold on snapshot"):
        release_hold(ev, snap, "nothing to release")
    hold = set_hold(ev, snap, "keep").hold
    set_hold(ev, snap, "keep, for another case")
    with pytest.raises(EvidenceError, match=r"2 active legal holds on .* \(#1, #2\): say which"):
        release_hold(ev, snap, "which one?")
    release_hold(ev, None, "done", hold_id=2)
    release_hold(ev, None, "done", hold_id=hold.id)
    with pytest.raises(EvidenceError, match=f"legal hold #{hold.id} was already released"):
        release_hold(ev, None, "again", hold_id=hold.id)
    with pytest.raises(EvidenceError, match="no retention policy"):
        apply_retention(ev, now=later(2), snapshots=[snap])
    set_retention(ev, "ads", 10, "policy")
    with pytest.raises(EvidenceError, match="not due for deletion before"):
        apply_retention(ev, now=later(2), snapshots=[snap])
    apply_retention(ev, now=later(11))
    with pytest.raises(EvidenceError, match="already deleted by the retention policy"):
        apply_retention(ev, now=later(11), snapshots=[snap])
    # Nothing of the failed attempts reached the custody log.
    assert [e.action for e in events(ev)][1:] == [
        "hold-set",
        "hold-set",
        "hold-released",
        "hold-released",
        "retention-changed",
        "deleted",
    ]


def test_dry_run_changes_nothing(ev: EvidenceStore) -> None:
    snap = capture(ev, "ads", b"dry\n")
    set_retention(ev, "ads", 1, "policy")
    before = len(events(ev))
    report = apply_retention(ev, now=later(2), dry_run=True)
    assert [d.snapshot for d in report.deleted] == [snap] and report.dry_run
    assert report.objects_removed == 0 and ev.objects.exists(sha(b"dry\n"))
    assert deleted_at(ev, snap) is None and len(events(ev)) == before
    [status] = retention_status(ev, now=later(2))
    assert (status.days, status.due, status.deleted) == (1, 1, 0)


def test_leftovers_of_an_interrupted_run_are_removed_next_time(ev: EvidenceStore) -> None:
    # The state a crash leaves between the committed mark and the object deletions.
    snap = capture(ev, "ads", b"marked, not yet removed\n")
    set_retention(ev, "ads", 1, "policy")
    with ev.index.writing() as session:
        session.execute(update(Snapshot).where(Snapshot.id == snap).values(deleted_at=utc_now()))
    assert verify(ev.objects, ev.index).ok  # never "whole but missing bytes"
    pending = apply_retention(ev, now=later(2), dry_run=True)
    assert pending.completed == [{"snapshot": snap, "pending": [sha(b"marked, not yet removed\n")]}]
    report = apply_retention(ev, now=later(2))
    assert report.completed == [{"snapshot": snap, "removed": [sha(b"marked, not yet removed\n")]}]
    assert not ev.objects.exists(sha(b"marked, not yet removed\n"))
    [event] = events(ev, "deletion-completed")
    assert event.snapshot_id == snap
    assert apply_retention(ev, now=later(2)).completed == []


# -- S3 Object Lock ----------------------------------------------------------------------------


@pytest.mark.s3
@pytest.mark.parametrize("mode", ["GOVERNANCE", "COMPLIANCE"])
def test_s3_retention_is_extended_never_shortened_and_blocks_deletion(
    request: pytest.FixtureRequest, tmp_path: Path, mode: str
) -> None:
    from tests.s3support import make_s3_store

    store = make_s3_store(request, retention_mode=mode, retention_days=1)
    ev = make_evidence(store, f"sqlite:///{tmp_path / 'index.sqlite'}", tmp_path)
    try:
        snap = capture(ev, "ads", b"locked bytes\n")
        digest = sha(b"locked bytes\n")
        with ev.index.session() as session:
            archived = session.get(Snapshot, snap).archived_at  # type: ignore[union-attr]
        change = set_retention(ev, "ads", 30, "policy")
        assert change.objects == 3 and change.failures == []
        until = store.stat(digest).retain_until
        assert until is not None and until >= archived + timedelta(days=30)
        assert store.stat(digest).retention_mode == mode
        set_retention(ev, "ads", 10, "shorter policy")
        assert store.stat(digest).retain_until == until  # not shortened

        with pytest.raises(ObjectLocked, match=f"{mode} until"):
            store.delete(digest)
        report = apply_retention(ev, now=later(31))
        assert report.deleted == [] and deleted_at(ev, snap) is None
        [blocked] = report.blocked
        assert blocked["snapshot"] == snap and f"{mode} retention until" in blocked["reason"]

        report = apply_retention(ev, now=later(31), bypass_governance=True)
        if mode == "GOVERNANCE":
            assert [d.snapshot for d in report.deleted] == [snap] and report.ok
            assert not store.exists(digest) and store.exists(snap)
        else:
            assert report.deleted == [] and report.blocked and store.exists(digest)
    finally:
        ev.index.dispose()
        store.close()


@pytest.mark.s3
def test_s3_delete_removes_every_version_and_reports_a_legal_hold(
    request: pytest.FixtureRequest,
) -> None:
    from tests.s3support import make_s3_store

    store = make_s3_store(request, retention_mode=None)
    try:
        digest = store.put(b"versioned\n").sha256
        store.set_legal_hold(digest, True)
        with pytest.raises(ObjectLocked, match="legal hold on"):
            store.delete(digest)
        assert store.exists(digest)
        store.set_legal_hold(digest, False)
        assert store.delete(digest) is True
        key = object_key(digest)
        # No delete marker hiding the bytes: no version at all is left.
        assert (
            list(store._client.list_objects(store.bucket, prefix=key, include_version=True)) == []
        )
        assert store.delete(digest) is False
    finally:
        store.close()


def test_local_delete_unlinks_the_read_only_file(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    digest = store.put(b"read-only\n").sha256
    assert store.stat(digest).read_only
    assert store.set_legal_hold(digest, True) is False  # holds live in the index here
    assert store.delete(digest) is True and not store.exists(digest)
    assert store.delete(digest) is False


# -- the command line ------------------------------------------------------------------------


def cli_env(objects: ObjectStore, data_dir: Path, db_url: str) -> dict[str, str]:
    env = {"EVIDENCE_DATA_DIR": str(data_dir), "EVIDENCE_DB_URL": db_url, "EVIDENCE_ACTOR": "jane"}
    if objects.supports_object_lock:
        from tests.s3support import s3_server

        server = s3_server()
        env |= {
            "EVIDENCE_STORE_URL": f"http://{server.endpoint}/{objects.bucket}",  # type: ignore[attr-defined]
            "EVIDENCE_S3__ACCESS_KEY": server.access_key,
            "EVIDENCE_S3__SECRET_KEY": server.secret_key,
            "EVIDENCE_S3__RETENTION_MODE": "NONE",
        }
    else:
        env["EVIDENCE_STORE_URL"] = str(Path(objects.root))  # type: ignore[attr-defined]
    return env


def cli_json(*args: str, env: dict[str, str]) -> object:
    return json.loads(run_cli(*args, "--json", env=env, check=True).stdout)


def apply_later(env: dict[str, str], days: float, monkeypatch: pytest.MonkeyPatch, *args: str):
    """`evidence retention apply` in this process, with the policy's clock moved forward."""
    from typer.testing import CliRunner

    import evidence_store.retention as retention
    from jobs.cli import app

    moved = later(days)
    monkeypatch.setattr(retention, "utc_now", lambda: moved)
    result = CliRunner().invoke(app, ["retention", "apply", *args], env=env)
    monkeypatch.undo()
    return result


def test_cli_end_to_end(
    objects: ObjectStore,
    data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = cli_env(objects, data_dir, f"sqlite:///{tmp_path / 'index.sqlite'}")
    report = tmp_path / "report.html"
    report.write_text("<h1>personal data</h1>", encoding="utf-8")
    style = tmp_path / "style.css"
    style.write_bytes(SHARED)
    ingested = cli_json("ingest", str(report), str(style), "--collection", "ads", env=env)
    snap, style_snap = ingested[0]["snapshot"], ingested[1]["snapshot"]
    cli_json("ingest", str(style), "--collection", "reports", env=env)

    changed = cli_json(
        "retention", "set", "ads", "--days", "30", "--reason", "GDPR Art. 5(1)(e)", env=env
    )
    assert changed["previous_days"] is None and changed["days"] == 30
    held = cli_json("hold", "set", snap[:10], "--reason", "LG Berlin 15 O 123/26", env=env)
    assert held["hold"]["snapshot"] == snap and held["store_failures"] == []
    if objects.supports_object_lock:
        assert s3_hold(objects, sha(b"<h1>personal data</h1>"))
    [listed] = cli_json("hold", "list", env=env)
    assert listed["id"] == 1 and listed["reason"] == "LG Berlin 15 O 123/26"
    table = run_cli("hold", "list", env=env, check=True).stdout
    assert "LG Berlin" in table and "1 active legal hold(s)" in table

    result = apply_later(env, 31, monkeypatch, "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert [d["snapshot"] for d in body["deleted"]] == [style_snap]
    assert body["deleted"][0]["kept_shared"] == [sha(SHARED)]  # the other collection has it
    assert [h["snapshot"] for h in body["held"]] == [snap]

    refused = run_cli("retention", "apply", "--snapshot", snap[:12], env=env)
    assert refused.returncode == 2
    assert "legal hold #1 on snapshot" in refused.stderr and "LG Berlin" in refused.stderr

    released = run_cli("hold", "release", snap[:12], "--reason", "settled", env=env, check=True)
    assert "released legal hold #1" in released.stdout
    if objects.supports_object_lock:
        assert not s3_hold(objects, sha(b"<h1>personal data</h1>"))

    dry = apply_later(env, 31, monkeypatch, "--dry-run")
    assert dry.exit_code == 0 and "would delete 1 snapshot(s)" in dry.stdout
    result = apply_later(env, 31, monkeypatch)
    assert result.exit_code == 0, result.output
    assert "deleted 1 snapshot(s) (22 bytes); 0 held, 0 blocked by the store, 0 failed" in (
        result.stdout
    )
    assert not objects.exists(sha(b"<h1>personal data</h1>"))

    verified = run_cli("verify", "--all", env=env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # A deleted snapshot says so (its digests stay listed); it is never shown as intact bytes.
    shown = cli_json("snapshots", "show", snap[:12], env=env)
    assert shown["snapshot"]["deleted_at"] and shown["snapshot"]["artifacts"]
    assert (
        "artifacts deleted under the retention policy"
        in run_cli("snapshots", "show", snap[:12], env=env, check=True).stdout
    )
    exported = run_cli("export", "wacz", snap[:12], "-o", str(tmp_path / "x.wacz"), env=env)
    assert exported.returncode == 2 and not (tmp_path / "x.wacz").exists()
    assert "deleted under the retention policy" in exported.stderr
    [ads, reports] = cli_json("retention", "show", env=env)
    assert (ads["collection"], ads["days"], ads["deleted"], ads["snapshots"]) == ("ads", 30, 2, 2)
    assert reports["days"] is None

    with Index(env["EVIDENCE_DB_URL"]).session() as session:
        actions = [
            (e.action, e.actor, e.reason)
            for e in session.scalars(select(CustodyEvent).order_by(CustodyEvent.id))
            if e.action in ("retention-changed", "hold-set", "hold-released", "deleted")
        ]
    assert actions == [
        ("retention-changed", "jane", "GDPR Art. 5(1)(e)"),
        ("hold-set", "jane", "LG Berlin 15 O 123/26"),
        ("deleted", "jane", "GDPR Art. 5(1)(e)"),
        ("hold-released", "jane", "settled"),
        ("deleted", "jane", "GDPR Art. 5(1)(e)"),
    ]


def test_cli_errors(data_dir: Path, tmp_path: Path) -> None:
    env = {
        "EVIDENCE_DATA_DIR": str(data_dir),
        "EVIDENCE_DB_URL": f"sqlite:///{tmp_path / 'index.sqlite'}",
    }
    doc = tmp_path / "doc.txt"
    doc.write_text("x", encoding="utf-8")
    [ingested] = cli_json("ingest", str(doc), "--collection", "ads", env=env)
    cases = [
        (("hold", "set", ingested["snapshot"], "--reason", " "), "a reason is required"),
        (("hold", "set", "deadbeef00", "--reason", "r"), "no collection 'deadbeef00', and no"),
        (("hold", "release", "ads", "--reason", "r"), "no active legal hold on collection"),
        (("retention", "set", "ads", "--days", "-3", "--reason", "r"), "not -3"),
        (("retention", "set", "ads", "--reason", "r"), "give --days N or --forever"),
        (("retention", "set", "nope", "--forever", "--reason", "r"), "no collection 'nope'"),
        (("retention", "apply", "--collection", "ads"), "no retention policy"),
    ]
    for args, message in cases:
        proc = run_cli(*args, env=env)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert message in proc.stderr, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
