"""kill -9 of `evidence ingest` at random moments never leaves a visible partial snapshot."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.slow

TRIALS = int(os.environ.get("TEST_CRASH_TRIALS", "20"))


def _start_ingest(files: list[Path], env: dict[str, str]) -> subprocess.Popen[bytes]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("EVIDENCE_")} | env
    return subprocess.Popen(
        [sys.executable, "-m", "jobs.cli", "ingest", *map(str, files), "--collection", "crash"],
        env=full_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _snapshot_rows(env: dict[str, str]) -> list[dict]:
    proc = run_cli(
        "snapshots",
        "list",
        "--collection",
        "crash",
        "--limit",
        "100000",
        "--json",
        env=env,
        check=True,
    )
    return json.loads(proc.stdout)


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_kill_9_at_random_moments(db_url: str, tmp_path: Path) -> None:
    rng = random.Random(20261128)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    files = []
    for i in range(10):
        path = inputs / f"file-{i}.bin"
        path.write_bytes(os.urandom(rng.randint(64, 1024) * 1024))
        files.append(path)
    env = {"EVIDENCE_DATA_DIR": str(tmp_path / "data"), "EVIDENCE_DB_URL": db_url}

    # The first run creates the index, the key and warm caches; the second one is timed, so
    # that the kill times spread over what a run really takes.
    assert _start_ingest(files, env).wait(120) == 0
    started = time.monotonic()
    assert _start_ingest(files, env).wait(120) == 0
    full_run = time.monotonic() - started
    expected_count = 2 * len(files)

    interrupted = 0
    for _trial in range(TRIALS):
        proc = _start_ingest(files, env)
        time.sleep(rng.uniform(0.0, 0.9 * full_run))
        proc.send_signal(signal.SIGKILL)
        proc.wait(60)
        rows = _snapshot_rows(env)
        added = len(rows) - expected_count
        if proc.returncode == -signal.SIGKILL and added < len(files):
            interrupted += 1
        expected_count = len(rows)
        # Every visible snapshot is whole: its manifest lists exactly its one artifact.
        for row in rows:
            assert len(row["artifacts"]) == 1, row

    assert interrupted >= TRIALS // 3, (
        f"only {interrupted} of {TRIALS} trials interrupted an ingest"
    )
    rows = _snapshot_rows(env)
    assert sorted(r["sequence"] for r in rows) == list(range(1, len(rows) + 1))
    verified = run_cli("verify", "--all", "--json", env=env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["snapshots"] == len(rows)
    # Bytes of interrupted snapshots remain as orphans: listed, never deleted.
    sweep = json.loads(run_cli("store", "sweep", "--json", env=env, check=True).stdout)
    data = tmp_path / "data" / "objects"
    for digest in sweep["orphans"]:
        assert (data / "sha256" / digest[:2] / digest[2:4] / digest).is_file()
