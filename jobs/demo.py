"""`make demo`: the main job on the embedded default, against the bundled fixture sources.

Starts the local fixture site (an imitation of public platform pages on 127.0.0.1), captures
pages from it, preserves the bundled samples, verifies everything and lists the snapshots;
the site is stopped at the end. Data goes where the configuration says (./evidence-data).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from fixtures.site import FixtureSite

SAMPLES = Path(__file__).resolve().parent.parent / "fixtures" / "samples"
PAGES = (
    "/@alice",
    "/@alice/post/1001",
    "/gzip",
    "/redirect/1",
    "/docs/transparency-report.pdf",
    "/does-not-exist",
)


def evidence(*args: str) -> None:
    """Run one `evidence` command as a user would, stopping the demo if it fails."""
    print(f"\n$ evidence {' '.join(args)}", flush=True)
    result = subprocess.run([sys.executable, "-m", "jobs.cli", *args], check=False)
    if result.returncode != 0:
        raise SystemExit(result.returncode)


def main() -> None:
    evidence("db", "upgrade")
    with FixtureSite() as site:
        print(f"fixture site running at {site.base_url}")
        evidence(
            "capture",
            "--http",
            *(site.url(p) for p in PAGES),
            "--collection",
            "demo",
            "--note",
            "make demo: bundled fixture site",
        )
    evidence(
        "ingest",
        *map(str, sorted(SAMPLES.glob("*.csv")) + sorted(SAMPLES.glob("*.html"))),
        "--collection",
        "demo",
        "--source-url",
        "https://transparency.dsa.ec.europa.eu/",
        "--note",
        "make demo: bundled sample",
    )
    evidence("verify", "--all")
    evidence("snapshots", "list", "--collection", "demo", "--limit", "20")


if __name__ == "__main__":
    main()
