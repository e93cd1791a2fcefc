"""Signing-key rotation and the key history, on real stores, real databases and real openssl."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from evidence_store.archive import (
    SIGNATURE_MEDIA_TYPE,
    EvidenceStore,
    archive,
    archive_many,
    put_verified,
)
from evidence_store.errors import EvidenceError, SigningKeyError
from evidence_store.index import CustodyEvent, Index, SigningKey, Snapshot
from evidence_store.keys import (
    PENDING_KEY_FILE,
    _commit_rotation,
    check_key_history,
    export_key_history,
    key_object_digests,
    list_keys,
    load_signer,
    record_of,
    rotate_key,
)
from evidence_store.objects import LocalStore, ObjectStore
from evidence_store.signing import KEY_FILE, PUBLIC_KEY_FILE, Signer, public_key_pem
from evidence_store.verify import verify
from schemas import Capture, CaptureArtifact
from tests.conftest import run_cli


def capture(n: int) -> Capture:
    return Capture(
        collection="keys",
        kind="capture",
        source_url=f"https://example.org/{n}",
        metadata={"n": n},
        artifacts=[CaptureArtifact(role="original", name=f"{n}.txt", data=f"item {n}".encode())],
    )


def keys_dir(evidence: EvidenceStore, tmp_path: Path) -> Path:
    path = tmp_path / "keys"
    assert Signer.load(path / KEY_FILE).info == evidence.signer.info
    return path


def rotate(evidence: EvidenceStore, tmp_path: Path, reason: str = "scheduled rotation"):
    return rotate_key(
        tmp_path / "keys", evidence.objects, evidence.index, actor="pytest", reason=reason
    )


def with_signer(evidence: EvidenceStore, signer: Signer) -> EvidenceStore:
    return EvidenceStore(evidence.objects, evidence.index, signer, evidence.actor)


def history_problems(evidence: EvidenceStore) -> list[str]:
    with evidence.index.session() as session:
        return check_key_history(evidence.objects, session)


def test_rotation_retires_the_old_key_and_signs_new_snapshots_with_the_new(
    evidence: EvidenceStore, tmp_path: Path
) -> None:
    folder = keys_dir(evidence, tmp_path)
    old = evidence.signer.info
    before = [archive(evidence, capture(i)) for i in range(2)]

    rotation = rotate(evidence, tmp_path)
    assert rotation.old == old and rotation.new != old

    # The key folder holds the new key only: the old private key is destroyed.
    signer = load_signer(folder, evidence.index)
    assert signer.info == rotation.new
    assert not (folder / PENDING_KEY_FILE).exists()
    assert stat.S_IMODE((folder / KEY_FILE).stat().st_mode) == 0o600
    assert (folder / PUBLIC_KEY_FILE).read_bytes() == public_key_pem(rotation.new)
    private = [p for p in folder.iterdir() if p.suffix == ".pem" and ".pub." not in p.name]
    assert [Signer.load(p).info for p in private] == [rotation.new]

    after = archive(with_signer(evidence, signer), capture(3))
    assert after.manifest.signer == rotation.new
    assert after.manifest.previous == before[-1].id  # one chain across the rotation

    report = verify(evidence.objects, evidence.index)
    assert report.ok, report.problems
    assert history_problems(evidence) == []

    with evidence.index.session() as session:
        rows = {k.fingerprint: k for k in session.scalars(select(SigningKey))}
        assert rows[old.fingerprint].retired_at == rotation.rotated_at
        new_row = rows[rotation.new.fingerprint]
        assert new_row.retired_at is None and new_row.created_at == rotation.rotated_at
        assert new_row.endorsed_by == old.fingerprint
        assert new_row.endorsement_sha256 == rotation.endorsement_sha256
        by_key = dict(session.execute(select(Snapshot.id, Snapshot.key_fingerprint)).all())
        event = session.scalars(
            select(CustodyEvent).where(CustodyEvent.action == "key-rotated")
        ).one()
        assert key_object_digests(session) == {
            rotation.record_sha256,
            rotation.endorsement_sha256,
        }
    assert by_key == {
        before[0].id: old.fingerprint,
        before[1].id: old.fingerprint,
        after.id: rotation.new.fingerprint,
    }
    assert (event.actor, event.reason, event.entry_hash) == (
        "pytest",
        "scheduled rotation",
        rotation.custody_hash,
    )
    assert event.details == {
        "old_fingerprint": old.fingerprint,
        "new_fingerprint": rotation.new.fingerprint,
        "record_sha256": rotation.record_sha256,
        "endorsement_sha256": rotation.endorsement_sha256,
        "rotated_at": event.details["rotated_at"],
    }


def test_the_endorsement_verifies_with_openssl(evidence: EvidenceStore, tmp_path: Path) -> None:
    old = evidence.signer.info
    rotation = rotate(evidence, tmp_path)
    work = tmp_path / "openssl"
    work.mkdir()
    (work / "old.pub.pem").write_bytes(public_key_pem(old))
    (work / "record.json").write_bytes(evidence.objects.get(rotation.record_sha256))
    (work / "endorsement.sig").write_bytes(evidence.objects.get(rotation.endorsement_sha256))
    command = ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", "old.pub.pem", "-rawin"]
    command += ["-in", "record.json", "-sigfile", "endorsement.sig"]
    proc = subprocess.run(command, cwd=work, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "Signature Verified Successfully" in proc.stdout
    record = json.loads((work / "record.json").read_bytes())
    assert record["fingerprint"] == rotation.new.fingerprint
    assert record["public_key"] == rotation.new.public_key
    assert record["previous"] == old.fingerprint

    # The same check under the new key must fail: openssl really tells them apart.
    (work / "new.pub.pem").write_bytes(public_key_pem(rotation.new))
    command[command.index("old.pub.pem")] = "new.pub.pem"
    assert subprocess.run(command, cwd=work, capture_output=True).returncode != 0


def test_rotating_twice_chains_three_keys(evidence: EvidenceStore, tmp_path: Path) -> None:
    archive(evidence, capture(1))
    first = rotate(evidence, tmp_path, "first")
    archive(with_signer(evidence, load_signer(tmp_path / "keys", evidence.index)), capture(2))
    second = rotate(evidence, tmp_path, "second")
    archive(with_signer(evidence, load_signer(tmp_path / "keys", evidence.index)), capture(3))

    with evidence.index.session() as session:
        keys = list_keys(session)
    assert [k.fingerprint for k in keys] == [
        evidence.signer.info.fingerprint,
        first.new.fingerprint,
        second.new.fingerprint,
    ]
    assert [k.endorsed_by for k in keys] == [None, keys[0].fingerprint, keys[1].fingerprint]
    assert [k.active for k in keys] == [False, False, True]
    assert keys[0].retired_at == keys[1].created_at and keys[1].retired_at == keys[2].created_at
    assert history_problems(evidence) == []
    report = verify(evidence.objects, evidence.index)
    assert report.ok, report.problems


def test_a_manifest_signed_by_a_retired_key_after_retirement_is_reported(
    evidence: EvidenceStore, tmp_path: Path
) -> None:
    good = archive(evidence, capture(1))
    rotation = rotate(evidence, tmp_path)
    # A process that still holds the old key is refused, and nothing is committed...
    with pytest.raises(SigningKeyError, match="was retired at"):
        archive(evidence, capture(2))
    assert verify(evidence.objects, evidence.index).snapshots == 1
    # ...but a manifest that got in anyway (someone with the old key and write access to the
    # index, who lifts the retirement for a moment) is reported.
    with evidence.index.writing() as session:
        row = session.get(SigningKey, rotation.old.fingerprint)
        assert row is not None
        retired_at, row.retired_at = row.retired_at, None
    late = archive(evidence, capture(2))
    with evidence.index.writing() as session:
        row = session.get(SigningKey, rotation.old.fingerprint)
        assert row is not None
        row.retired_at = retired_at
    assert late.manifest.signer == rotation.old

    report = verify(evidence.objects, evidence.index)
    problems = [p for p in report.problems if p.kind == "key-retired"]
    assert [p.snapshot for p in problems] == [late.id]
    assert {p.kind for p in report.problems} == {"key-retired"}
    assert problems[0].message.startswith(
        f"signed by key {rotation.old.fingerprint} after its retirement at "
    )
    assert verify(evidence.objects, evidence.index, [good.id]).ok


def test_a_tampered_endorsement_is_reported(evidence: EvidenceStore, tmp_path: Path) -> None:
    rotation = rotate(evidence, tmp_path)
    assert isinstance(evidence.objects, LocalStore)
    path = evidence.objects.path_of(rotation.endorsement_sha256)
    original = path.read_bytes()
    os.chmod(path, 0o644)
    path.write_bytes(bytes([original[0] ^ 1]) + original[1:])
    problems = history_problems(evidence)
    assert len(problems) == 1 and "does not hash to its digest" in problems[0], problems
    # `evidence verify --all` runs the same check.
    full = verify(evidence.objects, evidence.index, custody_log=True)
    assert [p.kind for p in full.problems] == ["key-history"]
    path.write_bytes(original)
    assert history_problems(evidence) == []

    # A well-stored signature by the wrong key (here: the new key endorsing itself).
    forged = Signer.load(tmp_path / "keys" / KEY_FILE)
    with evidence.index.session() as session:
        record = record_of(session.get(SigningKey, rotation.new.fingerprint))
    assert record is not None
    stored = put_verified(evidence.objects, forged.sign(record), SIGNATURE_MEDIA_TYPE)
    with evidence.index.writing() as session:
        session.execute(
            update(SigningKey)
            .where(SigningKey.fingerprint == rotation.new.fingerprint)
            .values(endorsement_sha256=stored.sha256)
        )
    problems = history_problems(evidence)
    assert len(problems) == 1 and "does not verify under the endorser" in problems[0], problems

    # Moving the retirement later (to cover a late manifest) breaks the record's times.
    with evidence.index.writing() as session:
        session.execute(
            update(SigningKey)
            .where(SigningKey.fingerprint == rotation.new.fingerprint)
            .values(endorsement_sha256=rotation.endorsement_sha256)
        )
        old = session.get(SigningKey, rotation.old.fingerprint)
        assert old is not None and old.retired_at is not None
        old.retired_at = old.retired_at.replace(year=old.retired_at.year + 1)
    problems = history_problems(evidence)
    assert len(problems) == 1 and "was retired" in problems[0], problems


def test_an_unknown_endorser_and_a_missing_endorsement_are_reported(
    evidence: EvidenceStore, tmp_path: Path
) -> None:
    rotation = rotate(evidence, tmp_path)
    with evidence.index.writing() as session:
        session.execute(
            update(SigningKey)
            .where(SigningKey.fingerprint == rotation.new.fingerprint)
            .values(endorsement_sha256="0" * 64)
        )
    problems = history_problems(evidence)
    assert any("endorsement object sha256:" + "0" * 64 + " is missing" in p for p in problems)
    with evidence.index.writing() as session:
        session.execute(
            update(SigningKey)
            .where(SigningKey.fingerprint == rotation.new.fingerprint)
            .values(endorsed_by="sha256:" + "1" * 64)
        )
    assert any("which the index lacks" in p for p in history_problems(evidence))


def test_rotation_needs_a_reason(evidence: EvidenceStore, tmp_path: Path) -> None:
    archive(evidence, capture(1))
    for reason in ("", "   "):
        with pytest.raises(EvidenceError, match="needs a reason"):
            rotate(evidence, tmp_path, reason)
    assert load_signer(tmp_path / "keys", evidence.index).info == evidence.signer.info
    with evidence.index.session() as session:
        assert len(list_keys(session)) == 1
        rotated = session.scalars(select(CustodyEvent).where(CustodyEvent.action == "key-rotated"))
        assert rotated.first() is None


def test_a_restored_retired_key_cannot_be_rotated(evidence: EvidenceStore, tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    old_pem = (folder / KEY_FILE).read_bytes()
    rotate(evidence, tmp_path)
    (folder / KEY_FILE).write_bytes(old_pem)  # e.g. an old backup put back
    with pytest.raises(SigningKeyError, match="key folder is out of date"):
        rotate(evidence, tmp_path)
    # The failed attempt's new key is gone: nothing the index does not know is left behind.
    assert not (folder / PENDING_KEY_FILE).exists()
    with evidence.index.session() as session:
        assert len(list_keys(session)) == 2


def test_a_crash_before_the_commit_keeps_the_old_key(
    evidence: EvidenceStore, tmp_path: Path
) -> None:
    folder = tmp_path / "keys"
    stray = Signer.load_or_create(tmp_path / "stray")
    (folder / PENDING_KEY_FILE).write_bytes(stray.private_key_pem())
    assert load_signer(folder, evidence.index).info == evidence.signer.info
    assert not (folder / PENDING_KEY_FILE).exists()
    # A write cut short (a full disk) leaves half a PEM: never trusted, so discarded too.
    (folder / PENDING_KEY_FILE).write_bytes(stray.private_key_pem()[:40])
    assert load_signer(folder, evidence.index).info == evidence.signer.info
    assert not (folder / PENDING_KEY_FILE).exists()
    archive(evidence, capture(1))
    with evidence.index.session() as session:
        assert [k.fingerprint for k in list_keys(session)] == [evidence.signer.info.fingerprint]


def test_a_crash_after_the_commit_installs_the_new_key(
    evidence: EvidenceStore, tmp_path: Path
) -> None:
    folder = tmp_path / "keys"
    archive(evidence, capture(1))
    # The state a crash between the index commit and the key-file rename leaves behind.
    new = Signer.load_or_create(tmp_path / "next")
    (folder / PENDING_KEY_FILE).write_bytes(new.private_key_pem())
    _commit_rotation(
        evidence.signer, new, evidence.objects, evidence.index, actor="pytest", reason="crash"
    )
    assert Signer.load(folder / KEY_FILE).info == evidence.signer.info
    assert load_signer(folder, evidence.index).info == new.info
    assert Signer.load(folder / KEY_FILE).info == new.info
    assert not (folder / PENDING_KEY_FILE).exists()
    archive(with_signer(evidence, new), capture(2))
    assert verify(evidence.objects, evidence.index).ok
    assert history_problems(evidence) == []


def _run_readme_commands(folder: Path) -> int:
    """Run every ``$`` command of the export's README; check the ``(prints X)`` lines."""
    lines = (folder / "README.txt").read_text().splitlines()
    ran = 0
    for i, line in enumerate(lines):
        if not line.strip().startswith("$ "):
            continue
        command = line.strip()[2:]
        proc = subprocess.run(
            ["bash", "-o", "pipefail", "-c", command], cwd=folder, capture_output=True, text=True
        )
        assert proc.returncode == 0, (command, proc.stdout, proc.stderr)
        following = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if following.startswith("(prints "):
            assert following[len("(prints ") : -1] in proc.stdout, (command, proc.stdout)
        if "pkeyutl" in command:
            assert "Signature Verified Successfully" in proc.stdout
        ran += 1
    return ran


def test_export_writes_a_history_that_openssl_checks(
    evidence: EvidenceStore, tmp_path: Path
) -> None:
    rotate(evidence, tmp_path, "first")
    rotate(evidence, tmp_path, "second")
    output = tmp_path / "export" / "key-history"
    with evidence.index.session() as session:
        result = export_key_history(evidence.objects, session, output)
    assert result.problems == [] and result.keys == 3
    listing = json.loads((output / "keys.json").read_text())
    assert [k["active"] for k in listing["keys"]] == [False, False, True]
    for key in listing["keys"]:
        raw = base64.b64decode(key["public_key"])
        assert (output / key["files"]["public_key"]).read_bytes().startswith(b"-----BEGIN")
        assert len(raw) == 32
    # sha256sum -c, three fingerprints (each with its expected output), two endorsements
    # (each with the grep that ties the record to the new key).
    assert _run_readme_commands(output) == 1 + 3 + 2 * 2
    assert not [p for p in output.parent.iterdir() if p.name != "key-history"]

    with (
        evidence.index.session() as session,
        pytest.raises(EvidenceError, match="never overwritten"),
    ):
        export_key_history(evidence.objects, session, output)

    # A broken endorsement makes openssl fail on the exported files too.
    broken = tmp_path / "broken"
    with evidence.index.writing() as session:
        row = session.scalars(
            select(SigningKey).where(SigningKey.endorsed_by.is_not(None)).limit(1)
        ).one()
        row.created_at -= timedelta(seconds=1)  # the record rebuilt from it no longer matches
    with evidence.index.session() as session:
        result = export_key_history(evidence.objects, session, broken)
    assert result.problems
    with pytest.raises(AssertionError):
        _run_readme_commands(broken)


# -- the CLI -------------------------------------------------------------------------------
@pytest.fixture
def env(data_dir: Path, db_url: str) -> dict[str, str]:
    return {
        "EVIDENCE_DATA_DIR": str(data_dir),
        "EVIDENCE_DB_URL": db_url,
        "EVIDENCE_ACTOR": "cli-test",
    }


def test_cli_list_rotate_export(env: dict[str, str], tmp_path: Path) -> None:
    sample = tmp_path / "report.txt"
    sample.write_text("a report\n")
    run_cli("ingest", str(sample), env=env, check=True)

    refused = run_cli("keys", "rotate", env=env)
    assert refused.returncode == 2 and "needs --reason" in refused.stderr

    rotated = json.loads(
        run_cli("keys", "rotate", "--reason", "yearly", "--json", env=env, check=True).stdout
    )
    sample.write_text("another report\n")
    ingested = json.loads(run_cli("ingest", str(sample), "--json", env=env, check=True).stdout)
    assert run_cli("verify", "--all", env=env).returncode == 0
    # The key record and its endorsement are referenced objects, not orphans.
    swept = json.loads(run_cli("store", "sweep", "--json", env=env, check=True).stdout)
    assert swept["orphans"] == []

    listed = json.loads(run_cli("keys", "list", "--json", env=env, check=True).stdout)
    assert [(k["fingerprint"], k["active"], k["this_machine"]) for k in listed] == [
        (rotated["old"], False, False),
        (rotated["new"], True, True),
    ]
    assert listed[1]["endorsed_by"] == rotated["old"]
    table = run_cli("keys", "list", env=env, check=True).stdout
    assert rotated["new"] in table and "this machine" in table
    shown = json.loads(
        run_cli("snapshots", "show", ingested[0]["snapshot"], "--json", env=env, check=True).stdout
    )
    assert rotated["new"] in json.dumps(shown)

    output = tmp_path / "keys-export"
    exported = json.loads(
        run_cli("keys", "export", "--output", str(output), "--json", env=env, check=True).stdout
    )
    assert exported["keys"] == 2 and exported["problems"] == []
    assert _run_readme_commands(output) == 1 + 2 + 2
    again = run_cli("keys", "export", "--output", str(output), env=env)
    assert again.returncode == 2 and "never overwritten" in again.stderr

    index = Index(env["EVIDENCE_DB_URL"])
    try:
        with index.session() as session:
            events = list(
                session.scalars(
                    select(CustodyEvent)
                    .where(CustodyEvent.action.in_(["key-rotated", "exported"]))
                    .order_by(CustodyEvent.id)
                )
            )
    finally:
        index.dispose()
    assert [(e.action, e.actor) for e in events] == [
        ("key-rotated", "cli-test"),
        ("exported", "cli-test"),
    ]
    assert events[0].reason == "yearly"
    assert events[1].details["format"] == "key-history"


def test_rotation_on_every_store(store: ObjectStore, tmp_path: Path) -> None:
    """Endorsements are objects like any other: the same cycle on the local store and S3."""
    index = Index(f"sqlite:///{tmp_path / 'index.sqlite'}")
    folder = tmp_path / "keys"
    evidence = EvidenceStore(store, index, load_signer(folder, index), "pytest")
    try:
        archive(evidence, capture(1))
        rotation = rotate_key(folder, store, index, actor="pytest", reason="store test")
        archive(with_signer(evidence, load_signer(folder, index)), capture(2))
        assert store.exists(rotation.record_sha256) and store.exists(rotation.endorsement_sha256)
        assert verify(store, index).ok
        assert history_problems(evidence) == []
        with index.session() as session:
            result = export_key_history(store, session, tmp_path / "export")
        assert result.problems == [] and _run_readme_commands(tmp_path / "export") == 1 + 2 + 2
    finally:
        index.dispose()


# -- keys outside the endorsed history ------------------------------------------------------
def stored_objects(evidence: EvidenceStore) -> set[str]:
    return set(evidence.objects.iter_digests())


def test_a_replaced_key_file_is_refused_before_anything_is_written(
    evidence: EvidenceStore, tmp_path: Path
) -> None:
    folder = keys_dir(evidence, tmp_path)
    genesis = evidence.signer.info
    first = archive(evidence, capture(1))
    original = (folder / KEY_FILE).read_bytes()
    intruder = Signer.load_or_create(tmp_path / "intruder")
    (folder / KEY_FILE).write_bytes(intruder.private_key_pem())

    signer = load_signer(folder, evidence.index)
    assert signer.info == intruder.info
    # The public key file is derived from the key file: it never names another key.
    assert (folder / PUBLIC_KEY_FILE).read_bytes() == public_key_pem(intruder.info)

    before = stored_objects(evidence)
    replaced = with_signer(evidence, signer)
    for attempt in (
        lambda: archive(replaced, capture(2)),
        lambda: list(archive_many(replaced, [capture(3), capture(4)])),
        lambda: rotate(evidence, tmp_path, "adopt the replaced key"),
    ):
        with pytest.raises(SigningKeyError) as refused:
            attempt()
        message = str(refused.value)
        assert intruder.info.fingerprint in message and "evidence keys rotate" in message
        assert genesis.fingerprint in message  # the key the index expects
    assert stored_objects(evidence) == before
    assert not (folder / PENDING_KEY_FILE).exists()
    with evidence.index.session() as session:
        assert [k.fingerprint for k in list_keys(session)] == [genesis.fingerprint]
        assert list(session.scalars(select(Snapshot.id))) == [first.id]

    # Putting the endorsed key back is all it takes.
    (folder / KEY_FILE).write_bytes(original)
    restored = load_signer(folder, evidence.index)
    assert (folder / PUBLIC_KEY_FILE).read_bytes() == public_key_pem(genesis)
    archive(with_signer(evidence, restored), capture(5))
    assert verify(evidence.objects, evidence.index, custody_log=True).ok


def test_only_an_empty_index_takes_a_first_key(evidence: EvidenceStore, tmp_path: Path) -> None:
    """Two machines with different keys on one new index: the first to commit is the genesis."""
    other = with_signer(evidence, Signer.load_or_create(tmp_path / "other-machine"))
    archive(other, capture(1))
    with pytest.raises(SigningKeyError, match="not in the endorsed key history"):
        archive(evidence, capture(2))


def test_manifests_of_a_key_outside_the_endorsed_history_are_reported(
    evidence: EvidenceStore, tmp_path: Path
) -> None:
    genesis = evidence.signer.info
    good = archive(evidence, capture(1))
    # The state older versions left when a key file was replaced: a second key, endorsed by
    # nobody, trusted by the index, with a manifest it signed. Built here by letting the key
    # in as if endorsed, then removing the endorsement.
    intruder = Signer.load_or_create(tmp_path / "intruder")
    with evidence.index.writing() as session:
        first_key = session.get(SigningKey, genesis.fingerprint)
        assert first_key is not None
        session.add(
            SigningKey(
                fingerprint=intruder.info.fingerprint,
                algorithm=intruder.info.algorithm,
                public_key=intruder.info.public_key,
                created_at=first_key.created_at + timedelta(seconds=1),
                endorsed_by=genesis.fingerprint,
                endorsement_sha256="0" * 64,
            )
        )
    late = archive(with_signer(evidence, intruder), capture(2))
    with evidence.index.writing() as session:
        session.execute(
            update(SigningKey)
            .where(SigningKey.fingerprint == intruder.info.fingerprint)
            .values(endorsed_by=None, endorsement_sha256=None)
        )

    report = verify(evidence.objects, evidence.index)
    assert [(p.kind, p.snapshot) for p in report.problems] == [("key-unendorsed", late.id)]
    assert intruder.info.fingerprint in report.problems[0].message
    assert verify(evidence.objects, evidence.index, [good.id]).ok
    problems = history_problems(evidence)
    assert len(problems) == 1 and "not in the endorsed key history" in problems[0], problems
    # The genesis key's line goes on; the stray key cannot sign anything more.
    with pytest.raises(SigningKeyError, match="not in the endorsed key history"):
        archive(with_signer(evidence, intruder), capture(3))
    archive(evidence, capture(4))
