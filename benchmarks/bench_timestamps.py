"""timestamps: snapshots/s timestamped per snapshot and per run (Merkle); proofs verified/s.

The local test TSA runs in a process of its own (as a real TSA would be elsewhere). Figures:

- baseline: bare ``request_timestamp`` round trips per second (query, signed answer, full
  token verification; nothing stored): the floor of per-snapshot timestamping;
- per-snapshot mode: ``timestamp_snapshots`` over N snapshots (token, reply and chain stored
  with fsync, index row and custody entry per snapshot), as a ratio to the baseline;
- Merkle mode: ``build_tree`` + ``timestamp_tree`` over N other snapshots, as a speed-up
  over per-snapshot mode;
- proofs: bare ``verify_inclusion`` calls per second, and snapshots per second through
  ``check_tokens`` (what `evidence verify` does) for a Merkle tree vs one token each.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import select

from benchmarks.common import Figure, figure, report, timed
from evidence_store.archive import EvidenceStore, archive_many
from evidence_store.index import Index
from evidence_store.index.models import MerkleProof, MerkleTree
from evidence_store.objects import LocalStore
from evidence_store.signing import Signer
from evidence_store.timestamps import request_timestamp
from evidence_store.timestamps.checks import check_tokens
from evidence_store.timestamps.merkle import leaf_hash, verify_inclusion
from evidence_store.timestamps.service import (
    TimestampSettings,
    build_tree,
    timestamp_snapshots,
    timestamp_tree,
)
from schemas import Capture, CaptureArtifact


def start_tsa(work: Path) -> tuple[subprocess.Popen[str], str, Path]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "fixtures.tsa", "--quiet", "--out", str(work / "tsa")],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http"):
        proc.kill()
        raise SystemExit(f"the test TSA did not start: {url!r}")
    return proc, url, work / "tsa" / "ca.pem"


def captures(prefix: str, count: int) -> Iterator[Capture]:
    for n in range(count):
        data = f"{prefix}-{n}\n".encode()
        yield Capture(
            collection=prefix,
            kind="bench",
            artifacts=[CaptureArtifact(role="original", name="s.txt", data=data)],
        )


def archive_set(root: Path, prefix: str, count: int) -> list[str]:
    # Setup, not measured: objects without fsync so that 2N snapshots are quick to make.
    root.mkdir(parents=True, exist_ok=True)
    setup = EvidenceStore(
        LocalStore(root / "objects", fsync=False),
        Index(f"sqlite:///{root / 'index.sqlite'}"),
        Signer.load_or_create(root / "keys"),
        "bench",
    )
    setup.index.ensure_schema()
    ids = [a.id for a in archive_many(setup, captures(prefix, count), batch=256)]
    setup.index.dispose()
    return ids


def main(argv: list[str] | None = None) -> list[Figure]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--snapshots", type=int, default=10_000)
    parser.add_argument("--baseline-requests", type=int, default=1000)
    args = parser.parse_args(argv)
    n = args.snapshots
    work = Path(tempfile.mkdtemp(prefix="bench-timestamps-"))
    tsa, url, ca = start_tsa(work)
    try:
        root = work / "archive"
        per_snapshot_ids = archive_set(root, "single", n)
        merkle_ids = archive_set(root, "merkle", n)
        evidence = EvidenceStore(
            LocalStore(root / "objects"),
            Index(f"sqlite:///{root / 'index.sqlite'}"),
            Signer.load_or_create(root / "keys"),
            "bench",
        )
        config = TimestampSettings(tsa_urls=(url,), trust_anchors=(ca,), timeout=10)
        anchors = config.anchors()

        sample = [bytes.fromhex(i) for i in per_snapshot_ids[: args.baseline_requests]]
        with timed() as t_base:
            for digest in sample:
                request_timestamp(digest, [url], timeout=10, trust_anchors=anchors)
        with timed() as t_single:
            single = timestamp_snapshots(evidence, per_snapshot_ids, config)
        with timed() as t_merkle:
            run = timestamp_tree(evidence, build_tree(evidence, merkle_ids), config)
        assert not single.failed and not run.failed, "the TSA refused some requests"

        with evidence.index.session() as session:
            [tree] = session.scalars(select(MerkleTree))
            proofs = list(session.scalars(select(MerkleProof)))
        root_hash = bytes.fromhex(tree.root)
        decoded = [
            (
                leaf_hash(bytes.fromhex(p.snapshot_id)),
                p.leaf_index,
                [bytes.fromhex(h) for h in p.path.split(",") if h],
            )
            for p in proofs
        ]
        with timed() as t_proofs:
            assert all(
                verify_inclusion(leaf, index, tree.tree_size, path, root_hash)
                for leaf, index, path in decoded
            )
        with timed() as t_check_merkle:
            merkle_check = check_tokens(evidence.objects, evidence.index, merkle_ids, anchors)
        with timed() as t_check_single:
            single_check = check_tokens(evidence.objects, evidence.index, per_snapshot_ids, anchors)
        assert not merkle_check.problems and not single_check.problems
        assert len(merkle_check.times) == len(single_check.times) == n
        evidence.index.dispose()

        baseline = len(sample) / t_base["seconds"]
        per_snapshot = n / t_single["seconds"]
        merkle = n / t_merkle["seconds"]
        figures: dict[str, float | int | str] = {
            "snapshots per mode": n,
            "baseline TSA requests/s": baseline,
            "per-snapshot snapshots/s": per_snapshot,
            "per-snapshot / baseline": per_snapshot / baseline,
            "merkle snapshots/s": merkle,
            "merkle / per-snapshot": merkle / per_snapshot,
            "proofs verified/s": len(decoded) / t_proofs["seconds"],
            "check merkle snapshots/s": n / t_check_merkle["seconds"],
            "check own-token snapshots/s": n / t_check_single["seconds"],
            "check merkle / own-token": t_check_single["seconds"] / t_check_merkle["seconds"],
        }
        report("timestamps", figures)
        return [
            figure(
                "timestamps",
                "per-snapshot timestamping snapshots/s",
                per_snapshot,
                unit="/s",
                baseline=baseline,
                baseline_name="bare TSA requests/s",
            ),
            figure(
                "timestamps",
                "Merkle timestamping snapshots/s",
                merkle,
                unit="/s",
                baseline=per_snapshot,
                baseline_name="/s per-snapshot mode",
            ),
            figure(
                "timestamps",
                "check Merkle proofs snapshots/s",
                n / t_check_merkle["seconds"],
                unit="/s",
                baseline=n / t_check_single["seconds"],
                baseline_name="/s check own tokens",
            ),
        ]
    finally:
        tsa.terminate()
        tsa.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
