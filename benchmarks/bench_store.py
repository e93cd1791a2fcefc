"""store: archive N snapshots of three artifacts (1 KB, 100 KB, 1 MB) into the local store and
the SQLite index, against a baseline that only hashes and writes the same bytes with fsync.

Goal: ratio (archive MB/s / baseline MB/s) of at least 0.7.

Disk speed on shared machines drifts by a factor of two within minutes, so the three methods
run interleaved in rounds (each round: baseline, archive() one by one, archive_many()), with
dirty pages synced before each timed step; each figure sums its method's rounds.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from benchmarks.common import SIZES, Figure, figure, payloads, report, timed
from evidence_store.archive import EvidenceStore, archive, archive_many
from evidence_store.index import Index
from evidence_store.objects import LocalStore
from evidence_store.signing import Signer
from schemas import Capture, CaptureArtifact


def captures(numbers: range) -> Iterator[Capture]:
    """One capture per number, three unique artifacts each."""
    roles = ("small", "medium", "large")
    for n in numbers:
        arts = [
            CaptureArtifact(role=role, name=f"{role}.bin", data=data)
            for role, data in zip(roles, payloads(n), strict=True)
        ]
        yield Capture(collection="bench", kind="bench", artifacts=arts)


def baseline(root: Path, numbers: range) -> None:
    """Hash each payload and write it to its own file with fsync: the floor of the real work."""
    for n in numbers:
        for data in payloads(n):
            digest = hashlib.sha256(data).hexdigest()
            fd = os.open(root / digest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)


def open_evidence(root: Path) -> EvidenceStore:
    root.mkdir(parents=True, exist_ok=True)
    index = Index(f"sqlite:///{root / 'index.sqlite'}")
    index.ensure_schema()
    return EvidenceStore(
        LocalStore(root / "objects"), index, Signer.load_or_create(root / "keys"), "bench"
    )


def main(argv: list[str] | None = None) -> list[Figure]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--snapshots", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument(
        "--dir", type=Path, default=None, help="work folder (default: a temp folder)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the archive_many() archive")
    args = parser.parse_args(argv)
    work = args.dir or Path(tempfile.mkdtemp(prefix="bench-store-"))
    count = args.snapshots
    per_round = max(1, count // args.rounds)
    total_mb = per_round * args.rounds * sum(SIZES) / 1e6
    seconds = {"baseline": 0.0, "one": 0.0, "many": 0.0}
    (work / "baseline").mkdir(parents=True)
    one, many = open_evidence(work / "one"), open_evidence(work / "many")
    try:
        for r in range(args.rounds):
            numbers = range(r * per_round, (r + 1) * per_round)
            os.sync()
            with timed() as t:
                baseline(work / "baseline", numbers)
            seconds["baseline"] += t["seconds"]
            os.sync()
            with timed() as t:
                for capture in captures(numbers):
                    archive(one, capture)
            seconds["one"] += t["seconds"]
            os.sync()
            with timed() as t:
                for _ in archive_many(many, captures(numbers)):
                    pass
            seconds["many"] += t["seconds"]
            # Only the archive that --keep asks for stays; the rest would fill small disks.
            shutil.rmtree(work / "baseline")
            (work / "baseline").mkdir()
        snapshots = per_round * args.rounds
        figures: dict[str, float | int | str] = {
            "snapshots": snapshots,
            "payload MB": round(total_mb, 1),
            "baseline MB/s (hash+write+fsync)": total_mb / seconds["baseline"],
            "archive() one by one MB/s": total_mb / seconds["one"],
            "archive() one by one snapshots/s": snapshots / seconds["one"],
            "ratio one by one/baseline": seconds["baseline"] / seconds["one"],
            "archive_many() MB/s": total_mb / seconds["many"],
            "archive_many() snapshots/s": snapshots / seconds["many"],
            "ratio archive_many/baseline": seconds["baseline"] / seconds["many"],
            "goal ratio": 0.7,
        }
        report("store", figures)
        baseline_mbs = total_mb / seconds["baseline"]
        return [
            figure(
                "store",
                "archive_many() MB/s",
                total_mb / seconds["many"],
                unit="MB/s",
                baseline=baseline_mbs,
                baseline_name="MB/s hash+write+fsync",
                goal=0.7,
            ),
            figure(
                "store",
                "archive() one by one MB/s",
                total_mb / seconds["one"],
                unit="MB/s",
                baseline=baseline_mbs,
                baseline_name="MB/s hash+write+fsync",
            ),
        ]
    finally:
        one.index.dispose()
        many.index.dispose()
        if args.keep:
            shutil.rmtree(work / "one", ignore_errors=True)
            shutil.rmtree(work / "baseline", ignore_errors=True)
            print(f"  archive kept at {work / 'many'}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
