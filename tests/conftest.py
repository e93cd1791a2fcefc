"""Shared fixtures: real stores, real databases, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evidence_store.archive import EvidenceStore
from evidence_store.objects import LocalStore, ObjectStore
from fixtures.tsa import LocalTSA

STORE_KINDS = ["local", "s3"]


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    """Every object store the project supports; the same tests run against each.

    ``s3`` runs against moto's standalone server on 127.0.0.1 (started once per session),
    and against MinIO instead when MINIO_ENDPOINT, MINIO_ACCESS_KEY and MINIO_SECRET_KEY are set.
    """
    if request.param == "local":
        yield LocalStore(tmp_path / "objects")
        return
    request.applymarker(pytest.mark.s3)
    from tests.s3support import make_s3_store

    s3 = make_s3_store(request)
    try:
        yield s3
    finally:
        s3.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Parametrised ids mark the S3 and PostgreSQL variants so `-m "not s3"` works as expected.
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None:
            continue
        if callspec.params.get("store") == "s3":
            item.add_marker(pytest.mark.s3)
        if callspec.params.get("db_url") == "postgresql":
            item.add_marker(pytest.mark.postgres)


@pytest.fixture
def small_mount(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (root only): a real full disk and a real read-only file system."""
    mount = tmp_path / "mnt"
    mount.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True
        ).returncode
    ):
        pytest.skip("needs root to mount a small tmpfs")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "evidence-data"
    path.mkdir()
    return path


def minio_env() -> dict[str, str] | None:
    """The MinIO server named by the environment, if any."""
    keys = ("MINIO_ENDPOINT", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY")
    if all(os.environ.get(k) for k in keys):
        return {k: os.environ[k] for k in keys}
    return None


# -- databases -----------------------------------------------------------------------------
PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DB_KINDS = ["sqlite", "postgresql"]


def _pg_admin() -> Any:
    import psycopg

    try:
        return psycopg.connect(
            PG_ADMIN_URL.replace("postgresql+psycopg", "postgresql"),
            autocommit=True,
            connect_timeout=5,
        )
    except psycopg.OperationalError as exc:
        if os.environ.get("CI"):
            raise  # CI must test PostgreSQL: a missing server is a failure, not a skip
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}")


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated template database; each test gets a fast copy of it."""
    import uuid

    from evidence_store.index import Index

    admin = _pg_admin()
    name = f"evidence_tpl_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    index = Index(f"{base}/{name}")
    index.upgrade()
    index.dispose()
    try:
        yield name
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for one test."""
    import uuid

    template = request.getfixturevalue("pg_template")
    admin = _pg_admin()
    name = f"evidence_test_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(params=DB_KINDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every index database the project supports: SQLite file and PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'index.sqlite'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def evidence(db_url: str, tmp_path: Path) -> Iterator[EvidenceStore]:
    """A complete evidence store: local objects, the parametrised index, a fresh key."""
    from evidence_store.index import Index
    from evidence_store.signing import Signer

    index = Index(db_url)
    ev = EvidenceStore(
        objects=LocalStore(tmp_path / "objects"),
        index=index,
        signer=Signer.load_or_create(tmp_path / "keys"),
        actor="pytest",
    )
    try:
        yield ev
    finally:
        index.dispose()


# -- the CLI as a user runs it -------------------------------------------------------------
def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run `evidence ARGS` in a subprocess with only the given EVIDENCE_* settings."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("EVIDENCE_")}
    full_env.update(env or {})
    full_env["COLUMNS"] = "200"
    proc = subprocess.run(
        [sys.executable, "-m", "jobs.cli", *args],
        env=full_env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"evidence {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


@pytest.fixture(scope="module")
def tsa() -> Iterator[LocalTSA]:
    """The local test TSA (fixtures/tsa), one per test module."""
    with LocalTSA() as running:
        yield running


@pytest.fixture
def tsa_env(tsa: LocalTSA, tmp_path: Path, db_url: str) -> dict[str, str]:
    """EVIDENCE_* settings for a fresh archive that timestamps with the local TSA."""
    ca = tmp_path / "tsa-ca.pem"
    ca.write_bytes(tsa.ca_pem)
    return {
        "EVIDENCE_DATA_DIR": str(tmp_path / "data"),
        "EVIDENCE_DB_URL": db_url,
        "EVIDENCE_TIMESTAMPS__TSA_URLS": json.dumps([tsa.url]),
        "EVIDENCE_TIMESTAMPS__TRUST_ANCHORS": json.dumps([str(ca)]),
        "EVIDENCE_TIMESTAMPS__TIMEOUT": "3",
    }
