"""Per-run Merkle timestamps: one token over a tree of a run's snapshots, a proof for each."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select, update

from evidence_store.index import Index
from evidence_store.index.models import MerkleProof, MerkleTree, TimestampRecord
from evidence_store.timestamps import openssl_verify_argv
from fixtures.tsa import LocalTSA
from tests.conftest import run_cli

MERKLE_SOURCE = {"EVIDENCE_TIMESTAMPS__SOURCES": json.dumps({"sor-dumps": "merkle"})}


def object_path(env: dict[str, str], digest: str) -> Path:
    return Path(env["EVIDENCE_DATA_DIR"]) / "objects" / "sha256" / digest[:2] / digest[2:4] / digest


def make_files(tmp_path: Path, count: int) -> list[str]:
    paths = []
    for n in range(count):
        path = tmp_path / f"statement-{n}.csv"
        path.write_text(f"uuid,decision\n{n:08d}-aaaa,visibility restricted\n")
        paths.append(str(path))
    return paths


def rfc6962_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 section 2.1, written out recursively: an independent check of merkle.py."""
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + rfc6962_root(leaves[:k]) + rfc6962_root(leaves[k:])).digest()


def index_of(env: dict[str, str]) -> Index:
    return Index(env["EVIDENCE_DB_URL"])


def test_merkle_source_gets_one_token_for_the_run(
    tsa_env: dict[str, str], tsa: LocalTSA, tmp_path: Path
) -> None:
    env = tsa_env | MERKLE_SOURCE
    before = tsa.requests
    proc = run_cli(
        "ingest", *make_files(tmp_path, 5), "--source", "sor-dumps", "--json", env=env, check=True
    )
    results = json.loads(proc.stdout)
    ids = [r["snapshot"] for r in results]
    assert len({r["timestamp"] for r in results}) == 1 and results[0]["timestamp"]
    # One token over the root, one over the custody log's head: not one per snapshot.
    assert tsa.requests - before == 2

    index = index_of(env)
    with index.session() as session:
        [tree] = session.scalars(select(MerkleTree))
        proofs = list(session.scalars(select(MerkleProof).order_by(MerkleProof.leaf_index)))
        [token] = session.scalars(
            select(TimestampRecord).where(TimestampRecord.subject == "merkle-root")
        )
    index.dispose()
    assert tree.tree_size == 5 and [p.snapshot_id for p in proofs] == ids
    assert tree.run_id is not None
    assert token.tree_id == tree.id and token.imprint == tree.root
    # The stored leaf list rebuilds the root by an independent RFC 6962 implementation.
    listing = object_path(env, tree.leaves_sha256).read_text().split()
    assert listing == ids
    assert rfc6962_root([bytes.fromhex(i) for i in listing]).hex() == tree.root
    # openssl verifies the root's token with the TSA's CA and the stored chain.
    ca = Path(json.loads(env["EVIDENCE_TIMESTAMPS__TRUST_ANCHORS"])[0])
    argv = openssl_verify_argv(
        object_path(env, token.reply_sha256),
        bytes.fromhex(tree.root),
        ca,
        untrusted_file=object_path(env, token.chain_sha256 or ""),
    )
    check = subprocess.run(argv, capture_output=True, text=True)
    assert "Verification: OK" in check.stdout, check.stdout + check.stderr

    report = json.loads(run_cli("verify", "--all", "--json", env=env, check=True).stdout)
    assert report["ok"] and report["untimestamped"] == 0
    for result in report["results"]:
        [stamp] = result["timestamps"]
        assert stamp["via"].startswith(f"merkle tree {tree.id} leaf ")


def test_custody_show_lists_the_entries_of_the_snapshots_own_tree(
    tsa_env: dict[str, str], tmp_path: Path
) -> None:
    env = tsa_env | MERKLE_SOURCE
    runs = []
    for run in ("a", "b"):
        folder = tmp_path / run
        folder.mkdir()
        proc = run_cli(
            "ingest", *make_files(folder, 2), "--source", "sor-dumps", "--json", env=env, check=True
        )
        runs.append([r["snapshot"] for r in json.loads(proc.stdout)])
    shown = json.loads(run_cli("custody", "show", runs[1][0], "--json", env=env).stdout)
    trees = {e["details"]["tree"] for e in shown["entries"] if "tree" in e["details"]}
    actions = [e["action"] for e in shown["entries"]]
    assert actions == ["archived", "merkle-tree", "timestamped"]
    assert trees == {2}  # the tree of the second run, not the first


def test_sources_without_merkle_mode_keep_one_token_per_snapshot(
    tsa_env: dict[str, str], tmp_path: Path
) -> None:
    env = tsa_env | MERKLE_SOURCE
    run_cli("ingest", *make_files(tmp_path, 3), "--source", "reports", env=env, check=True)
    index = index_of(env)
    with index.session() as session:
        subjects = list(session.scalars(select(TimestampRecord.subject)))
        trees = list(session.scalars(select(MerkleTree)))
    index.dispose()
    assert sorted(subjects) == ["custody-head"] + ["snapshot"] * 3
    assert trees == []


def test_a_proof_or_leaf_list_changed_afterwards_is_reported(
    tsa_env: dict[str, str], tmp_path: Path
) -> None:
    env = tsa_env | MERKLE_SOURCE
    proc = run_cli(
        "ingest", *make_files(tmp_path, 4), "--source", "sor-dumps", "--json", env=env, check=True
    )
    ids = [r["snapshot"] for r in json.loads(proc.stdout)]
    index = index_of(env)
    with index.session() as session:
        proof = session.get(MerkleProof, ids[1])
        assert proof is not None
        path = proof.path.split(",")
    # A different sibling hash: the path no longer leads to the timestamped root.
    path[0] = hashlib.sha256(b"forged").hexdigest()
    with index.engine.begin() as conn:
        conn.execute(
            update(MerkleProof).where(MerkleProof.snapshot_id == ids[1]).values(path=",".join(path))
        )
    index.dispose()
    proc = run_cli("verify", "--all", "--json", env=env)
    assert proc.returncode == 1
    problems = json.loads(proc.stdout)["problems"]
    assert [(p["snapshot"], p["kind"]) for p in problems] == [(ids[1], "timestamp-invalid")]
    assert "inclusion proof does not lead to root" in problems[0]["message"]


def test_a_changed_leaf_list_is_reported_for_every_leaf(
    tsa_env: dict[str, str], tmp_path: Path
) -> None:
    env = tsa_env | MERKLE_SOURCE
    run_cli("ingest", *make_files(tmp_path, 3), "--source", "sor-dumps", env=env, check=True)
    index = index_of(env)
    with index.session() as session:
        [tree] = session.scalars(select(MerkleTree))
    index.dispose()
    leaves = object_path(env, tree.leaves_sha256)
    os.chmod(leaves, 0o644)
    lines = leaves.read_text().split()
    leaves.write_text("\n".join(reversed(lines)) + "\n")
    proc = run_cli("verify", "--all", "--json", env=env)
    assert proc.returncode == 1
    problems = json.loads(proc.stdout)["problems"]
    assert {p["snapshot"] for p in problems} == set(lines)
    assert all("leaves do not give the recorded root" in p["message"] for p in problems)


def test_tree_without_a_token_is_retried_as_one(tsa_env: dict[str, str], tmp_path: Path) -> None:
    env = tsa_env | MERKLE_SOURCE
    down = env | {"EVIDENCE_TIMESTAMPS__TSA_URLS": json.dumps(["http://127.0.0.1:9/tsr"])}
    proc = run_cli("ingest", *make_files(tmp_path, 3), "--source", "sor-dumps", "--json", env=down)
    assert proc.returncode == 0, proc.stderr
    ids = [r["snapshot"] for r in json.loads(proc.stdout)]
    assert "3 snapshot(s) archived without a timestamp" in proc.stderr
    listed = json.loads(run_cli("timestamp", "retry", "--list", "--json", env=env).stdout)
    # Oldest first, but archive_many stores the files concurrently: the order of the arguments
    # is not the order of archiving.
    assert sorted(listed["untimestamped"]) == sorted(ids) and len(listed["trees"]) == 1
    # Unstamped snapshots are a finding of verify, counted, but not a broken archive.
    report = json.loads(run_cli("verify", "--all", "--json", env=env, check=True).stdout)
    assert report["untimestamped"] == 3
    retried = json.loads(run_cli("timestamp", "retry", "--json", env=env, check=True).stdout)
    assert sorted(t["snapshot"] for t in retried["timestamped"]) == sorted(ids)
    assert retried["trees"] == listed["trees"]
    index = index_of(env)
    with index.session() as session:
        subjects = sorted(session.scalars(select(TimestampRecord.subject)))
    index.dispose()
    assert subjects == ["merkle-root"]  # the failed run could not anchor the custody head
    report = json.loads(run_cli("verify", "--all", "--json", env=env, check=True).stdout)
    assert report["untimestamped"] == 0


@pytest.mark.parametrize("count", [1, 2, 7])
def test_every_tree_size_verifies(tsa_env: dict[str, str], tmp_path: Path, count: int) -> None:
    env = tsa_env | MERKLE_SOURCE | {"EVIDENCE_TIMESTAMPS__ANCHOR_CUSTODY": "false"}
    run_cli("ingest", *make_files(tmp_path, count), "--source", "sor-dumps", env=env, check=True)
    report = json.loads(run_cli("verify", "--all", "--json", env=env, check=True).stdout)
    assert report["ok"] and report["timestamps"] == 1 and report["untimestamped"] == 0
