"""`make bench`: run every benchmark and print its figures (ratios against same-run baselines)."""

from __future__ import annotations

import argparse

from benchmarks import (
    bench_capture,
    bench_exhibits,
    bench_schedule,
    bench_sor,
    bench_store,
    bench_timestamps,
    bench_verify,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--snapshots", type=int, default=2000)
    args = parser.parse_args()
    bench_store.main(["--snapshots", str(args.snapshots)])
    bench_verify.main(["--snapshots", str(args.snapshots)])
    bench_capture.main([])
    bench_timestamps.main([])
    bench_exhibits.main([])
    bench_schedule.main([])
    bench_sor.main([])  # $BENCH_SOR_ROWS makes it smaller (default 5,000,000 rows)


if __name__ == "__main__":
    main()
