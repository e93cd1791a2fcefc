"""Verification that says what it did not check, trust anchors archived with the tokens, and
the cross-checks of the index against the custody log and the object store.

In process, with a real index (SQLite and PostgreSQL), a real local store and the local TSA.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, delete, select, text, update

from evidence_store.archive import EvidenceStore, archive
from evidence_store.custody import verify_custody, verify_log
from evidence_store.index import Index
from evidence_store.index.models import (
    Artifact,
    Collection,
    CustodyEvent,
    Snapshot,
    TimestampRecord,
)
from evidence_store.index.models.timestamp import TrustAnchor
from evidence_store.objects import LocalStore
from evidence_store.signing import Signer
from evidence_store.timestamps import openssl_verify_argv
from evidence_store.timestamps.service import (
    TimestampSettings,
    build_tree,
    timestamp_snapshots,
    timestamp_tree,
)
from evidence_store.verify import verify
from exhibits.report import ReportContext, render_json, render_text
from fixtures.tsa import LocalTSA
from schemas import Capture, CaptureArtifact


@pytest.fixture
def evidence(tmp_path: Path, db_url: str) -> Iterator[EvidenceStore]:
    index = Index(db_url)
    index.ensure_schema()
    store = EvidenceStore(
        LocalStore(tmp_path / "objects"), index, Signer.load_or_create(tmp_path / "keys"), "t"
    )
    try:
        yield store
    finally:
        index.dispose()


def add(evidence: EvidenceStore, count: int, collection: str = "case") -> list[str]:
    return [
        archive(
            evidence,
            Capture(
                collection=collection,
                kind="test",
                artifacts=[
                    CaptureArtifact(role="file", name="a.txt", data=f"{collection} {n}".encode())
                ],
            ),
        ).id
        for n in range(count)
    ]


def settings(tsa: LocalTSA, tmp_path: Path, *, anchors: bool = True) -> TimestampSettings:
    ca = tmp_path / "tsa-ca.pem"
    ca.write_bytes(tsa.ca_pem)
    return TimestampSettings(
        tsa_urls=(tsa.url,), trust_anchors=(ca,) if anchors else (), timeout=3.0
    )


def fresh_crl(tsa: LocalTSA) -> bytes:
    # Issued after the tokens (whole seconds, like the CRL's thisUpdate), so it speaks for them.
    return tsa.crl_pem(issued_at=datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2))


def tamper(evidence: EvidenceStore, *statements: Any) -> None:
    """Change rows behind the software's back, as someone with database access could:
    foreign keys off (SQLite's default for a new connection; a replica role on PostgreSQL)."""
    engine = create_engine(evidence.index.url)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SET session_replication_role = replica"))
        for statement in statements:
            conn.execute(statement)
    engine.dispose()


def custody_problems(evidence: EvidenceStore) -> list[str]:
    with evidence.index.session() as session:
        return verify_log(session).problems


def kinds(report: Any) -> set[str]:
    return {p.kind for p in report.problems}


# -- what was not checked --------------------------------------------------------------------
def test_tokens_without_any_anchor_are_unchecked_and_required_they_fail(
    evidence: EvidenceStore, tsa: LocalTSA, tmp_path: Path
) -> None:
    ids = add(evidence, 2)
    # Requested without trust anchors: nothing to archive with the tokens.
    assert (
        len(timestamp_snapshots(evidence, ids, settings(tsa, tmp_path, anchors=False)).timestamped)
        == 2
    )
    report = verify(evidence.objects, evidence.index)
    assert report.ok and not report.complete
    assert report.verdict == "OK with 2 unchecked"
    assert {(u.check, u.snapshot) for u in report.unchecked} == {("timestamp", s) for s in ids}
    assert all("no trust anchors supplied" in u.reason for u in report.unchecked)
    assert report.to_dict()["verdict"] == "OK with 2 unchecked"

    required = verify(evidence.objects, evidence.index, require=frozenset({"timestamps"}))
    assert not required.ok and required.unchecked == []
    assert kinds(required) == {"timestamp-unchecked"}
    assert required.verdict == "2 problem(s)"
    with pytest.raises(ValueError, match="unknown requirement"):
        verify(evidence.objects, evidence.index, require=frozenset({"magic"}))


def test_untimestamped_snapshots_and_trees_without_token_are_unchecked(
    evidence: EvidenceStore, tsa: LocalTSA, tmp_path: Path
) -> None:
    [loose] = add(evidence, 1)
    in_tree = add(evidence, 3)
    tree = build_tree(evidence, in_tree)
    report = verify(evidence.objects, evidence.index, timestamp_anchors=[tsa.ca_pem])
    assert report.ok and report.untimestamped == 4
    assert {u.what for u in report.unchecked} == {f"snapshot {loose}", f"Merkle tree {tree}"}
    required = verify(
        evidence.objects,
        evidence.index,
        timestamp_anchors=[tsa.ca_pem],
        require=frozenset({"timestamps"}),
    )
    assert len(required.problems) == 2 and not required.unchecked

    timestamp_tree(evidence, tree, settings(tsa, tmp_path))
    timestamp_snapshots(evidence, [loose], settings(tsa, tmp_path))
    done = verify(
        evidence.objects,
        evidence.index,
        timestamp_anchors=[tsa.ca_pem],
        timestamp_crls=[fresh_crl(tsa)],
        require=frozenset({"timestamps", "revocation"}),
    )
    assert done.complete and done.verdict == "OK", done.problems + done.unchecked  # type: ignore[operator]
    assert done.timestamps == 2 and done.untimestamped == 0


def test_missing_revocation_data_is_unchecked(
    evidence: EvidenceStore, tsa: LocalTSA, tmp_path: Path
) -> None:
    [sid] = add(evidence, 1)
    timestamp_snapshots(evidence, [sid], settings(tsa, tmp_path))
    report = verify(evidence.objects, evidence.index, timestamp_anchors=[tsa.ca_pem])
    assert report.ok and report.timestamps == 1
    [gap] = report.unchecked
    assert gap.check == "revocation" and gap.snapshot == sid and "no CRL of" in gap.reason
    required = verify(
        evidence.objects,
        evidence.index,
        timestamp_anchors=[tsa.ca_pem],
        require=frozenset({"revocation"}),
    )
    assert kinds(required) == {"revocation-unchecked"}
    with_crl = verify(
        evidence.objects,
        evidence.index,
        timestamp_anchors=[tsa.ca_pem],
        timestamp_crls=[fresh_crl(tsa)],
    )
    assert with_crl.complete, with_crl.unchecked


# -- archived trust anchors ------------------------------------------------------------------
def test_tokens_verify_against_archived_anchors_without_the_pem_files(
    evidence: EvidenceStore, tsa: LocalTSA, tmp_path: Path
) -> None:
    ids = add(evidence, 2)
    timestamp_snapshots(evidence, ids, settings(tsa, tmp_path))
    (tmp_path / "tsa-ca.pem").unlink()  # another machine: the anchor files are not there
    with evidence.index.session() as session:
        [anchor] = session.scalars(select(TrustAnchor))
        anchor_object, fingerprint = anchor.object_sha256, anchor.fingerprint
        assert "NOT TRUSTED - dsa-evidence test TSA" in anchor.subject
        actions = [e.action for e in session.scalars(select(CustodyEvent))]
    assert actions.count("trust-anchor-archived") == 1  # archived once, first seen then

    report = verify(evidence.objects, evidence.index, timestamp_crls=[fresh_crl(tsa)])
    assert report.complete and report.timestamps == 2
    assert report.anchors == [
        {"source": "archived", "fingerprint": fingerprint, "subject": anchor.subject, "tokens": 2}
    ]
    stamp = report.results[0]["timestamps"][0]
    assert stamp["anchor"]["source"] == "archived"
    assert stamp["anchor"]["fingerprint"] == fingerprint
    context = ReportContext(actor="t", database="db", object_store="store", scope="all")
    text_report = render_text(report, context)
    assert "archived: " in text_report and "anchors read from the archive itself" in text_report
    assert json.loads(render_json(report, context))["anchor_note"]

    supplied = verify(evidence.objects, evidence.index, timestamp_anchors=[tsa.ca_pem])
    assert {a["source"] for a in supplied.anchors} == {"supplied"}
    assert not supplied.archived_anchors_only

    # The archived anchor object works for openssl as well, as the -CAfile.
    with evidence.index.session() as session:
        reply = session.scalars(
            select(TimestampRecord.reply_sha256).where(TimestampRecord.snapshot_id == ids[0])
        ).one()
    argv = openssl_verify_argv(
        evidence.objects.path_of(reply),  # type: ignore[attr-defined]
        bytes.fromhex(ids[0]),
        evidence.objects.path_of(anchor_object),  # type: ignore[attr-defined]
    )
    check = subprocess.run(argv, capture_output=True, text=True)
    assert "Verification: OK" in check.stdout, check.stdout + check.stderr


def test_an_altered_archived_anchor_is_a_problem(
    evidence: EvidenceStore, tsa: LocalTSA, tmp_path: Path
) -> None:
    [sid] = add(evidence, 1)
    timestamp_snapshots(evidence, [sid], settings(tsa, tmp_path))
    other = LocalTSA()  # an anchor of someone else's CA, swapped in under the same row
    with evidence.index.session() as session:
        anchor_id = session.scalars(select(TrustAnchor.id)).one()
    stored = evidence.objects.put(other.ca_pem, media_type="application/x-pem-file")
    tamper(
        evidence,
        update(TrustAnchor).where(TrustAnchor.id == anchor_id).values(object_sha256=stored.sha256),
    )
    report = verify(evidence.objects, evidence.index)
    assert kinds(report) == {"timestamp-invalid"}
    assert "does not have its indexed fingerprint" in report.problems[0].message


# -- the index against the custody log and the store -----------------------------------------
def remove_last(evidence: EvidenceStore, ids: list[str], *, with_custody: bool = False) -> None:
    last, previous = ids[-1], ids[-2]
    statements: list[Any] = [
        delete(Artifact).where(Artifact.snapshot_id == last),
        delete(Snapshot).where(Snapshot.id == last),
        update(Collection)
        .where(Collection.name == "case")
        .values(chain_head=previous, chain_length=len(ids) - 1),
    ]
    if with_custody:
        statements.insert(0, delete(CustodyEvent).where(CustodyEvent.snapshot_id == last))
    tamper(evidence, *statements)


def test_removing_the_last_snapshot_is_found(evidence: EvidenceStore) -> None:
    ids = add(evidence, 3)
    # Not timestamped: complete only but for that.
    before = verify(evidence.objects, evidence.index, custody_log=True)
    assert before.ok and {u.check for u in before.unchecked} == {"timestamp"}
    remove_last(evidence, ids)
    report = verify(evidence.objects, evidence.index, custody_log=True)
    assert {"custody-log", "snapshot-removed"} <= kinds(report)
    text_of = "\n".join(map(str, report.problems))
    assert f"records snapshot {ids[-1]} as archived, but it is not in the index" in text_of
    assert "records 2 link(s)" in text_of and "archived 3 snapshot(s)" in text_of
    problems = custody_problems(evidence)
    assert any(ids[-1] in p for p in problems), problems
    # The same without the whole-archive checks does not look at the log.
    assert verify(evidence.objects, evidence.index).ok


def test_removing_the_last_snapshot_with_its_log_entry_leaves_its_manifest(
    evidence: EvidenceStore,
) -> None:
    ids = add(evidence, 3)
    remove_last(evidence, ids, with_custody=True)  # the log's last entry: the chain holds
    assert custody_problems(evidence) == []
    report = verify(evidence.objects, evidence.index, custody_log=True)
    assert report.ok and not report.complete
    [gap] = [u for u in report.unchecked if u.check == "index"]
    assert gap.what == f"manifest {ids[-1]}" and gap.check == "index"
    assert "case #3" in gap.reason and "removed together with its custody entries" in gap.reason


def test_removing_a_collection_is_found(evidence: EvidenceStore) -> None:
    kept = add(evidence, 1, "kept")
    gone = add(evidence, 2, "gone")
    with evidence.index.session() as session:
        collection_id = session.scalars(
            select(Collection.id).where(Collection.name == "gone")
        ).one()
    tamper(
        evidence,
        delete(Artifact).where(Artifact.snapshot_id.in_(gone)),
        delete(Snapshot).where(Snapshot.id.in_(gone)),
        delete(Collection).where(Collection.id == collection_id),
    )
    report = verify(evidence.objects, evidence.index, custody_log=True)
    assert not report.ok and report.snapshots == len(kept)
    problems = custody_problems(evidence)
    assert any(f"collection {collection_id}," in p and "is not in the index" in p for p in problems)
    assert sum("not in the index: it was removed" in p for p in problems) == 3


def test_an_emptied_custody_log_is_found(evidence: EvidenceStore) -> None:
    add(evidence, 2)
    tamper(evidence, delete(CustodyEvent))
    problems = custody_problems(evidence)
    assert problems == [
        "the custody log is empty, but the index holds 2 snapshot(s): the log was removed"
    ]
    report = verify(evidence.objects, evidence.index, custody_log=True)
    assert kinds(report) == {"custody-log"}


def test_custody_verify_reports_unchecked_head_tokens(
    evidence: EvidenceStore, tsa: LocalTSA, tmp_path: Path
) -> None:
    from evidence_store.timestamps.service import anchor_custody_head

    add(evidence, 1)
    anchor_custody_head(evidence, settings(tsa, tmp_path, anchors=False))
    with evidence.index.session() as session:
        check = verify_custody(evidence.objects, session)
        assert check.ok and check.verdict == "OK with 1 unchecked" and check.anchors_verified == 0
        strict = verify_custody(evidence.objects, session, require=frozenset({"timestamps"}))
        assert not strict.ok and strict.unchecked == []
        supplied = verify_custody(
            evidence.objects,
            session,
            timestamp_anchors=[tsa.ca_pem],
            timestamp_crls=[fresh_crl(tsa)],
        )
    assert supplied.complete and supplied.anchors_verified == 1
    assert supplied.to_dict()["verdict"] == "OK"


def test_report_lists_what_was_not_checked(evidence: EvidenceStore) -> None:
    [sid] = add(evidence, 1)
    report = verify(evidence.objects, evidence.index, custody_log=True)
    context = ReportContext(actor="t", database="db", object_store="store", scope="all")
    text_report = render_text(report, context)
    assert "Result:        OK with 1 UNCHECKED" in text_report
    assert f"snapshot {sid}: timestamp not checked: no timestamp token" in text_report
    data = json.loads(render_json(report, context))
    assert data["ok"] and not data["complete"] and data["verdict"] == "OK with 1 unchecked"
    assert data["unchecked"][0]["check"] == "timestamp"
