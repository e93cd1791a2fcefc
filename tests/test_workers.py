"""Runs shared by several processes: `--workers N` on one machine, `evidence enqueue` and
`evidence worker` over the real Redis (127.0.0.1:6379) and PostgreSQL, a worker killed with
-9 half way, and an interrupted run resumed without capturing twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from evidence_store.index.models import Run, Snapshot
from fixtures.site import FixtureSite
from jobs.config import load_settings
from jobs.context import open_evidence
from tests.conftest import run_cli

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(scope="module")
def site() -> Any:
    with FixtureSite() as running:
        yield running


def _urls(site: FixtureSite, n: int, tmp_path: Path) -> Path:
    path = tmp_path / "urls.txt"
    path.write_text("\n".join(site.url(f"/pages/{i}") for i in range(n)), encoding="utf-8")
    return path


def _env(tmp_path: Path, db_url: str, **extra: str) -> dict[str, str]:
    return {
        "EVIDENCE_DATA_DIR": str(tmp_path / "data"),
        "EVIDENCE_DB_URL": db_url,
        "EVIDENCE_ALLOW_PRIVATE": "true",
        **extra,
    }


def _snapshots_by_url(env: dict[str, str], run_id: str) -> Counter[str]:
    settings = load_settings(data_dir=Path(env["EVIDENCE_DATA_DIR"]), db_url=env["EVIDENCE_DB_URL"])
    evidence = open_evidence(settings)
    with evidence.index.session() as session:
        rows = session.execute(
            select(Snapshot.source_url, func.count())
            .where(Snapshot.run_id == run_id, Snapshot.kind == "capture-http")
            .group_by(Snapshot.source_url)
        ).all()
    evidence.index.dispose()
    return Counter(dict(rows))


def _run(env: dict[str, str], run_id: str) -> Run:
    settings = load_settings(data_dir=Path(env["EVIDENCE_DATA_DIR"]), db_url=env["EVIDENCE_DB_URL"])
    evidence = open_evidence(settings)
    with evidence.index.session() as session:
        row = session.get(Run, run_id)
    evidence.index.dispose()
    return row


def test_workers_on_one_machine_share_one_run(site: FixtureSite, tmp_path: Path) -> None:
    env = _env(tmp_path, f"sqlite:///{tmp_path / 'index.sqlite'}")
    urls = _urls(site, 40, tmp_path)
    proc = run_cli(
        "crawl",
        "pages",
        "-a",
        f"urls_file={urls}",
        "-a",
        "obey_robots=false",
        "--workers",
        "2",
        "--json",
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    counts = _snapshots_by_url(env, result["run"])
    assert len(counts) == 40 and set(counts.values()) == {1}  # every page, exactly once
    row = _run(env, result["run"])
    assert row.status == "succeeded" and row.stats["workers"] == 2
    assert row.stats["snapshots"] == 40
    verified = run_cli("verify", "--all", "--json", env=env)
    assert json.loads(verified.stdout)["ok"], verified.stdout


def test_an_interrupted_run_resumes_without_capturing_twice(
    site: FixtureSite, tmp_path: Path
) -> None:
    env = _env(tmp_path, f"sqlite:///{tmp_path / 'index.sqlite'}")
    urls = _urls(site, 30, tmp_path)
    site.reset_stats()
    # A run killed half way: its process dies after some pages are archived.
    crawl = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jobs.cli",
            "crawl",
            "pages",
            "-a",
            f"urls_file={urls}",
            "-a",
            "obey_robots=false",
            "-a",
            "delay=0.2",
            "-a",
            "concurrency=1",
        ],
        env={k: v for k, v in os.environ.items() if not k.startswith("EVIDENCE_")} | env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    run_id = None
    while time.monotonic() < deadline:
        listed = run_cli("runs", "list", "--json", env=env)
        runs = json.loads(listed.stdout) if listed.returncode == 0 else []
        if runs:
            run_id = runs[0]["id"]
            if sum(_snapshots_by_url(env, run_id).values()) >= 5:
                break
        time.sleep(0.3)
    assert run_id is not None
    crawl.send_signal(signal.SIGKILL)
    crawl.wait(timeout=30)
    before = _snapshots_by_url(env, run_id)
    assert 5 <= sum(before.values()) < 30

    listed = json.loads(run_cli("runs", "list", "--json", env=env, check=True).stdout)
    assert listed[0]["status"] == "interrupted"  # found dead by the `runs list` above
    resumed = run_cli("runs", "resume", run_id[:8], "--workers", "2", "--json", env=env)
    assert resumed.returncode == 0, resumed.stderr
    after = _snapshots_by_url(env, run_id)
    assert len(after) == 30 and set(after.values()) == {1}
    assert {u: n for u, n in after.items() if u in before} == before  # none captured again
    row = _run(env, run_id)
    assert row.status == "succeeded" and row.stats["resumed"] == 1
    again = run_cli("runs", "resume", run_id[:8], env=env)
    assert again.returncode == 2 and "only an interrupted or failed run" in again.stderr


def test_enqueue_without_a_frontier_says_what_to_set(tmp_path: Path) -> None:
    env = _env(tmp_path, f"sqlite:///{tmp_path / 'index.sqlite'}")
    proc = run_cli("enqueue", "pages", "-a", "url=https://example.org/", env=env)
    assert proc.returncode == 2 and "redis_url" in proc.stderr


@pytest.mark.slow
@pytest.mark.postgres
def test_two_workers_on_redis_and_one_killed(
    site: FixtureSite, tmp_path: Path, pg_url: str
) -> None:
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    env = _env(
        tmp_path,
        pg_url,
        EVIDENCE_WORKERS__REDIS_URL=REDIS_URL,
        EVIDENCE_WORKERS__PREFIX=prefix,
        EVIDENCE_WORKERS__BATCH="10",
        EVIDENCE_WORKERS__HEARTBEAT="0.5",
        EVIDENCE_WORKERS__LOST_AFTER="3",
    )
    urls = _urls(site, 500, tmp_path)
    enqueued = run_cli(
        "enqueue",
        "pages",
        "-a",
        f"urls_file={urls}",
        "-a",
        "obey_robots=false",
        "--no-wait",
        "--json",
        env=env,
    )
    assert enqueued.returncode == 0, enqueued.stderr
    run_id = json.loads(enqueued.stdout)["run"]
    base = {k: v for k, v in os.environ.items() if not k.startswith("EVIDENCE_")} | env
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "jobs.cli", "worker", "--idle-exit", "20"],
            env=base,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for _ in range(2)
    ]
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and sum(_snapshots_by_url(env, run_id).values()) < 100:
            time.sleep(0.5)
        # Kill -9 one worker and its part in hand, half way through the run.
        os.killpg(workers[0].pid, signal.SIGKILL)
        workers[0].wait(timeout=30)
        while time.monotonic() < deadline and _run(env, run_id).status == "running":
            time.sleep(1)
        survivor = workers[1]
        survivor.wait(timeout=120)
    finally:
        for worker in workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
    row = _run(env, run_id)
    assert row.status == "succeeded", (row.status, row.stats, survivor.stderr.read())
    counts = _snapshots_by_url(env, run_id)
    assert len(counts) == 500 and set(counts.values()) == {1}  # every page exactly once
    verified = run_cli("verify", "--all", "--json", env=env)
    assert json.loads(verified.stdout)["ok"], verified.stdout[-2000:]
    import redis

    assert list(redis.Redis.from_url(REDIS_URL).scan_iter(match=f"{prefix}:run:*")) == []


def test_a_runs_plan_never_keeps_credentials() -> None:
    from jobs.crawl import run_plan

    plan = run_plan(
        "pages",
        ["url=https://x.example/a?access_token=SECRET-0451&page=2", "mode=http"],
        {"source_url": "https://alice:hunter2@h.example/"},
        None,
    )
    text = json.dumps(plan)
    assert "SECRET-0451" not in text and "hunter2" not in text
    assert plan["arguments"][1] == "mode=http" and plan["redacted"]
