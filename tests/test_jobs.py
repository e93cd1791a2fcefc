"""The jobs layer in process: the source registry, settings, the run lifecycle, collectors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from evidence_store.archive import archive
from evidence_store.errors import SourceChangedError
from evidence_store.index.models import Run
from jobs import sources
from jobs.config import ConfigError, load_settings
from jobs.context import open_evidence
from jobs.crawl import crawl
from jobs.ingest import ingest
from jobs.runs import run_lifecycle
from schemas import Capture, CaptureArtifact


@pytest.fixture
def example_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry with the test package's sources too."""
    monkeypatch.setattr(
        sources, "SOURCE_PACKAGES", (*sources.SOURCE_PACKAGES, "tests.example_sources")
    )
    sources.registry.cache_clear()
    yield
    sources.registry.cache_clear()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for key in list(os.environ):
        if key.startswith("EVIDENCE_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_registry_finds_the_sources_where_they_are_declared() -> None:
    found = sources.registry()
    assert {"pages", "files"} <= set(found)
    pages = sources.describe(found["pages"])
    assert pages["kind"] == "spider" and pages["implementation"].endswith("PagesSpider")
    names = {s["name"]: s for s in pages["settings"]}
    assert names["timeout"]["default"] == 30 and names["timeout"]["help"]
    with pytest.raises(sources.SourceError, match="unknown source 'nope': known sources are"):
        sources.get_source("nope")


def test_settings_from_file_and_environment(
    example_sources: None, clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (clean_env / "evidence.toml").write_text(
        '[sources.tokenised-api]\nbase_url = "http://127.0.0.1:9/v1"\nlimit = 3\n'
        'access_token = "from-the-file"\n',
        encoding="utf-8",
    )
    # A dash in the name is an underscore in the variable; lists come as JSON.
    monkeypatch.setenv("EVIDENCE_SOURCES__TOKENISED_API__TEXTS", '["a", "b"]')
    monkeypatch.setenv("EVIDENCE_SOURCES__TOKENISED_API__LIMIT", "5")
    settings = load_settings()
    configured = settings.sources["tokenised-api"]
    assert configured["limit"] == 5  # the variable wins over the file
    spec = sources.get_source("tokenised-api")
    run = sources.settings_for_run(spec, configured, ["limit=1"])
    assert run.limit == 1 and run.texts == ["a", "b"]
    assert run.base_url == "http://127.0.0.1:9/v1"
    assert run.access_token.get_secret_value() == "from-the-file"
    view = json.dumps(settings.public_view())
    assert "from-the-file" not in view and "********" in view


def test_bad_source_settings_name_the_source_and_key(
    example_sources: None, clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (clean_env / "evidence.toml").write_text("[sources.tokenised-api]\nlimit = 0\n")
    with pytest.raises(ConfigError, match=r"tokenised-api.*'limit'.*\[sources.tokenised-api\]"):
        load_settings()
    (clean_env / "evidence.toml").write_text("[sources.tokenised-api]\ncolour = 1\n")
    with pytest.raises(ConfigError, match="unknown setting 'colour'"):
        load_settings()
    (clean_env / "evidence.toml").write_text("[sources.no-such]\nx = 1\n")
    with pytest.raises(ConfigError, match="unknown source 'no-such'"):
        load_settings()
    (clean_env / "evidence.toml").unlink()
    monkeypatch.setenv("EVIDENCE_SOURCES__TOKENISED_API__COLOUR", "red")
    with pytest.raises(ConfigError, match="EVIDENCE_SOURCES__TOKENISED_API__COLOUR"):
        load_settings()


def test_credentials_are_refused_on_the_command_line(example_sources: None) -> None:
    spec = sources.get_source("tokenised-api")
    with pytest.raises(sources.SourceError) as refused:
        sources.parse_arguments(spec, ["access_token=SECRET-42"])
    assert "never taken from the command line" in str(refused.value)
    assert "SECRET-42" not in str(refused.value)
    assert "EVIDENCE_SOURCES__TOKENISED_API__ACCESS_TOKEN" in str(refused.value)
    # -a text=… adds to the list setting texts
    assert sources.parse_arguments(spec, ["text=a", "text=b"]) == {"texts": ["a", "b"]}
    with pytest.raises(sources.SourceError, match="given twice"):
        sources.parse_arguments(spec, ["limit=1", "limit=2"])
    with pytest.raises(sources.SourceError, match="give -a key=value"):
        sources.parse_arguments(spec, ["limit"])


def test_a_collector_source_runs_through_group_commit(
    example_sources: None, clean_env: Path, db_url: str
) -> None:
    settings = load_settings(data_dir=clean_env / "data", db_url=db_url)
    result = crawl(settings, "tokenised-api", ["text=one", "text=two", "text=three"])
    assert result.status == "succeeded" and result.collection == "api-items"
    assert [o.sequence for o in result.outcomes] == [1, 2, 3]
    evidence = open_evidence(settings)
    with evidence.index.session() as session:
        run = session.get(Run, result.run_id)
        assert run.status == "succeeded" and run.kind == "api" and run.pid == os.getpid()
        assert run.stats["snapshots"] == 3 and run.finished_at is not None


def test_a_run_whose_job_raises_is_marked_failed(clean_env: Path, db_url: str) -> None:
    settings = load_settings(data_dir=clean_env / "data", db_url=db_url)
    evidence = open_evidence(settings)
    with (
        pytest.raises(RuntimeError, match="the store fell over"),
        run_lifecycle(
            evidence, kind="capture", collection="default", source="pages", note=None
        ) as run,
    ):
        raise RuntimeError("the store fell over")
    with evidence.index.session() as session:
        row = session.get(Run, run.id)
        assert row.status == "failed" and "the store fell over" in row.error
        assert row.finished_at is not None


RUN_AND_HANG = """
import sys, time
from jobs.config import load_settings
from jobs.context import open_evidence
from jobs.runs import run_lifecycle
settings = load_settings(data_dir=sys.argv[1], db_url=sys.argv[2])
with run_lifecycle(open_evidence(settings), kind="capture", collection="default",
                   source="pages", note=None) as run:
    print(run.id, flush=True)
    time.sleep(600)
"""


def test_a_run_left_running_by_a_killed_process_is_marked_interrupted(
    clean_env: Path, db_url: str
) -> None:
    data = clean_env / "data"
    proc = subprocess.Popen(
        [sys.executable, "-c", RUN_AND_HANG, str(data), db_url],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        run_id = proc.stdout.readline().strip()
        settings = load_settings(data_dir=data, db_url=db_url)
        evidence = open_evidence(settings)
        # Still alive: another process's live run is left alone.
        (clean_env / "a.txt").write_text("a")
        first = ingest(settings, [clean_env / "a.txt"])
        assert first.interrupted == []
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        second = ingest(settings, [clean_env / "a.txt"])
        assert [r.id for r in second.interrupted] == [run_id]
        with evidence.index.session() as session:
            row = session.get(Run, run_id)
            assert row.status == "interrupted" and row.finished_at is not None
            assert session.scalars(select(Run).where(Run.status == "running")).all() == []
    finally:
        proc.kill()
        proc.wait()


def test_a_file_that_grows_while_it_is_ingested_is_refused(clean_env: Path, db_url: str) -> None:
    settings = load_settings(data_dir=clean_env / "data", db_url=db_url)
    growing = clean_env / "growing.log"
    growing.write_bytes(os.urandom(64 * 1024 * 1024))
    steady = clean_env / "steady.txt"
    steady.write_text("steady")
    stop = threading.Event()

    def append() -> None:
        with open(growing, "ab") as stream:
            while not stop.is_set():
                stream.write(b"x" * 4096)
                stream.flush()
                time.sleep(0.001)

    writer = threading.Thread(target=append)
    writer.start()
    try:
        result = ingest(settings, [growing, steady])
    finally:
        stop.set()
        writer.join()
    by_file = {Path(o.url).name: o for o in result.outcomes}
    assert by_file["growing.log"].outcome == "changed-while-read"
    assert by_file["growing.log"].snapshot is None and "changed" in by_file["growing.log"].error
    assert by_file["steady.txt"].snapshot and result.status == "partial"


def test_bytes_that_change_after_hashing_are_never_committed(evidence: Any, tmp_path: Path) -> None:
    path = tmp_path / "report.csv"
    path.write_text("a,b\n")
    import hashlib

    expected = hashlib.sha256(b"a,b\n").hexdigest()
    path.write_text("a,b\n1,2\n")  # changed between the hashing and the storing
    capture = Capture(
        artifacts=[CaptureArtifact(role="original", name="r.csv", path=path, sha256=expected)]
    )
    with pytest.raises(SourceChangedError, match="changed while it was archived"):
        archive(evidence, capture)
    with evidence.index.session() as session:
        assert session.scalars(select(Run)).all() == []


def test_a_proc_file_is_recorded_without_its_false_size(clean_env: Path) -> None:
    settings = load_settings(data_dir=clean_env / "data")
    result = ingest(settings, [Path("/proc/version")])
    [outcome] = result.outcomes
    assert outcome.snapshot and outcome.artifacts[0].size > 0
    from jobs.snapshots import view_snapshot

    metadata = view_snapshot(settings, outcome.snapshot).manifest["capture"]
    assert "original_size" not in metadata  # the file system says 0 bytes


def test_the_example_configuration_is_valid(clean_env: Path) -> None:
    """evidence.example.toml stays true: it loads, and its sources are scheduled."""
    from jobs.schedule import scheduled_entries

    example = Path(__file__).resolve().parent.parent / "evidence.example.toml"
    anchor = clean_env / "tsa-ca.pem"
    anchor.write_text("placeholder: only its existence is checked on load")
    config = clean_env / "evidence.toml"
    config.write_text(example.read_text().replace("/etc/evidence/tsa-ca.pem", str(anchor)))
    settings = load_settings(config)
    entries = {e.name: e for e in scheduled_entries(settings)}
    assert entries["pages"].schedule == "30 2 * * *"
    assert entries["x-policy-pages"].source == "pages"
    spec = sources.get_source("pages")
    policies = sources.settings_for_run(spec, settings.sources["x-policy-pages"])
    assert (
        policies.uses_browser(False) and policies.scrapy_settings()["CLOSESPIDER_PAGECOUNT"] == 50
    )
