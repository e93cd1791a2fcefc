"""The `evidence` command as a user runs it: a subprocess, real files, real databases."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import run_cli

SAMPLES = Path(__file__).resolve().parent.parent / "fixtures" / "samples"
SOR_CSV = SAMPLES / "sor-global-2025-07-01-full-00000-00000.csv"


@pytest.fixture
def env(data_dir: Path, db_url: str) -> dict[str, str]:
    return {
        "EVIDENCE_DATA_DIR": str(data_dir),
        "EVIDENCE_DB_URL": db_url,
        "EVIDENCE_ACTOR": "cli-test",
    }


def ingest_json(env: dict[str, str], *files: Path, collection: str = "default") -> list[dict]:
    proc = run_cli(
        "ingest", *map(str, files), "--collection", collection, "--json", env=env, check=True
    )
    return json.loads(proc.stdout)


def test_help_lists_the_commands() -> None:
    proc = run_cli("--help", check=True)
    for command in ("ingest", "verify", "snapshots", "store", "db", "config"):
        assert command in proc.stdout


def test_ingest_list_show_verify(env: dict[str, str], tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    report.write_text("<h1>Transparenzbericht</h1>", encoding="utf-8")
    results = ingest_json(env, SOR_CSV, report)
    assert [r["sequence"] for r in results] == [1, 2]
    [csv_artifact] = results[0]["artifacts"]
    assert (
        csv_artifact["sha256"] == "0655d3d6ab2dd3f3175c535dc41ff98fc051629f6a001fd8a9528cc10b377910"
    )
    assert csv_artifact["media_type"] == "text/csv"

    listed = json.loads(run_cli("snapshots", "list", "--json", env=env, check=True).stdout)
    assert [s["id"] for s in listed] == [results[1]["snapshot"], results[0]["snapshot"]]

    shown = json.loads(
        run_cli(
            "snapshots", "show", results[0]["snapshot"][:10], "--json", env=env, check=True
        ).stdout
    )
    assert shown["snapshot"]["id"] == results[0]["snapshot"]
    assert shown["manifest"]["capture"]["original_name"] == SOR_CSV.name
    assert shown["manifest"]["signer"]["algorithm"] == "Ed25519"

    table = run_cli("snapshots", "list", env=env, check=True).stdout
    assert results[0]["snapshot"][:16] in table

    verified = run_cli("verify", "--all", "--json", env=env)
    assert verified.returncode == 0, verified.stderr
    body = json.loads(verified.stdout)
    assert body["ok"] and body["snapshots"] == 2
    # No TSA is configured: the snapshot's time is not proven, and the verdict says so.
    one = run_cli("verify", results[1]["snapshot"], env=env, check=True)
    assert one.stdout.strip().endswith("OK with 1 unchecked")
    assert "UNCHECKED" in one.stderr and "no timestamp token" in one.stderr


def test_verify_reports_a_flipped_byte_and_exits_1(env: dict[str, str], data_dir: Path) -> None:
    [result] = ingest_json(env, SOR_CSV)
    digest = result["artifacts"][0]["sha256"]
    path = data_dir / "objects" / "sha256" / digest[:2] / digest[2:4] / digest
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[1234] ^= 0x20
    path.write_bytes(bytes(data))
    proc = run_cli("verify", "--all", env=env)
    assert proc.returncode == 1
    assert (
        "artifact-corrupt" in proc.stderr
        and result["snapshot"] in proc.stderr
        and digest in proc.stderr
    )
    problems = json.loads(run_cli("verify", "--all", "--json", env=env).stdout)["problems"]
    assert problems[0]["expected"] == digest and problems[0]["snapshot"] == result["snapshot"]


def test_custody_log_records_archive_view_and_verification(env: dict[str, str]) -> None:
    [result] = ingest_json(env, SOR_CSV)
    run_cli("snapshots", "show", result["snapshot"], env=env, check=True)
    run_cli("verify", "--all", env=env, check=True)
    from sqlalchemy import select

    from evidence_store.index import CustodyEvent, Index

    index = Index(env["EVIDENCE_DB_URL"])
    with index.session() as session:
        events = session.scalars(select(CustodyEvent).order_by(CustodyEvent.id)).all()
    index.dispose()
    assert [e.action for e in events] == ["archived", "viewed", "verified"]
    assert {e.actor for e in events} == {"cli-test"}


def test_sweep_lists_orphans_and_keeps_them(env: dict[str, str], data_dir: Path) -> None:
    ingest_json(env, SOR_CSV)
    from evidence_store.objects import LocalStore

    orphan = LocalStore(data_dir / "objects").put(b"left by a crash").sha256
    proc = run_cli("store", "sweep", "--json", env=env, check=True)
    report = json.loads(proc.stdout)
    assert report["orphans"] == [orphan]
    assert report["referenced"] == 3
    assert LocalStore(data_dir / "objects").exists(orphan)


# -- bad input: one line, non-zero, nothing stored half ------------------------------------
def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_unknown_snapshot_id(env: dict[str, str]) -> None:
    ingest_json(env, SOR_CSV)
    assert_one_line_error(
        run_cli("snapshots", "show", "abcdef0123", env=env), "no snapshot abcdef0123"
    )
    assert_one_line_error(run_cli("verify", "ffffffffff", env=env), "no snapshot ffffffffff")
    assert_one_line_error(run_cli("verify", "xyz", env=env), "not a snapshot id")


def test_missing_file_stores_nothing(env: dict[str, str], data_dir: Path, tmp_path: Path) -> None:
    proc = run_cli("ingest", str(SOR_CSV), str(tmp_path / "missing.pdf"), env=env)
    assert_one_line_error(proc, "no such file", "missing.pdf")
    assert not (data_dir / "objects" / "sha256").exists()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_wrong_database_url(env: dict[str, str]) -> None:
    bad = env | {"EVIDENCE_DB_URL": "postgresql://evidence:hunter2@127.0.0.1:1/evidence"}
    proc = run_cli("snapshots", "list", env=bad)
    assert_one_line_error(proc, "cannot open the index database", "127.0.0.1:1")
    assert "hunter2" not in proc.stderr
    assert_one_line_error(
        run_cli("db", "upgrade", env=env | {"EVIDENCE_DB_URL": "mysql+nodriver://x/y"}),
        "unsupported database URL",
    )


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_unreadable_store(env: dict[str, str], tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = run_cli(
        "ingest", str(SOR_CSV), env=env | {"EVIDENCE_STORE_URL": blocker.as_uri() + "/objects"}
    )
    assert_one_line_error(proc, "object store", "a-file")
    proc = run_cli("ingest", str(SOR_CSV), env=env | {"EVIDENCE_STORE_URL": "ftp://example.org/x"})
    assert_one_line_error(proc, "store_url", "unsupported object store URL")


def test_full_disk(small_mount: Path, tmp_path: Path) -> None:
    env = {"EVIDENCE_DATA_DIR": str(small_mount / "data")}
    [kept] = ingest_json(env, SOR_CSV)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 * 1024 * 1024))
    proc = run_cli("ingest", str(big), env=env)
    assert_one_line_error(proc, "no space left on device")
    listed = json.loads(run_cli("snapshots", "list", "--json", env=env, check=True).stdout)
    assert [s["id"] for s in listed] == [kept["snapshot"]]
    assert run_cli("verify", "--all", env=env).returncode == 0


def test_read_only_data_folder(small_mount: Path) -> None:
    env = {"EVIDENCE_DATA_DIR": str(small_mount / "data")}
    [kept] = ingest_json(env, SOR_CSV)
    subprocess.run(["mount", "-o", "remount,ro", str(small_mount)], check=True)
    proc = run_cli("ingest", str(SOR_CSV), env=env)
    assert_one_line_error(proc, "read-only")
    # An archive on read-only media can still be listed and verified.
    listed = json.loads(run_cli("snapshots", "list", "--json", env=env, check=True).stdout)
    assert [s["id"] for s in listed] == [kept["snapshot"]]
    verified = run_cli("verify", "--all", env=env, check=True)
    assert "custody log not updated" in verified.stderr


# -- configuration -------------------------------------------------------------------------
def test_config_file_and_environment(tmp_path: Path) -> None:
    (tmp_path / "evidence.toml").write_text(
        'data_dir = "from-file"\nstore_url = "s3://127.0.0.1:9000/evidence?secure=false"\n'
        '[s3]\naccess_key = "AKIA-SECRET"\nsecret_key = "very-secret"\n'
        'retention_mode = "COMPLIANCE"\n'
    )
    proc = run_cli(
        "config",
        "show",
        "--json",
        cwd=tmp_path,
        env={"EVIDENCE_DB_URL": "postgresql://u:pw@db/evidence"},
    )
    view = json.loads(proc.stdout)
    assert view["data_dir"] == str(tmp_path / "from-file")
    assert view["db_url"] == "postgresql://u:***@db/evidence"  # the environment wins over the file
    assert view["s3"]["retention_mode"] == "COMPLIANCE"
    assert (
        "AKIA-SECRET" not in proc.stdout
        and "very-secret" not in proc.stdout
        and ":pw@" not in proc.stdout
    )


@pytest.mark.parametrize(
    ("toml", "env", "needles"),
    [
        ("[s3]\nretention_days = 0\n", {}, ("s3.retention_days", "greater than or equal to 1")),
        ("colour = 'blue'\n", {}, ("unknown setting 'colour'",)),
        ("data_dir = [\n", {}, ("evidence.toml", "not valid TOML")),
        ("", {"EVIDENCE_DB_ULR": "sqlite:///x"}, ("unknown environment variable EVIDENCE_DB_ULR",)),
        (
            "",
            {"EVIDENCE_S3__RETENTION_MODE": "FOREVER"},
            ("s3.retention_mode", "EVIDENCE_S3__RETENTION_MODE"),
        ),
    ],
)
def test_invalid_configuration_names_the_key(
    tmp_path: Path, toml: str, env: dict[str, str], needles: tuple[str, ...]
) -> None:
    (tmp_path / "evidence.toml").write_text(toml)
    assert_one_line_error(run_cli("config", "show", cwd=tmp_path, env=env), *needles)


def test_db_upgrade_and_status(env: dict[str, str]) -> None:
    up = json.loads(run_cli("db", "upgrade", "--json", env=env, check=True).stdout)
    from evidence_store.index import Index

    assert up["to"] == Index(env["EVIDENCE_DB_URL"]).head_revision()
    status = json.loads(run_cli("db", "status", "--json", env=env, check=True).stdout)
    assert status["up_to_date"]
