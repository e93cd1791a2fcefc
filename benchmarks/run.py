"""`make bench`: run every benchmark, print its figures (ratios against same-run baselines) as
they are made, and end with one table: each figure, its same-run baseline, the ratio, the goal,
whether it is met, and the machine's load average when it was made.

A benchmark that fails (a missing server, a crashed child) is a row of the table saying so; the
others still run, and the exit status is 1. Sizes: ``--snapshots`` for store and verify, and
the environment for the long ones ($BENCH_SOR_ROWS, $BENCH_ADS, $BENCH_POSTS,
$BENCH_WORKERS_PAGES); ``--quick`` runs everything at small sizes (a smoke run of a few
minutes whose figures are dominated by start-up costs); ``--only`` picks benchmarks.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Callable

from benchmarks import (
    bench_ads,
    bench_capture,
    bench_exhibits,
    bench_posts,
    bench_schedule,
    bench_sor,
    bench_store,
    bench_timestamps,
    bench_verify,
    bench_workers,
)
from benchmarks.common import Figure, figure, save_figures, table

NAMES = (
    "store",
    "verify",
    "capture",
    "timestamps",
    "exhibits",
    "schedule",
    "workers",
    "posts",
    "ads",
    "sor",
)


def plan(snapshots: int, quick: bool) -> dict[str, tuple[Callable[[list[str]], object], list[str]]]:
    """Each benchmark's main and its arguments."""
    if quick:
        snapshots = min(snapshots, 200)
    return {
        "store": (bench_store.main, ["--snapshots", str(snapshots)]),
        "verify": (bench_verify.main, ["--snapshots", str(snapshots)]),
        "capture": (bench_capture.main, ["--pages", "300", "--captures", "15"] if quick else []),
        "timestamps": (bench_timestamps.main, ["--snapshots", "500"] if quick else []),
        "exhibits": (bench_exhibits.main, ["--exhibits", "10"] if quick else []),
        "schedule": (bench_schedule.main, ["--runs", "3"] if quick else []),
        "workers": (bench_workers.main, ["--pages", "100"] if quick else []),
        "posts": (bench_posts.main, ["--posts", "20"] if quick else []),
        "ads": (bench_ads.main, ["--ads", "5000"] if quick else []),
        # $BENCH_SOR_ROWS makes it smaller (default 5,000,000 rows)
        "sor": (bench_sor.main, ["--rows", "50000"] if quick else []),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--snapshots", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--only", nargs="+", choices=NAMES, default=None, metavar="NAME")
    args = parser.parse_args()
    chosen = plan(args.snapshots, args.quick)
    figures: list[Figure] = []
    took: dict[str, float] = {}
    failed = False
    started = time.perf_counter()
    for name in args.only or NAMES:
        run, argv = chosen[name]
        print(f"\n###### {name} (load average {os.getloadavg()[0]:.1f})", flush=True)
        start = time.perf_counter()
        environment = dict(os.environ)
        try:
            made = run(argv)
            figures += made if isinstance(made, list) else []
        except (Exception, SystemExit) as exc:  # the other benchmarks still run
            failed = True
            traceback.print_exc()
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            figures.append(figure(name, "FAILED", None, note=reason[:200]))
        finally:
            # A benchmark that sets EVIDENCE_* variables for itself (bench_exhibits points
            # the TSA trust anchors at its temporary folder) must not configure the next ones.
            os.environ.clear()
            os.environ.update(environment)
        took[name] = time.perf_counter() - start
    total = time.perf_counter() - started
    path = save_figures(figures)
    print("\n" + "=" * 100)
    print(f"make bench: every figure against its same-run baseline ({os.cpu_count()} cores)\n")
    print(table(figures))
    print(
        f"\ntook {total / 60:.1f} min: "
        + ", ".join(f"{name} {seconds / 60:.1f}" for name, seconds in took.items())
        + f" (min); load average now {', '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    print(f"figures kept in {path}")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
