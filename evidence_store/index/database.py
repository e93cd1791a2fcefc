"""Opening the index database: engines, SQLite pragmas, write locks and schema migrations.

Several processes may open one index at once (four `evidence ingest` started together on an
empty data folder). Checking and migrating the schema is serialised between them: SQLite by an
``flock`` on ``<database>.lock`` beside the file, PostgreSQL by an advisory lock held by the
migration's transaction; the revision is read again once the lock is held, so only the first
process migrates and the others find the schema current. Writers then queue on SQLite's write
lock (``BEGIN IMMEDIATE`` with a busy timeout, retried with back-off should SQLite still answer
"busy") or on PostgreSQL advisory locks.
"""

from __future__ import annotations

import errno
import fcntl
import os
import random
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    NoSuchModuleError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.orm import Session, sessionmaker

from evidence_store.errors import IndexError_

MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATION_LOCK = "schema-migration"  # PostgreSQL advisory lock name (see lock_key)
BUSY_TIMEOUT_MS = 60000
# BEGIN IMMEDIATE attempts when SQLite answers "busy" despite the busy timeout (a lock held
# across it, or WAL recovery by another process); the wait doubles from BUSY_RETRY_DELAY.
BUSY_RETRIES = 6
BUSY_RETRY_DELAY = 0.05


def redact_url(url: str) -> str:
    """The URL with any password hidden, for messages and `config show`."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def _on_read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _sqlite_connect(dbapi_connection: Any, _record: Any, read_only: bool = False) -> None:
    # The driver's own implicit BEGIN is switched off so that _sqlite_begin decides the mode.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    if not read_only:
        cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # FULL: a commit the CLI reported is on disk, also after a power cut.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    # Writers take SQLite's write lock at BEGIN (IMMEDIATE), so that reading a chain head and
    # appending to it cannot interleave with another process doing the same.
    mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


def lock_key(name: str) -> int:
    """A stable 32-bit key for PostgreSQL advisory locks."""
    return zlib.crc32(name.encode())


def _is_busy(exc: OperationalError) -> bool:
    message = str(exc.orig).lower()
    return "database is locked" in message or "database is busy" in message


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (created if missing), held for the block."""
    try:
        fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise IndexError_(f"cannot open the schema lock {path}: {exc.strerror}") from None
        # A folder this user cannot write to: nor can it create or migrate a database there,
        # so there is nothing to serialise; reading an existing one still works.
        fd = None
    if fd is None:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


class Index:
    """The SQL index: one engine, sessions handed out per unit of work (never global)."""

    def __init__(self, url: str, *, auto_migrate: bool = True, echo: bool = False) -> None:
        self.url = url
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise IndexError_(f"invalid database URL {url!r}: {exc}") from None
        self.dialect = parsed.get_backend_name()
        self.read_only = False
        self._lock_path: Path | None = None  # SQLite file: where first-use migration locks
        kwargs: dict[str, Any] = {"echo": echo}
        if self.dialect == "sqlite":
            database = parsed.database or ""
            if database and database != ":memory:":
                folder = Path(database).absolute().parent
                if not folder.is_dir():
                    raise IndexError_(
                        f"cannot open the index database {database}: folder {folder} does not exist"
                    )
                if _on_read_only_fs(folder) and Path(database).exists():
                    # An archive on read-only media can still be listed and verified: SQLite
                    # opens it immutable, without the WAL side files it cannot create there.
                    self.read_only = True
                    parsed = parsed.set(
                        database=f"file:{Path(database).absolute()}?mode=ro&immutable=1",
                        query={"uri": "true"},
                    )
                else:
                    path = Path(database).absolute()
                    self._lock_path = path.with_name(path.name + ".lock")
            kwargs["connect_args"] = {"timeout": BUSY_TIMEOUT_MS / 1000}
        elif self.dialect == "postgresql" and parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
            kwargs["pool_pre_ping"] = True
        try:
            self.engine: Engine = create_engine(parsed, **kwargs)
        except (ArgumentError, NoSuchModuleError, ImportError) as exc:
            raise IndexError_(f"unsupported database URL {redact_url(url)}: {exc}") from None
        if self.dialect == "sqlite":
            read_only = self.read_only
            event.listen(
                self.engine, "connect", lambda conn, rec: _sqlite_connect(conn, rec, read_only)
            )
            event.listen(self.engine, "begin", _sqlite_begin)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._checked = False
        self._schema_lock = threading.Lock()
        self.auto_migrate = auto_migrate

    def describe(self) -> str:
        return redact_url(self.url)

    # -- schema ----------------------------------------------------------------------------
    def _alembic_config(self) -> Any:
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        return config

    def current_revision(self) -> str | None:
        """The schema revision the database is at (None for an empty database)."""
        from alembic.runtime.migration import MigrationContext

        with self._connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def head_revision(self) -> str:
        """The newest schema revision this version of the software knows."""
        from alembic.script import ScriptDirectory

        head = ScriptDirectory.from_config(self._alembic_config()).get_current_head()
        assert head is not None
        return head

    @contextmanager
    def _schema_guard(self) -> Iterator[None]:
        # Between processes: a SQLite file's lock file. PostgreSQL needs nothing here, its
        # migration transaction takes an advisory lock (upgrade).
        if self._lock_path is None:
            yield
            return
        with _file_lock(self._lock_path):
            yield

    def upgrade(self) -> str:
        """Apply every pending migration; returns the revision the database is now at.

        Safe to run from several processes at once: one migrates, the others wait for it and
        then find nothing left to do.
        """
        with self._schema_guard():
            self._upgrade()
        return self.head_revision()

    def _upgrade(self) -> None:
        from alembic import command

        config = self._alembic_config()
        try:
            with self.engine.connect() as conn:
                if self.dialect == "sqlite":
                    # The write lock from the start: a deferred transaction that reads the
                    # version table and then writes could fail "busy" without waiting.
                    conn = conn.execution_options(sqlite_begin="IMMEDIATE")
                with conn.begin():
                    if self.dialect == "postgresql":
                        # Held until this transaction ends; Alembic reads the version table
                        # after it is granted, so a second upgrade finds the schema current.
                        conn.execute(
                            text("SELECT pg_advisory_xact_lock(:k)"),
                            {"k": lock_key(MIGRATION_LOCK)},
                        )
                    config.attributes["connection"] = conn
                    command.upgrade(config, "head")
        except SQLAlchemyError as exc:
            raise IndexError_(self._describe_error("migrate", exc)) from None
        self._checked = True

    def ensure_schema(self) -> None:
        """Check the schema is current; a new, empty SQLite file is migrated (auto_migrate).

        An existing database at an older revision is never migrated behind the operator's back:
        they run `evidence db upgrade` (and take a backup first).
        """
        if self._checked:
            return
        with self._schema_lock:  # threads of one process must not migrate a new file twice
            if self._checked:
                return
            # The first connection to a new SQLite file switches it to WAL, which must not
            # race with another process doing the same: the check runs under the lock too.
            with self._schema_guard():
                self._ensure_schema()

    def _ensure_schema(self) -> None:
        current = self.current_revision()
        head = self.head_revision()
        if current == head:
            self._checked = True
            return
        if current is None and self.auto_migrate and self.dialect == "sqlite":
            self._upgrade()
            return
        if current is None:
            raise IndexError_(
                f"the index database {self.describe()} has no schema: run `evidence db upgrade`"
            )
        raise IndexError_(
            f"the index database {self.describe()} is at schema {current}, this software needs "
            f"{head}: run `evidence db upgrade`"
        )

    # -- sessions --------------------------------------------------------------------------
    @contextmanager
    def _connect(self) -> Iterator[Any]:
        try:
            with self.engine.connect() as conn:
                yield conn
        except DBAPIError as exc:
            if exc.connection_invalidated or isinstance(exc.orig, Exception):
                raise IndexError_(self._describe_error("open", exc)) from None
            raise

    def _describe_error(self, action: str, exc: SQLAlchemyError) -> str:
        orig = getattr(exc, "orig", None) or exc
        first_line = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
        return f"cannot {action} the index database {self.describe()}: {first_line}"

    def session(self) -> Session:
        """A session for reading (and small writes that need no chain lock)."""
        self.ensure_schema()
        return self._sessions()

    @contextmanager
    def writing(self, *lock_names: str) -> Iterator[Session]:
        """A transaction that holds the write locks named, committed on success.

        SQLite: the whole database is locked from BEGIN IMMEDIATE. PostgreSQL: a transaction-scoped
        advisory lock per name (taken in sorted order, so two writers never deadlock).
        """
        self.ensure_schema()
        if self.read_only:
            raise IndexError_(
                f"cannot write to the index database {self.describe()}: read-only file system"
            )
        session = self._sessions()
        try:
            if self.dialect == "sqlite":
                self._begin_immediate(session)
            elif self.dialect == "postgresql":
                for name in sorted(set(lock_names)):
                    session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_key(name)})
            yield session
            session.commit()
        except SQLAlchemyError as exc:
            session.rollback()
            raise IndexError_(self._describe_error("write to", exc)) from None
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def _begin_immediate(self, session: Session) -> None:
        # The busy timeout makes BEGIN IMMEDIATE wait for the writer ahead; should SQLite still
        # answer "busy", nothing has happened yet, so beginning again is safe.
        delay = BUSY_RETRY_DELAY
        for attempt in range(BUSY_RETRIES):
            try:
                session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
                return
            except OperationalError as exc:
                if not _is_busy(exc) or attempt == BUSY_RETRIES - 1:
                    raise
                session.rollback()
                time.sleep(delay * (1 + random.random()))  # jitter: waiters do not collide
                delay *= 2

    def dispose(self) -> None:
        self.engine.dispose()
