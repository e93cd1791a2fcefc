"""Helpers shared by the benchmarks: timing, unique payloads, printing figures."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SIZES = (1024, 100 * 1024, 1024 * 1024)  # the three artifacts of a benchmark snapshot
_BLOCK = os.urandom(max(SIZES))


def payloads(n: int) -> list[bytes]:
    """Three unique payloads for snapshot ``n`` (unique prefix, so nothing deduplicates)."""
    prefix = n.to_bytes(8, "big")
    return [prefix + _BLOCK[: size - 8] for size in SIZES]


@contextmanager
def timed() -> Iterator[dict[str, float]]:
    result: dict[str, float] = {}
    start = time.perf_counter()
    yield result
    result["seconds"] = time.perf_counter() - start


def report(name: str, figures: dict[str, float | int | str]) -> None:
    """Print figures and keep them as JSON under benchmarks/results/."""
    print(f"\n== {name}")
    for key, value in figures.items():
        print(f"  {key:<34} {value:.3f}" if isinstance(value, float) else f"  {key:<34} {value}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(figures, indent=2))
