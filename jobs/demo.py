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
from typing import Any

from fixtures.dsa_sor import DsaSorServer
from fixtures.google_ads import GoogleAdsServer
from fixtures.meta_ads import TOKEN as META_TOKEN
from fixtures.meta_ads import MetaAdLibrary
from fixtures.reports import ReportsSite
from fixtures.site import FixtureSite
from fixtures.tiktok import TikTokSite
from fixtures.tiktok_ads import TikTokAdLibrary
from fixtures.tiktok_ads.server import CLIENT_KEY, CLIENT_SECRET
from fixtures.tsa import LocalTSA
from fixtures.x import GUEST_BEARER, XSite
from fixtures.x_ads import DEFAULT_ACCOUNTS, XAdsServer

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


def evidence(*args: str, env: dict[str, str] | None = None, ok: tuple[int, ...] = (0,)) -> None:
    """Run one `evidence` command as a user would, stopping the demo if it fails (exits with
    a status not in ``ok``: a run of a fixture that breaks on purpose is partial, 3)."""
    print(f"\n$ evidence {' '.join(args)}", flush=True)
    full_env = os.environ | (env or {})
    result = subprocess.run([sys.executable, "-m", "jobs.cli", *args], check=False, env=full_env)
    if result.returncode not in ok:
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


def _config(name: str, text: str) -> str:
    """A configuration file of the demo's own (the sources pointed at the fixtures)."""
    path = data_dir() / f"demo-{name}.toml"
    path.write_text(f"# Written by `make demo`.\n{text}", encoding="utf-8")
    return str(path)


def transparency_reports(env: dict[str, str]) -> None:
    """The platforms' transparency reports on two days of the imitation index pages: the
    second day publishes a corrected report, and `reports diff` shows what changed."""
    with ReportsSite() as site:
        pages = ", ".join(
            f'{{ platform = "{p}", url = "{u}" }}' for p, u in site.index_pages().items()
        )
        config = _config("reports", f"[sources.transparency-reports]\nindex_pages = [{pages}]\n")
        for day in (1, 2):
            site.day = day
            # The fixture's broken link and corrupt PDF make every run partial (exit 3).
            evidence("--config", config, "crawl", "transparency-reports", env=env, ok=(0, 3))
    evidence("reports", "list", env=env)
    changed = _json("reports", "list", "--json", env=env)
    versioned = [r for r in changed if r.get("versions", 1) > 1]
    if versioned:
        evidence("reports", "diff", str(versioned[0]["id"]), env=env)


def ad_libraries(env: dict[str, str]) -> list[str]:
    """The four ad libraries, two days each: ads normalised and indexed, changed ads as new
    versions, vanished ads noticed; then the ads per platform. Returns an exhibit reference
    of a vanished ad."""
    with (
        MetaAdLibrary() as meta,
        TikTokAdLibrary() as tiktok,
        GoogleAdsServer() as google,
        XAdsServer() as x,
    ):
        config = _config(
            "ads",
            f'[sources.meta-ads]\napi_base = "{meta.api_base}"\nmax_creatives = 3\n'
            f'[sources.tiktok-ads]\napi_base = "{tiktok.base_url}"\nmax_details = 20\n'
            f'[sources.google-ads]\nbundle_url = "{google.bundle_url}"\n'
            f'transparency_base = "{google.base_url}"\nmax_creatives = 2\n'
            f'[sources.x-ads]\napi_base = "{x.api_base}"\npoll_interval = 0.1\n'
            f"accounts = {json.dumps(list(DEFAULT_ACCOUNTS))}\n"
            'date_from = "2024-01-01"\ndate_to = "2025-12-31"\n',
        )
        secrets = env | {
            "EVIDENCE_SOURCES__META_ADS__ACCESS_TOKEN": META_TOKEN,
            "EVIDENCE_SOURCES__TIKTOK_ADS__CLIENT_KEY": CLIENT_KEY,
            "EVIDENCE_SOURCES__TIKTOK_ADS__CLIENT_SECRET": CLIENT_SECRET,
            "EVIDENCE_SOURCES__X_ADS__BEARER_TOKEN": x.token,
        }
        for day in (1, 2):
            for library in (meta, tiktok, google, x):
                library.day = day
            for source in ("meta-ads", "tiktok-ads", "google-ads", "x-ads"):
                # The fixtures' malformed pages and failed exports make some runs partial.
                evidence("--config", config, "crawl", source, env=secrets, ok=(0, 3))
    evidence("ads", "summary", env=env)
    evidence("ads", "list", "--unseen", "--limit", "5", env=env)
    # An ad the library stopped returning, for the exhibits at the end (one that changed first).
    unseen = _json("ads", "list", "--unseen", "--json", env=env)["ads"]
    unseen.sort(key=lambda a: -a["versions"])
    return [f"ad:{a['platform']}:{a['ad_id']}" for a in unseen[:1]]


def post_watchlists(env: dict[str, str]) -> list[str]:
    """A TikTok and an X watchlist over two fixture days: on the second, every watched post
    is captured again; one is removed, one edited, one geo-blocked. Returns the exhibit
    reference of the removed post."""
    with TikTokSite() as tiktok, XSite() as x:
        config = _config(
            "posts",
            f'[sources.tiktok]\nbase_url = "{tiktok.base_url}"\n'
            'accounts = ["@wahlkampf_de"]\nrecapture_hours = 0\nbackoff = 0.2\n'
            f'[sources.x]\nbase_url = "{x.base_url}"\nsyndication_url = "{x.base_url}"\n'
            f'api_url = "{x.base_url}"\naccounts = ["@wahlinfo_de", "@kreativkampagne"]\n'
            "recapture_hours = 0\nbackoff = 0.5\n",
        )
        secrets = env | {"EVIDENCE_SOURCES__X__GUEST_BEARER": GUEST_BEARER}
        for day in (1, 2):
            tiktok.day = x.day = day
            for source in ("tiktok", "x"):
                evidence("--config", config, "crawl", source, env=secrets, ok=(0, 3))
    evidence("posts", "list", "--limit", "10", env=env)
    gone = _json("posts", "list", "--status", "removed", "--json", env=env)["posts"]
    if gone:
        evidence("posts", "show", f"{gone[0]['platform']}:{gone[0]['post_id']}", env=env)
    edited = [
        p
        for p in _json("posts", "list", "--platform", "x", "--json", env=env)["posts"]
        if p["versions"] > 1 and p["status"] == "available"
    ]
    if edited:
        evidence("posts", "show", f"x:{edited[0]['post_id']}", env=env)
    return [f"post:{p['platform']}:{p['post_id']}" for p in gone[:1]]


def _json(*args: str, env: dict[str, str]) -> Any:
    listed = subprocess.run(
        [sys.executable, "-m", "jobs.cli", *args],
        env=os.environ | env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(listed.stdout)


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
        records: list[str] = []  # ads and posts, for the exhibits at the end
        if os.environ.get("DEMO_SOURCES", "all") == "all":
            transparency_reports(env)
            records += ad_libraries(env)
            records += post_watchlists(env)
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
        case = ["--case", "Demo ./. Fixturegram"]
        evidence("exhibit", "build", *refs, *records, *case, "-o", str(exhibits), env=env)
        evidence("exhibit", "verify", str(exhibits))
        # The removed post (or the vanished ad) across its captures: present, then gone.
        if records:
            timeline = exhibits.with_name(exhibits.name + "-timeline")
            evidence("exhibit", "timeline", records[-1], *case, "-o", str(timeline), env=env)
            evidence("exhibit", "verify", str(timeline))
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
