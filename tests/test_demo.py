"""`make demo` keeps working: the README's first command, run twice on one data folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
# Two demo runs, each allowed 600 s by its subprocess timeout: the test may take both.
@pytest.mark.timeout(1200)
def test_demo_runs_twice_and_every_snapshot_has_a_verified_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVIDENCE_")}
    env["EVIDENCE_DATA_DIR"] = str(tmp_path / "evidence-data")
    env["COLUMNS"] = "250"  # one line per message: rich wraps at 80 columns without a tty
    for run in range(2):  # a second run adds to the first one's archive (new TSA, new CA)
        # The second run leaves out the ad libraries, reports and posts (they took their two
        # fixture days in the first): it is about the archive growing, and it keeps the test
        # short.
        demo = subprocess.run(
            [sys.executable, "-m", "jobs.demo"],
            cwd=ROOT,
            env=env | ({"DEMO_SOURCES": "core"} if run else {}),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
        assert "custody log of" in demo.stdout and ": OK" in demo.stdout
        # The scheduler fired a run of the demo watchlist, which archived its report.
        assert "report and log archived as snapshot" in demo.stdout
    [_, latest] = sorted((tmp_path / "evidence-data" / "reports").glob("verify-*.txt"))
    text = latest.read_text()
    assert "Result:        OK" in text and "no verified timestamp" not in text
    assert "archived: CN=NOT TRUSTED" in text  # the TSA's CRL, fetched and archived
    cas = sorted(str(p) for p in (tmp_path / "evidence-data" / "demo-tsa-cas").glob("*.pem"))
    demo_env = {
        "EVIDENCE_DATA_DIR": env["EVIDENCE_DATA_DIR"],
        "EVIDENCE_TIMESTAMPS__TRUST_ANCHORS": json.dumps(cas),
    }
    report = run_cli("verify", "--all", "--json", env=demo_env, cwd=ROOT, check=True)
    result = json.loads(report.stdout)
    # 22 captured and ingested in two demo runs, plus each scheduled run's page, robots.txt
    # and report (how many runs fire before the scheduler is stopped depends on the clock).
    scheduled = run_cli("runs", "list", "--source", "demo-watchlist", "--json", env=demo_env)
    runs = json.loads(scheduled.stdout)
    assert len(runs) >= 2 and all(r["status"] == "succeeded" for r in runs)
    assert result["ok"] and result["untimestamped"] == 0

    # Statements of reasons: two dumps and four Parquet files, then the same two dumps again
    # (their Parquet files are not made twice).
    def collection(name: str) -> int:
        listed = run_cli(
            "snapshots",
            "list",
            "--collection",
            name,
            "--limit",
            "100000",
            "--json",
            env=demo_env,
            cwd=ROOT,
            check=True,
        )
        return len(json.loads(listed.stdout))

    assert collection("demo") == 22 + 3 * len(runs)
    assert collection("dsa-sor") == 6 + 2
    # The ad libraries, reports and posts of the first run: every snapshot verified and
    # timestamped with the rest; the summaries show what the issue asks the demo to show.
    assert result["snapshots"] > 22 + 8 + 3 * len(runs)
    ads = json.loads(run_cli("ads", "summary", "--json", env=demo_env, cwd=ROOT).stdout)
    assert set(ads) == {"meta", "tiktok", "google", "x"}
    assert all(a["changed"] and a["unseen"] for a in ads.values())
    posts = json.loads(run_cli("posts", "list", "--json", env=demo_env, cwd=ROOT).stdout)
    statuses = {p["status"] for p in posts["posts"]}
    assert "removed" in statuses and any(p["versions"] > 1 for p in posts["posts"])
    reports = json.loads(run_cli("reports", "list", "--json", env=demo_env, cwd=ROOT).stdout)
    assert any(r["versions"] > 1 for r in reports)
    # The first run's exhibits: two captures, a vanished ad and the removed post; and the
    # removed post as a timeline (each bundle verified by the demo itself).
    exhibits = tmp_path / "evidence-data" / "exhibits"
    first = min(exhibits.glob("demo-*[0-9]Z"))
    bundle = json.loads((first / "BUNDLE.json").read_text(encoding="utf-8"))
    assert [e["kind"] for e in bundle["exhibits"]] == ["snapshot", "snapshot", "ad", "post"]
    timeline = json.loads((exhibits / f"{first.name}-timeline" / "BUNDLE.json").read_text())
    [post] = timeline["exhibits"]
    assert post["kind"] == "timeline" and post["ref"].startswith("post:")
