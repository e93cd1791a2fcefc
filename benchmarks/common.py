"""Helpers shared by the benchmarks: timing, unique payloads, printing figures."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

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


# -- the figures of `make bench` and its closing table --------------------------------------------


@dataclass
class Figure:
    """One figure of a benchmark, with its same-run baseline, the ratio and the goal.

    ``goal_on`` says what the goal bounds: ``"ratio"`` (the usual: ratio to the baseline at
    least ``goal``) or ``"value"`` (an absolute goal such as 60 captures/minute). With
    ``lower_is_better`` the bound is an upper one (peak memory below 1 GiB). A figure without a
    goal is informative (``met`` is None); one without a value was not measured (``note`` says
    why, e.g. a baseline that is not built yet).
    """

    benchmark: str
    name: str
    value: float | None
    unit: str = ""
    baseline: float | None = None
    baseline_name: str = ""
    ratio: float | None = None
    goal: float | None = None
    goal_on: str = "ratio"  # or "value"
    lower_is_better: bool = False
    note: str = ""
    load: float = field(default_factory=lambda: round(os.getloadavg()[0], 1))

    def __post_init__(self) -> None:
        if self.ratio is None and self.value is not None and self.baseline:
            self.ratio = self.value / self.baseline

    @property
    def met(self) -> bool | None:
        if self.goal is None:
            return None
        measured = self.ratio if self.goal_on == "ratio" else self.value
        if measured is None:
            return None
        return measured < self.goal if self.lower_is_better else measured >= self.goal

    def goal_text(self) -> str:
        if self.goal is None:
            return "-"
        sign = "<" if self.lower_is_better else ">="
        what = "ratio " if self.goal_on == "ratio" else ""
        unit = "" if self.goal_on == "ratio" else f" {self.unit}"
        return f"{what}{sign} {_num(self.goal)}{unit}"

    def met_text(self) -> str:
        met = self.met
        if met is None:
            return "not measured" if self.goal is not None else "-"
        return "yes" if met else "NO"

    def line(self) -> str:
        """The figure on one line, as printed when it is made."""
        parts = [f"{self.benchmark}: {self.name} = {_num(self.value)} {self.unit}".rstrip()]
        if self.baseline is not None:
            parts.append(f"baseline {_num(self.baseline)} ({self.baseline_name})")
        if self.ratio is not None:
            parts.append(f"ratio {self.ratio:.3f}")
        if self.goal is not None:
            parts.append(f"goal {self.goal_text()}: {self.met_text()}")
        if self.note:
            parts.append(self.note)
        parts.append(f"load {self.load}")
        return " | ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"met": self.met}


FIGURES: list[Figure] = []  # every figure made in this process, in order (for the table)


def figure(benchmark: str, name: str, value: float | None, **kwargs: Any) -> Figure:
    """Make a figure, print it at once and keep it for the closing table."""
    made = Figure(benchmark, name, value, **kwargs)
    FIGURES.append(made)
    print(f"  >> {made.line()}", flush=True)
    return made


def _num(value: float | int | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, int) or abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"


def table(figures: list[Figure]) -> str:
    """The closing table of `make bench`: figure, baseline, ratio, goal, met, load."""
    header = ("benchmark", "figure", "value", "baseline (same run)", "ratio", "goal", "met", "load")
    rows = [header]
    for f in figures:
        value = f"{_num(f.value)} {f.unit}".strip() if f.value is not None else "-"
        if f.baseline is not None:
            base = f"{_num(f.baseline)} {f.baseline_name}".strip()
        else:
            base = f.baseline_name or "-"
        rows.append(
            (
                f.benchmark,
                f.name,
                value,
                base,
                f"{f.ratio:.3f}" if f.ratio is not None else "-",
                f.goal_text(),
                f.met_text(),
                f"{f.load:.1f}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    widths[3] = min(widths[3], 48)  # long baseline names wrap nothing: they are cut
    lines = []
    for n, row in enumerate(rows):
        cells = [c if len(c) <= w else c[: w - 1] + "…" for c, w in zip(row, widths, strict=True)]
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    notes = [f"  - {f.benchmark}: {f.name}: {f.note}" for f in figures if f.note]
    return "\n".join(lines + (["", "notes:", *notes] if notes else []))


def save_figures(figures: list[Figure], name: str = "figures") -> Path:
    """The figures as JSON under benchmarks/results/ (next to each benchmark's own file)."""
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps([f.as_dict() for f in figures], indent=2))
    return path


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM) in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
