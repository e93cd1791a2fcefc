"""The SQL index on SQLite and PostgreSQL: migrations, pragmas, types, locking."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import inspect, select, text

from evidence_store.errors import IndexError_
from evidence_store.index import Collection, Index


def test_new_sqlite_file_is_migrated_on_first_use(tmp_path: Path) -> None:
    index = Index(f"sqlite:///{tmp_path / 'new.sqlite'}")
    with index.session() as session:
        assert session.scalars(select(Collection)).all() == []
    assert index.current_revision() == index.head_revision()
    tables = set(inspect(index.engine).get_table_names())
    assert {
        "collections",
        "sources",
        "runs",
        "snapshots",
        "artifacts",
        "custody_events",
        "signing_keys",
    } <= tables


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    index = Index(f"sqlite:///{tmp_path / 'x.sqlite'}")
    index.ensure_schema()
    with index.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL


def test_empty_postgres_database_requires_upgrade(pg_url: str) -> None:
    index = Index(pg_url)
    with index.engine.begin() as conn:  # empty it: the fixture hands out a migrated copy
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    with pytest.raises(IndexError_, match="run `evidence db upgrade`"):
        index.session()
    assert index.upgrade() == index.head_revision()
    with index.session() as session:
        assert session.scalars(select(Collection)).all() == []
    index.dispose()


def test_times_round_trip_as_aware_utc(db_url: str) -> None:
    index = Index(db_url)
    when = datetime(2026, 3, 1, 12, 30, 15, 123000, tzinfo=timezone(timedelta(hours=2)))
    with index.writing("collection:x") as session:
        session.add(Collection(name="x", created_at=when, chain_length=0))
    with index.session() as session:
        stored = session.scalars(select(Collection)).one().created_at
    assert stored == when and stored.tzinfo is not None
    assert stored.utcoffset() == timedelta(0)
    with pytest.raises(IndexError_), index.writing() as session:
        session.add(Collection(name="naive", created_at=datetime(2026, 1, 1), chain_length=0))
    index.dispose()


def test_unique_constraints_are_enforced(db_url: str) -> None:
    index = Index(db_url)
    with index.writing() as session:
        session.add(Collection(name="dup", created_at=datetime.now(UTC), chain_length=0))
    with (
        pytest.raises(IndexError_, match="cannot write to the index database"),
        index.writing() as session,
    ):
        session.add(Collection(name="dup", created_at=datetime.now(UTC), chain_length=0))
    index.dispose()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("nosuchdb://x/y", "unsupported database URL"),
        ("not a url", "invalid database URL"),
        ("postgresql://nobody:secret@127.0.0.1:1/none", "cannot open the index database"),
    ],
)
def test_bad_database_urls_fail_with_one_line(url: str, message: str) -> None:
    with pytest.raises(IndexError_, match=message) as info:
        Index(url).session()
    assert "\n" not in str(info.value)
    assert "secret" not in str(info.value)


def test_sqlite_in_missing_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(IndexError_, match="does not exist"):
        Index(f"sqlite:///{tmp_path / 'missing' / 'index.sqlite'}")


def test_migrations_upgrade_step_by_step(tmp_path: Path) -> None:
    """Each revision applies on top of the one before (what an operator's upgrade does)."""
    from alembic import command

    index = Index(f"sqlite:///{tmp_path / 'steps.sqlite'}", auto_migrate=False)
    config = index._alembic_config()
    with index.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
    assert index.current_revision() == "0001"
    assert "timestamps" not in inspect(index.engine).get_table_names()
    assert index.upgrade() == index.head_revision()
    assert "timestamps" in inspect(index.engine).get_table_names()


def test_the_migrations_build_exactly_the_models(db_url: str) -> None:
    """No drift between the SQLAlchemy models and the Alembic revisions, on both databases:
    a column, index or constraint added to one and not the other fails here."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    import records.models  # noqa: F401  (the records layer's tables are in the index too)
    from evidence_store.index.models import Base

    index = Index(db_url)
    index.upgrade()
    with index.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    index.dispose()
    assert diffs == []
