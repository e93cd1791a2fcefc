"""schedule: what the scheduler adds to a run, against running the same run by hand.

A no-op source (one tiny file, the `files` source) is run N times by hand (`evidence crawl`, a
process each, as the scheduler starts them) and N times by the scheduler (every 2 seconds).
Per scheduled run: the launch latency (from the second it was due to the run row's start) and
the run's own duration (which also archives the run's report and log). The ratio is the hand
run's wall time over the scheduled run's latency plus duration: 1.0 means no overhead.
Scale-out (two workers against one) is bench_workers'.
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.common import Figure, figure, report


def _config(root: Path, schedule: str | None) -> Path:
    tiny = root / "tiny.txt"
    tiny.write_text("no-op")
    config = root / "evidence.toml"
    body = f'data_dir = "{root / "data"}"\n[sources.noop]\ntype = "files"\npaths = ["{tiny}"]\n'
    if schedule:
        body += f'schedule = "{schedule}"\ntimezone = "UTC"\n'
    config.write_text(body)
    return config


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("EVIDENCE_")}


def by_hand(root: Path, runs: int) -> float:
    config = _config(root, None)
    command = [sys.executable, "-m", "jobs.cli", "--config", str(config), "crawl", "noop"]
    subprocess.run(command, env=_env(), capture_output=True, check=True)  # migrate, warm up
    start = time.perf_counter()
    for _ in range(runs):
        subprocess.run(command, env=_env(), capture_output=True, check=True)
    return (time.perf_counter() - start) / runs


def scheduled(root: Path, runs: int) -> tuple[float, float]:
    """(mean launch latency, mean run duration) in seconds."""
    config = _config(root, "*/2 * * * * *")
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "jobs.cli", "--config", str(config), "schedule", "start"],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    database = root / "data" / "index.sqlite"
    rows: list[tuple[str, str]] = []
    try:
        deadline = time.monotonic() + 30 + 4 * runs
        while time.monotonic() < deadline and len(rows) < runs + 1:
            time.sleep(0.5)
            if database.exists():
                try:
                    with sqlite3.connect(database) as db:
                        rows = db.execute(
                            "SELECT started_at, finished_at FROM runs WHERE finished_at IS NOT "
                            'NULL AND stats LIKE \'%"trigger": "schedule"%\' ORDER BY started_at'
                        ).fetchall()
                except sqlite3.OperationalError:  # the first run is still migrating the index
                    continue
    finally:
        scheduler.send_signal(signal.SIGTERM)
        scheduler.wait(timeout=120)
    rows = rows[1:]  # the first run also migrated the new index
    if not rows:
        raise SystemExit("no scheduled run finished")
    latency = duration = 0.0
    for started, finished in rows:
        began = datetime.fromisoformat(started).replace(tzinfo=UTC).timestamp()
        due = began - began % 2  # fired on an even second
        latency += began - due
        duration += (
            datetime.fromisoformat(finished).timestamp()
            - datetime.fromisoformat(started).timestamp()
        )
    return latency / len(rows), duration / len(rows)


def main(argv: list[str] | None = None) -> list[Figure]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as hand, tempfile.TemporaryDirectory() as sched:
        manual = by_hand(Path(hand), args.runs)
        latency, duration = scheduled(Path(sched), args.runs)
    report(
        "schedule",
        {
            "runs": args.runs,
            "by hand: seconds per run (process)": manual,
            "scheduled: launch latency s": latency,
            "scheduled: run duration s": duration,
            "ratio hand/scheduled": manual / (latency + duration),
            "scale-out (2 workers / 1)": "see bench_workers",
        },
    )
    return [
        figure(
            "schedule",
            "scheduled run: launch latency + duration",
            latency + duration,
            unit="s",
            baseline=manual,
            baseline_name="s per run by hand (a process)",
            ratio=manual / (latency + duration),
            note=f"launch latency {latency:.2f} s; 1.0 = no overhead",
        )
    ]


if __name__ == "__main__":
    main()
