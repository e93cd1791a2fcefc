"""Statements of reasons end to end: the `dsa-sor` source against the imitation Transparency
Database (fixtures/dsa_sor, built from the Commission's real rows), ingestion into Parquet,
and the DuckDB queries, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import zipfile
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

from evidence_store.archive import EvidenceStore, archive
from evidence_store.index.models import Snapshot
from fixtures.dsa_sor.dumps import real_rows, write_dump, write_sha1
from fixtures.dsa_sor.server import DsaSorServer
from jobs.config import load_settings
from jobs.context import open_evidence
from jobs.crawl import crawl
from jobs.runs import show_run
from jobs.sor import Filters, sor_dumps, sor_export, sor_ingest, sor_show, sor_stats
from jobs.verify import verify
from records.sor.ingest import ingest_dump
from records.sor.models import SorDump, SorPart
from records.sor.query import find, ingested_parts, parquet_paths, statements
from schemas import Capture, CaptureArtifact
from tests.conftest import run_cli

NEW_DAY, OLD_DAY = "2025-07-01", "2024-03-14"
DUPLICATE_UUID = "03b1b1c9-a860-4bf6-afff-0d8f0d944871"  # rows 1 and 2 of the 2024 sample


@pytest.fixture(scope="module")
def server() -> Any:
    with DsaSorServer() as running:
        yield running


@pytest.fixture
def settings(tmp_path: Path, db_url: str, server: DsaSorServer, monkeypatch: pytest.MonkeyPatch):
    for key in [k for k in os.environ if k.startswith("EVIDENCE_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    server.reset_stats()
    return load_settings(
        data_dir=tmp_path / "data",
        db_url=db_url,
        allow_private=True,
        sources={"dsa-sor": {"base_url": server.base_url}},
    )


def _archived_row(settings: Any, place: dict[str, Any]) -> dict[str, str]:
    """The CSV row an exhibit would cite, read back from the archived dump's bytes."""
    evidence = open_evidence(settings)
    with evidence.index.session() as session:
        dump = session.get(SorDump, place["dump_snapshot"])
        sha256 = dump.sha256
    with evidence.objects.open(sha256) as stream:
        outer = zipfile.ZipFile(io.BytesIO(stream.read()))
    with outer.open(place["part"]) as part, zipfile.ZipFile(part) as inner:
        text = inner.read(place["csv_file"]).decode("utf-8")
    return list(csv.DictReader(io.StringIO(text, newline="")))[place["row"] - 1]


def test_a_day_is_fetched_checked_archived_and_ingested(
    settings: Any, server: DsaSorServer
) -> None:
    result = crawl(settings, "dsa-sor", [f"date={NEW_DAY}"])
    assert result.status == "succeeded", result.to_dict()
    [outcome] = result.items
    assert outcome.outcome == "archived" and outcome.url.endswith(
        f"/explore-data/download/sor-global-{NEW_DAY}-full.zip"
    )
    assert [a.role for a in outcome.artifacts] == ["dump", "checksum"]

    [dump] = sor_dumps(settings)
    assert (dump.status, dump.rows, dump.parts, dump.schema_version) == ("ingested", 50, 2, 2)
    assert dump.sha1 == server.dump(NEW_DAY).info.sha1  # recorded as published, and matched
    evidence = open_evidence(settings)
    with evidence.index.session() as session:
        parts = session.scalars(select(SorPart).order_by(SorPart.position)).all()
        derived = session.scalars(select(Snapshot).where(Snapshot.kind == "derived")).all()
    assert [p.status for p in parts] == ["ingested", "ingested"]
    assert sorted(p.parquet_snapshot for p in parts) == sorted(s.id for s in derived)

    # The real rows' platforms and categories, counted from the Parquet files.
    stats = sor_stats(settings, Filters())
    assert stats["statements"] == 50
    assert stats["by"]["platform_name"] == {
        "Hotel Hideaway": 39,
        "Discord Netherlands B.V.": 4,
        "Idealo": 3,
        "Kleinanzeigen": 2,
        "Habbo": 1,
        "Wallapop": 1,
    }
    assert stats["by"]["category"]["STATEMENT_CATEGORY_ILLEGAL_OR_HARMFUL_SPEECH"] == 37
    assert stats["by"]["decision_account"]["DECISION_ACCOUNT_TERMINATED"] == 3
    assert stats["by"]["territorial_scope_de"]["DE included"] == 50

    # A statement by its uuid, with the place in the archived dump it came from.
    wanted = real_rows(2)[17]
    statement = sor_show(settings, wanted["uuid"])
    [place] = statement.found_in
    assert place["dump_snapshot"] == outcome.snapshot and place["day"] == NEW_DAY
    assert _archived_row(settings, place) == wanted
    assert statement.fields["platform_name"] == wanted["platform_name"]

    # The Parquet snapshots are evidence like any other: verified from their bytes.
    report = verify(settings).report
    assert report.problems == [] and report.snapshots == 3  # the dump and two Parquet files


def test_both_schemas_land_in_one_with_the_renamed_categories(settings: Any) -> None:
    result = crawl(settings, "dsa-sor", [f"date={OLD_DAY}", f"date={NEW_DAY}"])
    assert result.status == "succeeded"
    by_day = {d.day: d for d in sor_dumps(settings)}
    assert by_day[OLD_DAY].schema_version == 1 and by_day[NEW_DAY].schema_version == 2
    stats = sor_stats(settings, Filters())
    assert stats["statements"] == 99  # 100 rows, one of them published twice
    categories = stats["by"]["category"]
    # 33 "scope of platform service" (old) and 1 "other violation of T&C" (new): one category.
    assert categories["STATEMENT_CATEGORY_OTHER_VIOLATION_TC"] == 34
    assert "STATEMENT_CATEGORY_SCOPE_OF_PLATFORM_SERVICE" not in categories

    old = sor_show(settings, DUPLICATE_UUID)
    assert [p["row"] for p in old.found_in] == [1, 2]  # both rows, as the source has them
    assert old.fields["content_id_ean"] is None and old.fields["automated_detection"] is True
    assert old.fields["territorial_scope"][:3] == ["AT", "BE", "BG"]

    only_old = sor_stats(settings, Filters(day_to=date(2024, 12, 31)))
    assert only_old["statements"] == 49
    assert only_old["by"]["category"]["STATEMENT_CATEGORY_OTHER_VIOLATION_TC"] == 33
    tiktok = sor_stats(settings, Filters(platform="TikTok"))
    assert tiktok["statements"] == 7 and tiktok["rows"] == 8


def test_a_wrong_published_sha1_is_reported_and_nothing_archived(settings: Any) -> None:
    result = crawl(settings, "dsa-sor", ["date=2025-07-02"])
    assert result.status == "failed"
    [outcome] = result.items
    assert outcome.outcome == "checksum-mismatch" and outcome.snapshot is None
    assert "is not the published" in (outcome.error or "")
    assert sor_dumps(settings) == []


def test_a_broken_part_is_reported_and_the_others_ingested(settings: Any) -> None:
    result = crawl(settings, "dsa-sor", ["date=2025-07-03"])
    assert result.status == "partial"
    archived = [o for o in result.items if o.snapshot]
    broken = [o for o in result.items if o.outcome == "broken-part"]
    assert len(archived) == 1 and len(broken) == 1
    assert broken[0].url.endswith("-00001.csv.zip") and broken[0].error
    [dump] = sor_dumps(settings)
    assert dump.status == "partial" and dump.parts == 3 and dump.broken_parts == 1
    assert dump.rows == 200  # parts 0 and 2, 100 rows each
    assert sor_stats(settings, Filters())["rows"] == 200
    run = show_run(settings, result.run_id)
    assert run.status == "partial" and run.stats["records"] == 200
    assert any(f["outcome"] == "broken-part" for f in run.stats["failures"])


def test_the_same_day_again_is_idempotent(settings: Any) -> None:
    first = crawl(settings, "dsa-sor", [f"date={NEW_DAY}"])
    second = crawl(settings, "dsa-sor", [f"date={NEW_DAY}"])
    assert first.status == second.status == "succeeded"
    assert first.items[0].snapshot != second.items[0].snapshot  # a capture of its own
    dumps = {d.snapshot: d for d in sor_dumps(settings)}
    again = dumps[second.items[0].snapshot]
    assert again.status == "duplicate" and again.same_as == first.items[0].snapshot
    assert sor_stats(settings, Filters())["rows"] == 50
    # A platform's own dump of a day that has a global one is not counted twice.
    crawl(settings, "dsa-sor", [f"date={NEW_DAY}", "platform=Hotel Hideaway"])
    stats = sor_stats(settings, Filters())
    assert stats["rows"] == 50 and stats["by"]["platform_name"]["Hotel Hideaway"] == 39


def test_a_reissued_day_is_read_as_last_published(settings: Any, server: DsaSorServer) -> None:
    crawl(settings, "dsa-sor", [f"date={NEW_DAY}", "platform=idealo"])
    try:
        rows = real_rows(2)
        server.replace_dump(
            NEW_DAY, "idealo", "full", [r for r in rows if r["platform_name"] == "Idealo"][:2]
        )
        crawl(settings, "dsa-sor", [f"date={NEW_DAY}", "platform=idealo"])
    finally:
        server.replace_dump(
            NEW_DAY, "idealo", "full", [r for r in real_rows(2) if r["platform_name"] == "Idealo"]
        )
    assert [d.rows for d in sor_dumps(settings)] in ([2, 3], [3, 2])
    assert sor_stats(settings, Filters())["rows"] == 2


def test_an_ingestion_killed_half_way_resumes_after_its_last_part(settings: Any) -> None:
    evidence = open_evidence(settings)
    path = settings.data_path.parent / f"sor-global-{NEW_DAY}-full.zip"
    info = write_dump(
        path,
        real_rows(2),
        platform="global",
        day=NEW_DAY,
        schema=2,
        rows_per_csv=10,
        csvs_per_part=1,
    )
    archived = archive(evidence, _dump_capture(info, path))

    class Killed(Exception):
        pass

    def die_after_two(part: str, rows: int) -> None:
        if part.endswith("-00001.csv.zip"):
            raise Killed(part)

    with pytest.raises(Killed):
        ingest_dump(evidence, archived.id, workdir=path.parent / "w1", on_part=die_after_two)
    with evidence.index.session() as session:
        assert session.get(SorDump, archived.id).status == "ingesting"
        done = session.scalars(select(SorPart).where(SorPart.status == "ingested")).all()
    assert len(done) == 2

    result = sor_ingest(settings)
    [dump] = result.dumps
    assert dump.status == "ingested" and dump.rows == 50 and dump.parts == 5
    assert len(dump.derived) == 3  # only the parts not finished before
    assert sor_stats(settings, Filters())["rows"] == 50
    assert sor_ingest(settings).dumps == []  # nothing left to do


def _dump_capture(info: Any, path: Path) -> Capture:
    return Capture(
        collection="dsa-sor",
        kind="dump",
        source="dsa-sor",
        source_url=f"https://transparency.dsa.ec.europa.eu/explore-data/download/{info.filename}",
        metadata={
            "dsa_sor": {
                "day": NEW_DAY,
                "platform": "global",
                "variant": "full",
                "filename": info.filename,
                "sha1": info.sha1,
                "sha1_verified": True,
            }
        },
        artifacts=[
            CaptureArtifact(
                role="dump", name=info.filename, media_type="application/zip", path=path
            ),
            CaptureArtifact(
                role="checksum",
                name=info.filename + ".sha1",
                media_type="text/plain",
                data=write_sha1(info),
            ),
        ],
    )


def test_light_dumps_leave_the_free_text_empty(settings: Any) -> None:
    result = crawl(settings, "dsa-sor", [f"date={NEW_DAY}", "variant=light"])
    assert result.status == "succeeded"
    wanted = real_rows(2)[0]
    statement = sor_show(settings, wanted["uuid"])
    assert statement.fields["decision_facts"] is None
    assert statement.fields["platform_name"] == wanted["platform_name"]


def test_exports_name_their_rows_and_refuse_to_overwrite(settings: Any, tmp_path: Path) -> None:
    crawl(settings, "dsa-sor", [f"date={OLD_DAY}"])
    target = tmp_path / "tiktok.parquet"
    result = sor_export(settings, Filters(platform="tiktok"), target, "parquet")
    table = pq.read_table(target)
    assert result.rows == table.num_rows == 8
    assert set(table.column("platform_name").to_pylist()) == {"TikTok"}
    assert {"dump_snapshot", "part", "csv_file", "row"} <= set(table.column_names)
    csv_target = tmp_path / "minors.csv"
    sor_export(settings, Filters(category="PROTECTION_OF_MINORS"), csv_target, "csv")
    rows = list(csv.DictReader(csv_target.open(encoding="utf-8")))
    assert len(rows) == 5 and {r["category"] for r in rows} == {
        "STATEMENT_CATEGORY_PROTECTION_OF_MINORS"
    }
    from evidence_store.errors import InputError

    with pytest.raises(InputError, match="never overwritten"):
        sor_export(settings, Filters(), target, "parquet")
    assert pq.read_table(target).num_rows == 8


def test_downloads_resume_and_retry(settings: Any, server: DsaSorServer) -> None:
    size = server.dump(NEW_DAY).info.size
    server.cut_downloads(1, after_bytes=size // 2)
    server.fail_downloads(1, status=503, retry_after=0)
    result = crawl(settings, "dsa-sor", [f"date={NEW_DAY}"])
    assert result.status == "succeeded"
    ranges = [r.headers.get("Range") for r in server.requests if r.path.endswith("full.zip")]
    assert any(r and r.startswith("bytes=") for r in ranges), ranges


def test_a_private_address_is_refused_unless_allowed(settings: Any) -> None:
    refused = settings.model_copy(update={"allow_private": False})
    result = crawl(refused, "dsa-sor", [f"date={NEW_DAY}"])
    assert result.status == "failed"
    assert result.items[0].outcome == "private-address"


def test_unknown_days_are_not_found(settings: Any) -> None:
    result = crawl(settings, "dsa-sor", ["date=2023-01-01"])
    assert result.status == "failed" and result.items[0].outcome == "not-found"


@pytest.mark.parametrize("store", ["local", "s3"], indirect=True)
def test_queries_read_parquet_from_any_store(store: Any, tmp_path: Path) -> None:
    from evidence_store.index import Index
    from evidence_store.signing import Signer

    index = Index(f"sqlite:///{tmp_path / 'index.sqlite'}")
    evidence = EvidenceStore(store, index, Signer.load_or_create(tmp_path / "keys"), "pytest")
    try:
        path = tmp_path / f"sor-global-{NEW_DAY}-full.zip"
        info = write_dump(
            path, real_rows(2), platform="global", day=NEW_DAY, schema=2, rows_per_csv=25
        )
        archived = archive(evidence, _dump_capture(info, path))
        done = ingest_dump(evidence, archived.id, workdir=tmp_path / "work")
        assert done.status == "ingested" and done.rows == 50
        files = ingested_parts(evidence)
        paths = parquet_paths(evidence, files, tmp_path / "cache")
        with statements(paths) as con:
            [row] = find(con, real_rows(2)[3]["uuid"])
        assert row["row"] == 4 and row["dump_snapshot"] == archived.id
    finally:
        index.dispose()


def test_the_cli(settings: Any, server: DsaSorServer, tmp_path: Path) -> None:
    env = {
        "EVIDENCE_DATA_DIR": str(tmp_path / "cli-data"),
        "EVIDENCE_DB_URL": f"sqlite:///{tmp_path / 'cli.sqlite'}",
        "EVIDENCE_SOURCES__DSA_SOR__BASE_URL": server.base_url,
    }
    ok = run_cli("crawl", "dsa-sor", "-a", f"date={NEW_DAY}", "--allow-private", env=env)
    assert ok.returncode == 0, ok.stderr
    partial = run_cli("crawl", "dsa-sor", "-a", "date=2025-07-03", "--allow-private", env=env)
    assert partial.returncode == 3 and "broken-part" in partial.stdout
    failed = run_cli("crawl", "dsa-sor", "-a", "date=2025-07-02", "--allow-private", env=env)
    assert failed.returncode == 2 and "checksum-mismatch" in failed.stdout
    stats = run_cli("sor", "stats", "--json", "--to", NEW_DAY, env=env, check=True)
    assert json.loads(stats.stdout)["by"]["platform_name"]["Hotel Hideaway"] == 39
    shown = run_cli("sor", "show", real_rows(2)[0]["uuid"], "--json", env=env, check=True)
    assert json.loads(shown.stdout)["found_in"][0]["row"] == 1
    missing = run_cli("sor", "show", "00000000-0000-0000-0000-000000000000", env=env)
    assert missing.returncode == 2 and "no statement" in missing.stderr
    bad = run_cli("sor", "stats", "--from", "yesterday", env=env)
    assert bad.returncode == 2 and "YYYY-MM-DD" in bad.stderr
    dumps = run_cli("sor", "dumps", env=env, check=True)
    assert "partial" in dumps.stdout and "broken" in dumps.stderr


def test_research_api_searches_are_archived_without_the_token(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in [k for k in os.environ if k.startswith("EVIDENCE_")]:
        monkeypatch.delenv(key)
    queries = [
        json.dumps({"query": {"term": {"platform_name": "TikTok"}}, "size": 1000}),
        json.dumps({"query": {"match": {"decision_facts": "own-initiative"}}, "size": 5}),
        json.dumps({"query": {"match_all": {}}, "size": 3}),
    ]
    # Two requests per five seconds: the third query meets a 429 and waits as told.
    with DsaSorServer(research_rate_limit=2, research_window=5.0) as api:
        settings = load_settings(
            data_dir=tmp_path / "data",
            db_url=db_url,
            allow_private=True,
            sources={
                "dsa-sor-research": {
                    "base_url": api.base_url,
                    "token": "test-token",
                    "queries": queries,
                },
                "wrong-token": {
                    "type": "dsa-sor-research",
                    "base_url": api.base_url,
                    "token": "guessed",
                    "queries": queries[:1],
                },
            },
        )
        result = crawl(settings, "dsa-sor-research")
        sent = len(api.requests)
        refused = crawl(settings, "wrong-token")
    assert result.status == "succeeded", result.to_dict()
    assert sent == 4  # three queries, one of them sent again after its 429
    evidence = open_evidence(settings)
    first = result.items[0]
    answer = json.loads(evidence.objects.get(first.artifacts[1].sha256))
    assert answer["hits"]["total"]["value"] == 7  # TikTok in the real rows, one per uuid
    for outcome in result.items:
        for artifact in outcome.artifacts:
            assert b"test-token" not in evidence.objects.get(artifact.sha256)
        assert b"test-token" not in evidence.objects.get(outcome.snapshot)
    assert refused.status == "failed" and refused.items[0].outcome == "http-401"


def test_a_statement_is_an_exhibit_with_the_dump_it_is_in(
    settings: Any, server: DsaSorServer, tmp_path: Path
) -> None:
    crawl(settings, "dsa-sor", [f"date={OLD_DAY}", "platform=global", "platform=TikTok"])
    env = {
        "EVIDENCE_DATA_DIR": str(settings.data_path),
        "EVIDENCE_DB_URL": settings.database_url,
    }
    bundle = tmp_path / "sor-exhibit"
    run_cli(
        "exhibit",
        "build",
        f"sor:{DUPLICATE_UUID}",
        "--case",
        "Test ./. TikTok",
        "--lang",
        "en",
        "-o",
        str(bundle),
        env=env,
        check=True,
    )
    manifest = json.loads((bundle / "BUNDLE.json").read_text(encoding="utf-8"))
    [exhibit] = manifest["exhibits"]
    assert exhibit["kind"] == "sor" and exhibit["ref"] == f"sor:{DUPLICATE_UUID}"
    fields = dict(exhibit["fields"])
    # The smallest dump holding it: TikTok's own, not the global one.
    assert fields["dump_file"] == f"sor-tiktok-{OLD_DAY}-full.zip" and fields["row"] == "1"
    [original] = [p for p in (bundle / "K1").rglob("*.zip")]
    assert original.name == f"sor-tiktok-{OLD_DAY}-full.zip"
    verified = run_cli("exhibit", "verify", str(bundle), env=env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    text = subprocess.run(
        ["pdftotext", str(bundle / "K1.pdf"), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert DUPLICATE_UUID in text and "TikTok" in text
