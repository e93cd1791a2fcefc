"""The `evidence` command tried as a careless or hostile user would (issue: hardening)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from fixtures.site import FixtureSite
from tests.conftest import run_cli

SAMPLES = Path(__file__).resolve().parent.parent / "fixtures" / "samples"
SOR_CSV = SAMPLES / "sor-global-2025-07-01-full-00000-00000.csv"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"EVIDENCE_DATA_DIR": str(tmp_path / "data"), "EVIDENCE_ACTOR": "hardening-test"}


@pytest.fixture(scope="module")
def site() -> Iterator[FixtureSite]:
    with FixtureSite() as running:
        yield running


def one_line_error(proc: object) -> str:
    """The refusal: exit 2, one line on stderr, no traceback."""
    assert proc.returncode == 2, proc.stdout + proc.stderr  # type: ignore[attr-defined]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]  # type: ignore[attr-defined]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in proc.stderr  # type: ignore[attr-defined]
    return lines[0]


def test_a_bad_url_gets_its_own_outcome_and_the_run_is_partial(
    env: dict[str, str], site: FixtureSite
) -> None:
    proc = run_cli(
        "capture",
        "--http",
        "--allow-private",
        "not a url",
        site.url("/@alice"),
        site.url("/gzip"),
        "--json",
        env=env,
    )
    assert proc.returncode == 3, proc.stderr  # partial
    outcomes = {o["url"]: o for o in json.loads(proc.stdout) if o["mode"] != "robots"}
    assert outcomes["not a url"]["outcome"] == "invalid-url"
    assert outcomes[site.url("/@alice")]["snapshot"] and outcomes[site.url("/gzip")]["snapshot"]
    assert "run " in proc.stderr and "partial" in proc.stderr
    database = sqlite3.connect(Path(env["EVIDENCE_DATA_DIR"]) / "index.sqlite")
    [(status, stats)] = database.execute("SELECT status, stats FROM runs").fetchall()
    assert status == "partial" and json.loads(stats)["outcomes"]["invalid-url"] == 1


def test_a_capture_that_archives_nothing_fails(env: dict[str, str]) -> None:
    proc = run_cli("capture", "--http", "not a url", "file:///etc/passwd", env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "invalid-url" in proc.stdout and "unsupported-scheme" in proc.stdout
    assert "failed" in proc.stdout
    database = sqlite3.connect(Path(env["EVIDENCE_DATA_DIR"]) / "index.sqlite")
    assert database.execute("SELECT status FROM runs").fetchall() == [("failed",)]
    assert database.execute("SELECT count(*) FROM snapshots").fetchone() == (0,)


def test_arguments_are_checked_before_any_network_work(
    env: dict[str, str], site: FixtureSite
) -> None:
    site.reset_stats()
    line = one_line_error(
        run_cli("capture", "--allow-private", site.url("/@alice"), "--collection", "Bad", env=env)
    )
    assert "'Bad'" in line and "lower-case" in line
    assert sum(site.hits.values()) == 0
    line = one_line_error(run_cli("ingest", str(SOR_CSV), "--collection", "Bad", env=env))
    assert "--collection" in line and "'Bad'" in line
    line = one_line_error(run_cli("ingest", str(SOR_CSV), "--media-type", "x", env=env))
    assert "'x'" in line and "type/subtype" in line
    line = one_line_error(run_cli("ingest", "/no/such/file", env=env))
    assert "/no/such/file" in line
    line = one_line_error(run_cli("crawl", "no-such-source", env=env))
    assert "known sources are" in line and "pages" in line
    line = one_line_error(run_cli("crawl", "pages", "-a", "colour=red", env=env))
    assert "unknown argument -a colour" in line
    line = one_line_error(run_cli("verify", "--all", "--require", "vibes", env=env))
    assert "vibes" in line and "timestamps" in line


def test_a_dropped_table_is_one_line_and_exit_2(env: dict[str, str]) -> None:
    run_cli("ingest", str(SOR_CSV), env=env, check=True)
    database = sqlite3.connect(Path(env["EVIDENCE_DATA_DIR"]) / "index.sqlite")
    database.execute("DROP TABLE custody_events")
    database.commit()
    line = one_line_error(run_cli("snapshots", "show", "0", env=env))
    line = one_line_error(run_cli("custody", "verify", env=env))
    assert "custody_events" in line and "evidence db status" in line


def test_credentials_in_a_source_url_never_reach_the_archive(env: dict[str, str]) -> None:
    proc = run_cli(
        "ingest",
        str(SOR_CSV),
        "--source-url",
        "https://alice:hunter2-PASSWORD@host.example/x?access_token=TOKEN-0451&page=2",
        "--json",
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    [result] = json.loads(proc.stdout)
    shown = json.loads(run_cli("snapshots", "show", result["snapshot"], "--json", env=env).stdout)
    assert shown["manifest"]["source_url"] == (
        "https://alice:REDACTED@host.example/x?access_token=REDACTED&page=2"
    )
    assert sorted(shown["manifest"]["capture"]["redacted"]) == [
        "query:access_token",
        "url:password",
    ]
    data = Path(env["EVIDENCE_DATA_DIR"])
    for path in data.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert b"hunter2-PASSWORD" not in content and b"TOKEN-0451" not in content, path


def test_control_characters_are_escaped_on_the_terminal(
    env: dict[str, str], tmp_path: Path
) -> None:
    note = "evil\x1b[8mhidden\x1b]0;pwned title\x07\u202eeulav"
    name = tmp_path / "file\x1b[2Jname.txt"
    name.write_text("x")
    proc = run_cli("ingest", str(name), "--note", note, "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    [result] = json.loads(proc.stdout)
    assert "\x1b" not in proc.stdout  # the JSON escapes it
    listed = run_cli("snapshots", "list", env=env, check=True)
    shown = run_cli("snapshots", "show", result["snapshot"], env=env, check=True)
    table = run_cli("ingest", str(name), "--note", note, env=env, check=True)
    for output in (listed.stdout, shown.stdout, table.stdout):
        assert "\x1b" not in output and "\x07" not in output and "\u202e" not in output
    assert "\\x1b[8m" in shown.stdout and "\\u202e" in shown.stdout
    exact = json.loads(run_cli("snapshots", "show", result["snapshot"], "--json", env=env).stdout)
    assert exact["manifest"]["note"] == note  # JSON stays exact


def test_export_into_a_missing_folder_names_it(env: dict[str, str]) -> None:
    proc = run_cli("ingest", str(SOR_CSV), "--json", env=env, check=True)
    snapshot = json.loads(proc.stdout)[0]["snapshot"]
    line = one_line_error(run_cli("export", "wacz", snapshot, "-o", "/no/such/dir/x.wacz", env=env))
    assert "/no/such/dir" in line and ".partial" not in line


def test_help_shows_bracketed_settings(env: dict[str, str]) -> None:
    proc = run_cli("ingest", "--help", env=env, check=True)
    assert "[timestamps] sources" in proc.stdout
    proc = run_cli("crawl", "--help", env=env, check=True)
    assert "[sources.NAME]" in proc.stdout


def test_sources_list_and_show(env: dict[str, str]) -> None:
    listed = json.loads(run_cli("sources", "list", "--json", env=env, check=True).stdout)
    by_name = {s["name"]: s for s in listed}
    assert {"pages", "files"} <= set(by_name)
    assert by_name["files"]["kind"] == "upload" and by_name["pages"]["kind"] == "spider"
    table = run_cli("sources", "list", env=env, check=True).stdout
    assert "pages" in table and "files" in table
    shown = run_cli("sources", "show", "pages", env=env, check=True).stdout
    assert "obey_robots" in shown and "EVIDENCE_SOURCES__PAGES__KEY" in shown


def test_crawl_runs_a_registered_source_with_arguments(
    env: dict[str, str], site: FixtureSite, tmp_path: Path
) -> None:
    config = tmp_path / "evidence.toml"
    config.write_text(f'allow_private = true\n[sources.pages]\nurls = ["{site.url("/@alice")}"]\n')
    proc = run_cli(
        "--config",
        str(config),
        "crawl",
        "pages",
        "-a",
        f"url={site.url('/gzip')}",
        "--json",
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    body = json.loads(proc.stdout)
    assert body["status"] == "succeeded" and body["source"] == "pages"
    archived = {o["url"] for o in body["outcomes"] if o["snapshot"] and o["mode"] != "robots"}
    # -a replaces the configured list for this run
    assert archived == {site.url("/gzip")}
