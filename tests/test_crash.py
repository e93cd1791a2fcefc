"""kill -9 of `evidence ingest` at random moments, and of an archiving process at chosen points
of the object store's group flush, never leaves a visible partial snapshot."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from evidence_store.objects import LocalStore
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


# -- kill -9 at chosen points of the local store's group flush -------------------------------
#
# The store writes every object of a group (fsyncs start in the background), then at the flush
# before the index commit waits for the fsyncs, links each file under its digest and fsyncs
# the directories. A child process archives with a real local store that stops for good at one
# of those points; the test kills it there and checks what a crash at that moment leaves.

CRASH_CAPTURES = 12
CRASH_BATCH = 4


class _StoppingStore(LocalStore):
    """A real local store that stops for good at ``point``, once its ``after``-th flush has
    begun (at the second link of that flush for "synced", so that the group is half named)."""

    def __init__(self, root: Path, point: str, after: int, marker: Path) -> None:
        super().__init__(root)
        self.point, self.after, self.marker = point, after, marker
        self.nth = 2 if point == "synced" else 1
        self.flushes = 0
        self.reached: dict[str, int] = {}
        self.stopped = False
        self.guard = threading.Lock()

    def _reach(self, point: str) -> None:
        with self.guard:
            self.reached[point] = count = self.reached.get(point, 0) + 1
            stop = (
                not self.stopped
                and point == self.point
                and self.flushes >= self.after
                and count >= self.nth
            )
            self.stopped |= stop
        if stop:
            self.marker.write_text(point)
            while True:  # until the test's kill -9
                time.sleep(1)

    def _sync(self, entry: Any) -> None:
        self._reach("written")  # the file is written, unnamed, not yet fsynced
        super()._sync(entry)

    def _link(self, entry: Any) -> None:
        self._reach("synced")  # fsynced; this one and later ones of the group not yet named
        super()._link(entry)

    def _sync_directories(self, dirs: set[Path]) -> None:
        self._reach("linked")  # every file named; the directories not yet fsynced
        super()._sync_directories(dirs)

    def flush(self) -> None:
        with self.guard:
            self.flushes += 1
            self.reached = {}
        super().flush()
        self._reach("flushed")  # every object durable; the index commit not yet made


def crash_child(argv: list[str]) -> None:
    """In the child process: archive CRASH_CAPTURES captures of three artifacts in groups."""
    from evidence_store.archive import EvidenceStore, archive_many
    from jobs.config import load_settings
    from jobs.context import open_evidence
    from schemas import Capture, CaptureArtifact

    point, after, marker, run, tmpfile = argv
    settings = load_settings()
    evidence = open_evidence(settings)
    objects = _StoppingStore(settings.data_path / "objects", point, int(after), Path(marker))
    objects._use_tmpfile = tmpfile == "tmpfile"
    evidence = EvidenceStore(objects, evidence.index, evidence.signer, "crash-test")
    captures = (
        Capture(
            collection="crash",
            kind="capture",
            artifacts=[
                CaptureArtifact(role=role, name=f"{role}.bin", data=os.urandom(size) + tag)
                for role, size in (("small", 900), ("medium", 90_000), ("large", 700_000))
            ],
        )
        for tag in (f"{run}-{n}".encode() for n in range(CRASH_CAPTURES))
    )
    for _ in archive_many(evidence, captures, batch=CRASH_BATCH):
        pass


def _run_child(
    env: dict[str, str], point: str, after: int, marker: Path, run: str, tmpfile: bool = True
) -> subprocess.Popen[bytes]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("EVIDENCE_")} | env
    code = "import sys; from tests.test_crash import crash_child; crash_child(sys.argv[1:])"
    args = [point, str(after), str(marker), run, "tmpfile" if tmpfile else "named"]
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env=full_env,
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _every_name_holds_its_bytes(objects: Path) -> int:
    """Every named object hashes to its name: no name ever points at partial bytes."""
    count = 0
    for path in (objects / "sha256").glob("*/*/*"):
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name, path
        count += 1
    return count


@pytest.mark.parametrize(
    ("db_url", "point", "after", "tmpfile"),
    [
        ("sqlite", "written", 1, True),  # between the writes and their fsyncs
        ("sqlite", "written", 1, False),  # the same with named temporary files (no O_TMPFILE)
        ("sqlite", "synced", 2, True),  # the second group's fsyncs done, the group half named
        ("postgresql", "synced", 2, True),
        ("sqlite", "linked", 2, True),  # named, directories not fsynced
        ("sqlite", "flushed", 2, True),  # durable, before the index commit
        ("postgresql", "flushed", 2, True),
    ],
    indirect=["db_url"],
)
def test_kill_9_inside_the_group_flush(
    db_url: str, tmp_path: Path, point: str, after: int, tmpfile: bool
) -> None:
    env = {"EVIDENCE_DATA_DIR": str(tmp_path / "data"), "EVIDENCE_DB_URL": db_url}
    marker = tmp_path / "stopped"
    child = _run_child(env, point, after, marker, "first", tmpfile)
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
        assert time.monotonic() < deadline, f"the child never reached {point}"
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    assert child.wait(60) == -signal.SIGKILL

    rows = _snapshot_rows(env)
    assert len(rows) < CRASH_CAPTURES  # the crash interrupted the archive
    if point != "written":
        assert rows  # the first group was committed before the second flush began
    for row in rows:  # every visible snapshot is whole
        assert [a["role"] for a in row["artifacts"]] == ["small", "medium", "large"], row
    objects = tmp_path / "data" / "objects"
    named = _every_name_holds_its_bytes(objects)
    verified = run_cli("verify", "--all", "--json", env=env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["snapshots"] == len(rows)
    # Objects of the interrupted group are orphans (listed, kept) or were never named; only
    # named temporary files can be left otherwise, and sweep reports them.
    sweep = json.loads(run_cli("store", "sweep", "--json", env=env, check=True).stdout)
    assert len(sweep["orphans"]) == named - 5 * len(rows)
    if tmpfile:
        assert not sweep["temporary"]

    # The archive goes on from there: one unbroken chain that verifies.
    again = _run_child(env, "none", 0, marker, "second")
    assert again.wait(120) == 0, again.stderr.read().decode() if again.stderr else ""
    rows = _snapshot_rows(env)
    assert sorted(r["sequence"] for r in rows) == list(range(1, len(rows) + 1))
    verified = run_cli("verify", "--all", "--json", env=env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    _every_name_holds_its_bytes(objects)
