"""`make demo`: the main job on the embedded default, against the bundled fixture sources.

Starts the local fixture site (an imitation of public platform pages on 127.0.0.1), captures
pages from it, preserves the bundled samples (one Merkle-tree timestamp for the run), fetches
two days of statements of reasons from an imitation of the DSA Transparency Database and
queries them,
verifies everything with a written report, checks the custody log and lists the snapshots;
the site is stopped at the end. Data goes where the configuration says (./evidence-data).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from fixtures.dsa_sor import DsaSorServer
from fixtures.site import FixtureSite
from fixtures.tsa import LocalTSA

SAMPLES = Path(__file__).resolve().parent.parent / "fixtures" / "samples"
SAMPLES_SOURCE = "dsa-transparency-db-samples"
PAGES = (
    "/@alice",
    "/@alice/post/1001",
    "/gzip",
    "/redirect/1",
    "/docs/transparency-report.pdf",
    "/does-not-exist",
)


def evidence(*args: str, env: dict[str, str] | None = None) -> None:
    """Run one `evidence` command as a user would, stopping the demo if it fails."""
    print(f"\n$ evidence {' '.join(args)}", flush=True)
    full_env = os.environ | (env or {})
    result = subprocess.run([sys.executable, "-m", "jobs.cli", *args], check=False, env=full_env)
    if result.returncode != 0:
        raise SystemExit(result.returncode)


def data_dir() -> Path:
    return Path(os.environ.get("EVIDENCE_DATA_DIR", "evidence-data"))


def demo_tsa_env(tsa: LocalTSA) -> dict[str, str]:
    """Settings that use the local TSA; every CA it ever had stays trusted for old tokens.

    The local TSA is a test fixture, labelled NOT TRUSTED in its certificates: production
    configurations name qualified TSAs and their CAs instead (docs/timestamps.md).
    """
    cas = data_dir() / "demo-tsa-cas"
    cas.mkdir(parents=True, exist_ok=True)
    (cas / f"ca-{len(list(cas.glob('ca-*.pem'))) + 1:04d}.pem").write_bytes(tsa.ca_pem)
    return {
        # The fixture site and the TSA listen on 127.0.0.1, which captures refuse by default.
        "EVIDENCE_ALLOW_PRIVATE": "true",
        "EVIDENCE_TIMESTAMPS__TSA_URLS": json.dumps([tsa.url]),
        "EVIDENCE_TIMESTAMPS__TRUST_ANCHORS": json.dumps(sorted(map(str, cas.glob("ca-*.pem")))),
        # Bulk sources take one token per run over a Merkle tree of their snapshots.
        "EVIDENCE_TIMESTAMPS__SOURCES": json.dumps({SAMPLES_SOURCE: "merkle"}),
    }


def scheduled_run(site: FixtureSite, env: dict[str, str]) -> None:
    """The scheduler, as a nightly deployment runs it, on a schedule of every few seconds:
    it fires a run of a configured watchlist in a subprocess, which archives the run's report
    and log; then it is stopped with SIGTERM, as a service manager would."""
    config = data_dir() / "demo-schedule.toml"
    config.write_text(
        "# Written by `make demo`: a watchlist of the fixture site, run every 5 seconds.\n"
        "[sources.demo-watchlist]\n"
        'type = "pages"\n'
        f'urls = ["{site.url("/@alice/post/1001")}"]\n'
        'collection = "demo"\n'
        'schedule = "*/5 * * * * *"\n',
        encoding="utf-8",
    )
    print(f"\n$ evidence --config {config} schedule start   (stopped after its first run)")
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "jobs.cli", "--config", str(config), "schedule", "start"],
        env=os.environ | env,
    )
    earlier = set(_scheduled_runs(env))  # a second demo adds to the first one's archive
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not set(_scheduled_runs(env)) - earlier:
            time.sleep(0.5)
    finally:
        scheduler.send_signal(signal.SIGTERM)
        scheduler.wait(timeout=300)
    evidence("runs", "list", "--source", "demo-watchlist", "--limit", "3", env=env)
    [latest, *_] = [run for run in _scheduled_runs(env) if run not in earlier]
    evidence("runs", "show", latest, env=env)


def statements_of_reasons(env: dict[str, str]) -> None:
    """Two days of the imitation Transparency Database (the Commission's real rows, before
    and after the schema change of 1 July 2025): downloaded, checked against the published
    SHA-1, archived, streamed into Parquet, and queried with DuckDB."""
    with DsaSorServer() as dumps:
        sor_env = env | {"EVIDENCE_SOURCES__DSA_SOR__BASE_URL": dumps.base_url}
        evidence("crawl", "dsa-sor", "-a", "date=2024-03-14", "-a", "date=2025-07-01", env=sor_env)
    evidence("sor", "dumps", env=env)
    evidence("sor", "stats", "--top", "5", env=env)
    evidence("sor", "show", "f1e5d3be-e95d-4e51-bb38-6cf13225b2af", env=env)


def _scheduled_runs(env: dict[str, str]) -> list[str]:
    """Finished scheduled runs of the demo watchlist, newest first."""
    listed = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "runs", "list", "--source", "demo-watchlist", "--json"],
        env=os.environ | env,
        capture_output=True,
        text=True,
        check=True,
    )
    return [r["id"] for r in json.loads(listed.stdout) if r["finished_at"]]


def main() -> None:
    evidence("db", "upgrade")
    with FixtureSite() as site, LocalTSA(publish_crl=True) as tsa:
        print(f"fixture site at {site.base_url}; test TSA (NOT trusted) at {tsa.url}")
        env = demo_tsa_env(tsa)
        pages = [site.url(p) for p in PAGES]
        note = "make demo: bundled fixture site"
        evidence("capture", "--http", *pages, "--collection", "demo", "--note", note, env=env)
        # A page rendered by JavaScript: Chromium records every request it made, plus a
        # full-page screenshot, a PDF print and the rendered DOM.
        evidence(
            "capture",
            "--browser",
            site.url("/@alice"),
            "--collection",
            "demo",
            "--note",
            "make demo: JavaScript-rendered profile",
            env=env,
        )
        samples = sorted(SAMPLES.glob("*.csv")) + sorted(SAMPLES.glob("*.html"))
        evidence(
            "ingest",
            *map(str, samples),
            "--collection",
            "demo",
            "--source",
            SAMPLES_SOURCE,
            "--source-url",
            "https://transparency.dsa.ec.europa.eu/",
            "--note",
            "make demo: bundled sample",
            env=env,
        )
        statements_of_reasons(env)
        scheduled_run(site, env)
        evidence("timestamp", "retry", env=env)  # whatever an earlier run left unstamped
        # The TSA's CRL, archived (each run does it too) for verification years from now.
        evidence("timestamp", "crls", env=env)
        reports = data_dir() / "reports"
        reports.mkdir(parents=True, exist_ok=True)
        report = reports / f"verify-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}.txt"
        evidence("verify", "--all", "--report", str(report), env=env)
        evidence("custody", "verify", env=env)
        # Court exhibits of the browser capture and an HTTP capture, checked offline.
        exhibits = data_dir() / "exhibits" / f"demo-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}"
        exhibits.parent.mkdir(parents=True, exist_ok=True)
        refs = demo_exhibit_refs(site.url("/@alice"), site.url("/@alice/post/1001"))
        evidence(
            "exhibit",
            "build",
            *refs,
            "--case",
            "Demo ./. Fixturegram",
            "-o",
            str(exhibits),
            env=env,
        )
        evidence("exhibit", "verify", str(exhibits))
    evidence("snapshots", "list", "--collection", "demo", "--limit", "20")


def demo_exhibit_refs(browser_url: str, http_url: str) -> list[str]:
    """The newest browser capture of one page and HTTP capture of another in the demo."""
    listing = subprocess.run(
        [
            sys.executable,
            "-m",
            "jobs.cli",
            "snapshots",
            "list",
            "--collection",
            "demo",
            "--limit",
            "200",
            "--json",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    snapshots = json.loads(listing.stdout)  # newest first
    wanted = (("capture-browser", browser_url), ("capture-http", http_url))
    return [
        next(s["id"] for s in snapshots if s["kind"] == kind and s["source_url"] == url)
        for kind, url in wanted
    ]


if __name__ == "__main__":
    main()
