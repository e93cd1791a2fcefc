"""Scheduled runs as an operator runs them: real scheduler processes, real runs, real signals."""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import socketserver
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from fixtures.site import FixtureSite
from tests.conftest import run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site() -> Iterator[FixtureSite]:
    with FixtureSite() as running:
        yield running


def write_config(path: Path, data_dir: Path, body: str) -> Path:
    path.write_text(f'data_dir = "{data_dir}"\nallow_private = true\n{body}', encoding="utf-8")
    return path


def start_scheduler(config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVIDENCE_")}
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "jobs.cli", "--config", str(config), "schedule", "start"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )


def runs(data_dir: Path) -> list[dict[str, Any]]:
    """Every run row, oldest first (read straight from the SQLite index)."""
    if not (data_dir / "index.sqlite").exists():
        return []
    database = sqlite3.connect(data_dir / "index.sqlite")
    database.row_factory = sqlite3.Row
    try:
        rows = database.execute(
            "SELECT runs.*, sources.name AS source FROM runs "
            "LEFT JOIN sources ON runs.source_id = sources.id ORDER BY started_at"
        ).fetchall()
    except sqlite3.OperationalError:  # not created yet
        return []
    finally:
        database.close()
    return [dict(row) | {"stats": json.loads(row["stats"])} for row in rows]


def fired_jobs(log: Path) -> list[tuple[datetime, datetime]]:
    """(when logged, when due) of each job the scheduler ran, from its log."""
    found = re.findall(
        r"^(\S+ \S+) INFO Running job \".*\(scheduled at (\S+ \S+)\)$",
        log.read_text(),
        flags=re.MULTILINE,
    )
    # logging writes the machine's local time; APScheduler the schedule's zone
    return [
        (
            datetime.strptime(logged, "%Y-%m-%d %H:%M:%S,%f").astimezone(),
            datetime.fromisoformat(due),
        )
        for logged, due in found
    ]


def when(value: str) -> datetime:
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def stop(process: subprocess.Popen[bytes], log: Path) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        assert process.wait(timeout=120) == 0, log.read_text()
    finally:
        process.kill()


def test_runs_start_on_time_survive_a_restart_and_coalesce(tmp_path: Path) -> None:
    data = tmp_path / "data"
    sample = tmp_path / "sample.txt"
    sample.write_text("a scheduled file")
    config = write_config(
        tmp_path / "evidence.toml",
        data,
        f'[sources.nightly-files]\ntype = "files"\npaths = ["{sample}"]\n'
        'schedule = "*/4 * * * * *"\ntimezone = "UTC"\ncollection = "scheduled"\n',
    )
    log = tmp_path / "scheduler.log"
    first = start_scheduler(config, log)
    try:
        wait_for(lambda: len(runs(data)) >= 2, 60, "two scheduled runs")
    finally:
        stop(first, log)
    before = runs(data)
    assert all(r["status"] == "succeeded" and r["trigger"] == "schedule" for r in before)
    # Each job fired on a */4 second of the clock, and its run was launched at once (the run
    # row itself is written a little later: the run's process has to start first).
    fired = fired_jobs(log)
    assert len(fired) >= len(before), log.read_text()
    for logged, due in fired:
        assert due.second % 4 == 0 and (logged - due).total_seconds() < 2, (logged, due)
    # Every scheduled run archived its report and log, and the run row names that snapshot.
    assert all(r["report_snapshot_id"] for r in before)

    time.sleep(9)  # the scheduler is down: two or three runs are missed
    log.write_text("")
    second = start_scheduler(config, log)
    try:
        wait_for(lambda: len(fired_jobs(log)) >= 3, 60, "three more runs")
    finally:
        stop(second, log)
    dues = [due for _, due in fired_jobs(log)]
    [started] = re.findall(r"^(\S+ \S+) INFO Scheduler started$", log.read_text(), re.MULTILINE)
    began = datetime.strptime(started, "%Y-%m-%d %H:%M:%S,%f").astimezone()
    # The runs missed while it was down are made up as one run (coalesced: not two or three
    # at once) as soon as it starts, then the schedule goes on.
    assert len([due for due in dues if due < began]) == 1, (began, dues)
    assert all((b - a).total_seconds() >= 4 for a, b in itertools.pairwise(dues)), dues
    assert all(r["status"] == "succeeded" for r in runs(data))
    listed = run_cli("--config", str(config), "schedule", "list", "--json", check=True)
    [entry] = json.loads(listed.stdout)
    assert entry["name"] == "nightly-files" and entry["last_run"]["status"] == "succeeded"
    verified = run_cli("--config", str(config), "verify", "--all", "--json")
    assert json.loads(verified.stdout)["ok"], verified.stdout


def test_two_schedulers_never_run_a_source_twice_at_once(tmp_path: Path, site: FixtureSite) -> None:
    data = tmp_path / "data"
    # Each run takes 3 seconds and the source fires every second, from two schedulers.
    config = write_config(
        tmp_path / "evidence.toml",
        data,
        f'[sources.slow-pages]\ntype = "pages"\nurls = ["{site.url("/slow?seconds=3")}"]\n'
        'obey_robots = false\nschedule = "* * * * * *"\n',
    )
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    schedulers = [start_scheduler(config, log) for log in logs]
    try:
        wait_for(lambda: sum(r["status"] != "running" for r in runs(data)) >= 3, 120, "3 runs")
    finally:
        for process, log in zip(schedulers, logs, strict=True):
            stop(process, log)
    finished = [r for r in runs(data) if r["finished_at"]]
    spans = sorted((when(r["started_at"]), when(r["finished_at"])) for r in finished)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end, "two runs of one source overlapped"
    refused = "".join(log.read_text() for log in logs)
    assert "is already running" in refused  # the other scheduler's attempts were refused


def test_sigterm_lets_a_run_finish_or_marks_it_interrupted(
    tmp_path: Path, site: FixtureSite
) -> None:
    data = tmp_path / "data"
    config = write_config(
        tmp_path / "evidence.toml",
        data,
        "[schedule]\nshutdown_grace = 1\n"
        f'[sources.very-slow]\ntype = "pages"\nurls = ["{site.url("/slow?seconds=40")}"]\n'
        'obey_robots = false\nschedule = "* * * * * *"\n',
    )
    log = tmp_path / "scheduler.log"
    process = start_scheduler(config, log)
    try:
        wait_for(lambda: any(r["status"] == "running" for r in runs(data)), 60, "a run")
        time.sleep(1)
    finally:
        started = time.monotonic()
        stop(process, log)
    assert time.monotonic() - started < 60  # did not wait for the 40-second page
    [run] = runs(data)
    assert run["status"] == "interrupted", (run, log.read_text())
    assert run["finished_at"] is not None


class _Receiver(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]  # set per server by the fixture

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []
    handler = type("Receiver", (_Receiver,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook?token=WEBHOOK-SECRET", received
    finally:
        server.shutdown()
        server.server_close()


def test_a_login_wall_makes_the_run_partial_and_alerts(
    tmp_path: Path, site: FixtureSite, webhook: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = webhook
    data = tmp_path / "data"
    config = write_config(
        tmp_path / "evidence.toml",
        data,
        f'[alerts]\nwebhook_url = "{url}"\n'
        f'[sources.feed]\ntype = "pages"\nurls = ["{site.url("/@alice")}"]\nobey_robots = false\n'
        'schedule = "0 3 * * *"\n',
    )
    good = run_cli("--config", str(config), "crawl", "feed", "--trigger", "schedule")
    assert good.returncode == 0, good.stderr
    assert received == []  # a run that went well alerts nobody
    # The source starts answering with a login wall.
    walled = run_cli(
        "--config",
        str(config),
        "crawl",
        "feed",
        "--trigger",
        "schedule",
        "-a",
        f"url={site.url('/private/feed')}",
    )
    assert walled.returncode == 3, walled.stderr
    [message] = received
    assert message["source"] == "feed" and message["status"] == "partial"
    assert message["failures"][0]["outcome"] == "login-wall"
    shown = run_cli("--config", str(config), "config", "show", "--json", check=True)
    assert "WEBHOOK-SECRET" not in shown.stdout
    # A run by hand alerts only when [alerts] on says so.
    by_hand = run_cli(
        "--config", str(config), "crawl", "feed", "-a", f"url={site.url('/private/feed')}"
    )
    assert by_hand.returncode == 3 and len(received) == 1


def test_schedule_commands(tmp_path: Path, site: FixtureSite) -> None:
    data = tmp_path / "data"
    config = write_config(
        tmp_path / "evidence.toml",
        data,
        f'[sources.feed]\ntype = "pages"\nurls = ["{site.url("/@alice")}"]\nobey_robots = false\n'
        'schedule = "30 2 * * *"\n',
    )
    listed = json.loads(
        run_cli("--config", str(config), "schedule", "list", "--json", check=True).stdout
    )
    assert listed[0]["name"] == "feed" and listed[0]["next_run"]
    assert listed[0]["timezone"] == "Europe/Berlin" and listed[0]["paused_at"] is None
    run_cli(
        "--config", str(config), "schedule", "pause", "feed", "--reason", "site down", check=True
    )
    paused = json.loads(
        run_cli("--config", str(config), "schedule", "list", "--json", check=True).stdout
    )
    assert paused[0]["paused_at"]
    # A paused source's scheduled run is skipped, and says so.
    from jobs.config import load_settings
    from jobs.schedule import launch_run

    assert launch_run("feed", str(config)) is None
    run_cli("--config", str(config), "schedule", "resume", "feed", check=True)
    now = run_cli("--config", str(config), "schedule", "run-now", "feed", "--json")
    assert now.returncode == 0, now.stderr
    body = json.loads(now.stdout)
    assert body["status"] == "succeeded" and body["source"] == "feed"
    shown = json.loads(
        run_cli(
            "--config", str(config), "runs", "show", body["run"][:8], "--json", check=True
        ).stdout
    )
    assert shown["trigger"] == "manual" and shown["stats"]["snapshots"] >= 1
    listed_runs = run_cli(
        "--config", str(config), "runs", "list", env={"COLUMNS": "200"}, check=True
    )
    assert body["run"][:8] in listed_runs.stdout
    bad = run_cli("--config", str(config), "schedule", "pause", "nope")
    assert bad.returncode == 2 and "has no schedule" in bad.stderr
    assert load_settings(config).schedule.misfire_grace == 3600


def test_bad_schedules_are_refused_naming_the_source(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "evidence.toml",
        tmp_path / "data",
        '[sources.feed]\ntype = "pages"\nurls = ["https://example.org/"]\n'
        'schedule = "every night"\n',
    )
    proc = run_cli("--config", str(config), "schedule", "list")
    assert proc.returncode == 2 and "every night" in proc.stderr and "pages" in proc.stderr
    config.write_text(
        '[sources.feed]\ntype = "pages"\nurls = ["https://example.org/"]\n'
        'schedule = "0 3 * * *"\ntimezone = "Mars/Olympus"\n'
    )
    proc = run_cli("--config", str(config), "schedule", "list")
    assert proc.returncode == 2 and "Mars/Olympus" in proc.stderr


class _SmtpHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP (RFC 5321) to receive one message from smtplib."""

    messages: list[str]

    def handle(self) -> None:
        self.wfile.write(b"220 localhost test SMTP\r\n")
        while line := self.rfile.readline():
            command = line.decode().strip().upper()
            if command.startswith(("HELO", "EHLO")):
                self.wfile.write(b"250 localhost\r\n")
            elif command == "DATA":
                self.wfile.write(b"354 go ahead\r\n")
                body = []
                while (data := self.rfile.readline()) not in (b".\r\n", b""):
                    body.append(data.decode())
                self.messages.append("".join(body))
                self.wfile.write(b"250 queued\r\n")
            elif command == "QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:  # MAIL FROM, RCPT TO, RSET, NOOP
                self.wfile.write(b"250 ok\r\n")


def test_a_failed_run_is_mailed(tmp_path: Path) -> None:
    messages: list[str] = []
    handler = type("Smtp", (_SmtpHandler,), {"messages": messages})
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        config = write_config(
            tmp_path / "evidence.toml",
            tmp_path / "data",
            f'[alerts]\nsmtp_host = "127.0.0.1"\nsmtp_port = {server.server_address[1]}\n'
            'smtp_to = ["oncall@example.org"]\n'
            '[sources.feed]\ntype = "pages"\nurls = ["http://127.0.0.1:9/refused"]\n',
        )
        proc = run_cli("--config", str(config), "crawl", "feed", "--trigger", "schedule")
    finally:
        server.shutdown()
        server.server_close()
    assert proc.returncode == 2, proc.stderr  # nothing archived: the run failed
    [message] = messages
    assert "Subject: [dsa-evidence] feed: run failed" in message
    assert "oncall@example.org" in message and "connection-error" in message
