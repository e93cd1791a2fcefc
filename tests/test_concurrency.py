"""Several processes opening one new index at once: real subprocesses, real SQLite/PostgreSQL.

Each worker waits for a start file, so that all of them open the index, check its schema and
archive at the same moment, as four `evidence ingest` started together on an empty data folder.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sqlalchemy import select, text

from evidence_store.index import Collection, Index, SigningKey, Snapshot
from evidence_store.objects import LocalStore
from evidence_store.verify import verify

WORKERS = 4

WORKER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path

    from evidence_store.archive import EvidenceStore, archive
    from evidence_store.index import Index
    from evidence_store.keys import load_signer
    from evidence_store.objects import LocalStore
    from schemas import Capture, CaptureArtifact

    url, root, n, upgrade = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
    while not (root / "go").exists():
        time.sleep(0.001)
    index = Index(url, auto_migrate=True)
    if upgrade:
        index.upgrade()  # `evidence db upgrade`, as PostgreSQL is never migrated implicitly
    evidence = EvidenceStore(
        LocalStore(root / "objects"), index, load_signer(root / "keys", index), f"worker-{n}"
    )
    capture = Capture(
        collection="shared",
        kind="ingest",
        artifacts=[CaptureArtifact(role="original", name=f"{n}.txt", data=f"item {n}".encode())],
    )
    print(archive(evidence, capture).id)
    """
)


def run_together(url: str, root: Path, *, upgrade: bool) -> list[str]:
    """Start the workers, release them at once, and return their snapshot ids."""
    root.mkdir(parents=True, exist_ok=True)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, url, str(root), str(n), "1" if upgrade else "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(WORKERS)
    ]
    time.sleep(1.0)  # let every interpreter start and reach the wait
    (root / "go").touch()
    results = [proc.communicate(timeout=180) for proc in procs]
    failures = [
        f"worker {n} exited {proc.returncode}:\n{err}"
        for n, (proc, (_, err)) in enumerate(zip(procs, results, strict=True))
        if proc.returncode != 0
    ]
    assert not failures, "\n".join(failures)
    return [out.strip() for out, _ in results]


def check_one_chain(index: Index, root: Path, ids: list[str]) -> None:
    with index.session() as session:
        rows = session.execute(select(Snapshot.sequence, Snapshot.id)).all()
        chain = session.scalars(select(Collection)).one()
        keys = session.scalars(select(SigningKey.fingerprint)).all()
    assert sorted(seq for seq, _ in rows) == list(range(1, WORKERS + 1))
    assert {sid for _, sid in rows} == set(ids)
    assert chain.chain_length == WORKERS
    assert len(keys) == 1  # one key made by the first, loaded by the others
    report = verify(LocalStore(root / "objects"), index)
    assert report.ok, report.problems


@pytest.mark.parametrize("round_", range(2))
def test_processes_starting_on_a_new_sqlite_file_all_succeed(tmp_path: Path, round_: int) -> None:
    database = tmp_path / "index.sqlite"
    assert not database.exists()
    url = f"sqlite:///{database}"
    ids = run_together(url, tmp_path / "data", upgrade=False)
    index = Index(url)
    try:
        assert index.current_revision() == index.head_revision()
        check_one_chain(index, tmp_path / "data", ids)
    finally:
        index.dispose()


def test_processes_upgrading_an_empty_postgres_database_all_succeed(
    pg_url: str, tmp_path: Path
) -> None:
    index = Index(pg_url)
    try:
        with index.engine.begin() as conn:  # empty it: the fixture hands out a migrated copy
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        ids = run_together(pg_url, tmp_path / "data", upgrade=True)
        assert index.current_revision() == index.head_revision()
        check_one_chain(index, tmp_path / "data", ids)
    finally:
        index.dispose()


def test_a_busy_sqlite_writer_waits_instead_of_failing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write lock held longer than the busy timeout: BEGIN IMMEDIATE retries, then wins."""
    import evidence_store.index.database as database

    url = f"sqlite:///{tmp_path / 'index.sqlite'}"
    index = Index(url)
    index.ensure_schema()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import sqlite3, sys, time
                db = sqlite3.connect(sys.argv[1], isolation_level=None)
                db.execute("BEGIN IMMEDIATE")
                print("locked", flush=True)
                time.sleep(0.6)
                db.execute("COMMIT")
                """
            ),
            str(tmp_path / "index.sqlite"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        # A busy timeout far shorter than the lock is held: only the retries can succeed.
        monkeypatch.setattr(database, "BUSY_TIMEOUT_MS", 50)
        short = Index(url)
        with short.writing("collection:x") as session:
            session.execute(text("SELECT 1"))
        short.dispose()
    finally:
        holder.wait(timeout=30)
        index.dispose()
    assert holder.returncode == 0
