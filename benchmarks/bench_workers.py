"""workers: two workers against one on a 500-page fixture site (pages/s of each and the ratio),
on one machine (``evidence crawl pages --workers N``) and over the Redis frontier
(``evidence enqueue --no-wait`` + N ``evidence worker`` processes).

- local: ``evidence crawl pages -a urls_file=… --workers 2`` against ``--workers 1``, which is
  the plain in-process crawl (no parts). Each is one CLI process (the parts are its
  subprocesses), timed from its start to its exit, into a fresh data folder (SQLite index).
- Redis: ``evidence enqueue pages … --no-wait`` then N ``evidence worker --idle-exit 3``
  processes, timed from the start of ``enqueue`` until the run's row is finished (the last
  worker finishes the run: status, counts, Merkle tree); the workers' idle wait before they
  exit is not counted. Redis at ``$BENCH_REDIS_URL`` (default redis://127.0.0.1:6379/0), a
  unique ``EVIDENCE_WORKERS__PREFIX`` per run; the index a fresh PostgreSQL database as a
  deployment of workers would share (``--redis-db sqlite`` for the SQLite file instead); the
  workers take ``[workers] batch`` items per part (default 20, as the product's default).

The pages are the fixture site's ``/pages/N`` (fixtures/site, served from this process),
robots.txt obeyed as by default (every part captures it once). No goal is set by the issues
(14 and 15): 2.0 would be linear on two cores; below 1.0 the second worker costs more than it
brings. The scheduler's overhead per run is bench_schedule's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.common import Figure, figure, report

DEFAULT_PAGES = 500
REDIS_URL = os.environ.get("BENCH_REDIS_URL") or "redis://127.0.0.1:6379/0"
REPO = Path(__file__).resolve().parent.parent


def _base_env(data_dir: Path, db_url: str | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVIDENCE_")}
    env |= {"EVIDENCE_DATA_DIR": str(data_dir), "EVIDENCE_ALLOW_PRIVATE": "true", **extra}
    if db_url:
        env["EVIDENCE_DB_URL"] = db_url
    return env


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "jobs.cli", *args]


def _checked(result: dict[str, Any], pages: int, what: str) -> int:
    archived = int(result.get("counts", {}).get("archived", 0))
    if result.get("status") != "succeeded" or archived != pages:
        raise SystemExit(f"workers: {what}: {result.get('status')}, {result.get('counts')}")
    return archived


def run_local(urls: Path, work: Path, workers: int, pages: int) -> dict[str, Any]:
    """``evidence crawl pages --workers N`` as one process; its wall time."""
    data_dir = work / f"local-{workers}"
    command = _cli("crawl", "pages", "-a", f"urls_file={urls}", "--workers", str(workers), "--json")
    start = time.perf_counter()
    proc = subprocess.Popen(
        command,
        cwd=REPO,
        env=_base_env(data_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    stdout, stderr = proc.communicate()
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"workers: crawl --workers {workers} failed:\n{stderr.decode()[-3000:]}")
    result = json.loads(stdout)
    _checked(result, pages, f"crawl --workers {workers}")
    shutil.rmtree(data_dir, ignore_errors=True)
    print(
        f"workers: crawl --workers {workers}: {pages} pages in {seconds:.1f} s = "
        f"{pages / seconds:.1f} pages/s, load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    return {"seconds": seconds, "rate": pages / seconds}


def _run_status(data_dir: Path, db_url: str, run_id: str) -> tuple[str, dict[str, Any]]:
    from evidence_store.index.models import Run
    from jobs.config import load_settings
    from jobs.context import open_evidence

    settings = load_settings(data_dir=data_dir, db_url=db_url)
    evidence = open_evidence(settings)
    try:
        with evidence.index.session() as session:
            row = session.get(Run, run_id)
            return (row.status, dict(row.stats or {})) if row else ("missing", {})
    finally:
        evidence.index.dispose()


def run_redis(
    urls: Path,
    work: Path,
    workers: int,
    pages: int,
    db_url: str | None,
    timeout: float,
    batch: int | None = None,
) -> dict[str, Any]:
    """``evidence enqueue --no-wait`` + N ``evidence worker`` processes; the time until the
    run's row is finished."""
    import redis

    data_dir = work / f"redis-{workers}"
    data_dir.mkdir(parents=True)
    db_url = db_url or f"sqlite:///{data_dir / 'index.sqlite'}"
    prefix = f"bench-{uuid.uuid4().hex[:10]}"
    env = _base_env(
        data_dir,
        db_url,
        EVIDENCE_WORKERS__REDIS_URL=REDIS_URL,
        EVIDENCE_WORKERS__PREFIX=prefix,
    )
    if batch:
        env["EVIDENCE_WORKERS__BATCH"] = str(batch)
    processes: list[subprocess.Popen[bytes]] = []
    start = time.perf_counter()
    try:
        enqueued = subprocess.run(
            _cli("enqueue", "pages", "-a", f"urls_file={urls}", "--no-wait", "--json"),
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if enqueued.returncode != 0:
            raise SystemExit(f"workers: enqueue failed:\n{enqueued.stderr[-3000:]}")
        run_id = json.loads(enqueued.stdout)["run"]
        for _ in range(workers):
            processes.append(
                subprocess.Popen(
                    _cli("worker", "--idle-exit", "3"),
                    cwd=REPO,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        deadline = time.monotonic() + timeout
        status, stats = "running", {}
        while time.monotonic() < deadline:
            status, stats = _run_status(data_dir, db_url, run_id)
            if status != "running":
                break
            if all(p.poll() is not None for p in processes):
                status, stats = _run_status(data_dir, db_url, run_id)
                break
            time.sleep(0.25)
        seconds = time.perf_counter() - start
        for process in processes:
            process.wait(timeout=120)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(match=f"{prefix}:*"):
            client.delete(key)
        client.close()
    if status != "succeeded" or int(stats.get("snapshots", 0)) < pages:
        raise SystemExit(f"workers: {workers} Redis worker(s): run {status}, {stats}")
    shutil.rmtree(data_dir, ignore_errors=True)
    print(
        f"workers: enqueue + {workers} Redis worker(s): {pages} pages in {seconds:.1f} s = "
        f"{pages / seconds:.1f} pages/s, load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    return {"seconds": seconds, "rate": pages / seconds}


@contextmanager
def shared_index(kind: str) -> Iterator[tuple[str | None, str]]:
    """(URL, label) of the workers' index: a fresh PostgreSQL database, dropped afterwards
    (None and SQLite when asked for, or when PostgreSQL is not reachable)."""
    from benchmarks.bench_ads import drop_pg_database, fresh_pg_database

    fresh = fresh_pg_database() if kind == "postgresql" else None
    if fresh is None:
        yield None, "SQLite"
        return
    try:
        yield fresh[0], "PostgreSQL"
    finally:
        drop_pg_database(fresh[1])


def _redis_ready() -> str | None:
    try:
        import redis

        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
        client.ping()
        client.close()
    except Exception as exc:
        return f"Redis not reachable at {REDIS_URL}: {exc}"
    return None


def main(argv: list[str] | None = None) -> list[Figure]:
    from fixtures.site import FixtureSite

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--pages",
        type=int,
        default=int(os.environ.get("BENCH_WORKERS_PAGES") or DEFAULT_PAGES),
        help=f"pages of the site (default $BENCH_WORKERS_PAGES or {DEFAULT_PAGES})",
    )
    parser.add_argument("--only", choices=("local", "redis"), default=None)
    parser.add_argument("--redis-db", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per Redis run")
    parser.add_argument(
        "--batch", type=int, default=None, help="[workers] batch (default: the product's, 20)"
    )
    args = parser.parse_args(argv)
    load = round(os.getloadavg()[0], 1)
    work = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    made: list[Figure] = []
    figures: dict[str, float | int | str] = {"pages": args.pages, "load average at start": load}
    try:
        with FixtureSite() as site:
            urls = work / "urls.txt"
            urls.write_text("\n".join(site.url(f"/pages/{i}") for i in range(args.pages)) + "\n")
            if args.only in (None, "local"):
                one = run_local(urls, work, 1, args.pages)
                two = run_local(urls, work, 2, args.pages)
                figures |= {
                    "crawl --workers 1 pages/s (in process)": one["rate"],
                    "crawl --workers 2 pages/s": two["rate"],
                    "ratio local 2/1": two["rate"] / one["rate"],
                }
                made.append(
                    figure(
                        "workers",
                        "crawl --workers 2 pages/s",
                        two["rate"],
                        unit="pages/s",
                        baseline=one["rate"],
                        baseline_name="pages/s, --workers 1 (in process)",
                        note=f"{args.pages} fixture pages, SQLite; no goal set (2.0 = linear)",
                    )
                )
            if args.only in (None, "redis"):
                problem = _redis_ready()
                if problem:
                    print(f"workers: {problem}: no Redis figures")
                    made.append(figure("workers", "Redis: 2 workers pages/s", None, note=problem))
                else:
                    redis_runs: dict[int, dict[str, Any]] = {}
                    labels = set()
                    for count in (1, 2):
                        with shared_index(args.redis_db) as (db_url, label):
                            labels.add(label)
                            redis_runs[count] = run_redis(
                                urls, work, count, args.pages, db_url, args.timeout, args.batch
                            )
                    one_r, two_r = redis_runs[1], redis_runs[2]
                    db_label = "/".join(sorted(labels))
                    figures |= {
                        f"Redis 1 worker pages/s ({db_label})": one_r["rate"],
                        f"Redis 2 workers pages/s ({db_label})": two_r["rate"],
                        "ratio Redis 2/1": two_r["rate"] / one_r["rate"],
                    }
                    made.append(
                        figure(
                            "workers",
                            "Redis: 2 workers pages/s",
                            two_r["rate"],
                            unit="pages/s",
                            baseline=one_r["rate"],
                            baseline_name="pages/s, 1 Redis worker",
                            note=f"{args.pages} fixture pages, {db_label} index, "
                            f"batch {args.batch or 20}; "
                            "no goal set (2.0 = linear)",
                        )
                    )
                    if "crawl --workers 1 pages/s (in process)" in figures:
                        in_process = float(figures["crawl --workers 1 pages/s (in process)"])
                        figures["ratio Redis 1 worker / in process"] = one_r["rate"] / in_process
                        made.append(
                            figure(
                                "workers",
                                "Redis: 1 worker pages/s",
                                one_r["rate"],
                                unit="pages/s",
                                baseline=in_process,
                                baseline_name="pages/s, --workers 1 (in process)",
                                note="what the parts and the frontier cost one worker",
                            )
                        )
        figures["cores"] = os.cpu_count() or 1
        report("workers", figures)
        return made
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
