"""verify: `evidence verify --all` MB/s against `openssl dgst -sha256` over the same files.

Goal: ratio of at least 0.8. Both read the same artifact files, warm in the page cache (each is
run once before timing); the best of several alternating rounds is kept for each.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.bench_store import captures, open_evidence
from benchmarks.common import Figure, figure, report, timed
from evidence_store.archive import archive_many
from evidence_store.verify import verify


def artifact_files(root: Path) -> list[Path]:
    evidence = open_evidence(root)
    from sqlalchemy import select

    from evidence_store.index import Artifact

    with evidence.index.session() as session:
        digests = sorted(set(session.scalars(select(Artifact.sha256))))
    evidence.index.dispose()
    objects = evidence.objects
    return [objects.path_of(d) for d in digests]  # type: ignore[attr-defined]


def run_openssl(files: list[Path]) -> None:
    for start in range(0, len(files), 1000):  # stay well below the argument-length limit
        subprocess.run(
            ["openssl", "dgst", "-sha256", *map(str, files[start : start + 1000])],
            check=True,
            stdout=subprocess.DEVNULL,
        )


def run_cli(root: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVIDENCE_")}
    env["EVIDENCE_DATA_DIR"] = str(root)
    proc = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "verify", "--all", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"evidence verify failed: {proc.stderr or proc.stdout}")
    return json.loads(proc.stdout)


def main(argv: list[str] | None = None) -> list[Figure]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--snapshots", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-verify-"))
    try:
        root = work / "archive"
        evidence = open_evidence(root)
        for _ in archive_many(evidence, captures(range(args.snapshots))):
            pass
        evidence.index.dispose()
        files = artifact_files(root)
        total_mb = sum(f.stat().st_size for f in files) / 1e6
        run_openssl(files)  # warm the page cache for both
        best = {"openssl": float("inf"), "cli": float("inf"), "inproc": float("inf")}
        for _ in range(args.rounds):
            with timed() as t:
                run_openssl(files)
            best["openssl"] = min(best["openssl"], t["seconds"])
            with timed() as t:
                result = run_cli(root)
            best["cli"] = min(best["cli"], t["seconds"])
            assert result["ok"] and result["snapshots"] == args.snapshots
            evidence = open_evidence(root)
            with timed() as t:
                assert verify(evidence.objects, evidence.index).ok
            evidence.index.dispose()
            best["inproc"] = min(best["inproc"], t["seconds"])
        figures: dict[str, float | int | str] = {
            "snapshots": args.snapshots,
            "artifact MB": round(total_mb, 1),
            "openssl dgst -sha256 MB/s": total_mb / best["openssl"],
            "evidence verify --all MB/s": total_mb / best["cli"],
            "ratio verify CLI/openssl": best["openssl"] / best["cli"],
            "verify() in process MB/s": total_mb / best["inproc"],
            "ratio verify()/openssl": best["openssl"] / best["inproc"],
            "hashing threads": os.cpu_count() or 1,
            "goal ratio": 0.8,
        }
        report("verify", figures)
        openssl_mbs = total_mb / best["openssl"]
        return [
            figure(
                "verify",
                "evidence verify --all MB/s",
                total_mb / best["cli"],
                unit="MB/s",
                baseline=openssl_mbs,
                baseline_name="MB/s openssl dgst -sha256",
                goal=0.8,
            ),
            figure(
                "verify",
                "verify() in process MB/s",
                total_mb / best["inproc"],
                unit="MB/s",
                baseline=openssl_mbs,
                baseline_name="MB/s openssl dgst -sha256",
            ),
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
