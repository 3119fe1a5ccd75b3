"""Connecting to the ledger database and keeping its schema current (Alembic, shipped in the package).

SQLite (the default) runs in WAL mode and takes its write lock at ``BEGIN IMMEDIATE``, so the read of
the chain head or a budget's spend and the write that depends on it cannot interleave with another
process. PostgreSQL gets the same guarantee from row locks (``SELECT … FOR UPDATE``).
"""

from __future__ import annotations

import fcntl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.pool import NullPool

from greenflow.errors import ConfigError, LedgerSchemaOutdated, LedgerUnavailable

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")
READONLY = "greenflow_readonly"
# The (synchronous) drivers of the backends whose locking greenflow relies on (see the module docstring).
SUPPORTED_DRIVERS = ("sqlite", "sqlite+pysqlite", "postgresql+psycopg", "postgresql+psycopg2")
_SQLITE_HEADER = b"SQLite format 3\x00"
# The newest migration in migrations/versions (a test checks it against Alembic's head). Kept as a
# constant so that opening a ledger does not import Alembic (~0.7 s), which every task process does.
SCHEMA_REVISION = "0005"
KNOWN_REVISIONS = ("0001", "0002", "0003", "0004", "0005")


def normalise_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs and pick the psycopg 3 driver for them."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            f"ledger URL {url!r} is not a database URL",
            fix="use e.g. sqlite:///path/ledger.db or postgresql://user@host/db in GREENFLOW_LEDGER_URL",
        ) from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername not in SUPPORTED_DRIVERS:
        raise ConfigError(
            f"ledger URL {safe_url(url)!r} uses {parsed.drivername}, which greenflow does not support",
            fix="use sqlite:///path/ledger.db or postgresql://user@host/db",
        )
    return parsed.render_as_string(hide_password=False)


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite ledger URL, ``None`` for in-memory databases and other backends."""
    parsed = make_url(normalise_url(url))
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser()


def _check_sqlite_file(path: Path) -> None:
    # sqlite3 only finds out that a file is not a database at the first query, deep in a traceback.
    try:
        with open(path, "rb") as handle:
            header = handle.read(len(_SQLITE_HEADER))
    except FileNotFoundError:
        return
    except OSError as error:
        raise ConfigError(f"ledger file {path} cannot be read: {error.strerror}", fix="check its permissions") from None
    if header and header != _SQLITE_HEADER:
        raise ConfigError(
            f"ledger file {path} is not a SQLite database",
            fix="point --ledger / GREENFLOW_LEDGER_URL at a greenflow ledger, or at a new file to create one",
        )


def safe_url(url: str) -> str:
    """The URL with any password masked, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def create_ledger_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for the ledger at ``url`` with the locking behaviour greenflow relies on."""
    url = normalise_url(url)
    parsed = make_url(url)
    try:
        if parsed.get_backend_name() == "sqlite":
            path = sqlite_file(url)
            if path is not None:
                _check_sqlite_file(path)
                path.parent.mkdir(parents=True, exist_ok=True)
            # NullPool: each checkout is a fresh connection, so a forked worker never shares a SQLite handle.
            engine = create_engine(url, poolclass=NullPool, connect_args={"timeout": 60}, **kwargs)
            _sqlite_locking(engine)
            return engine
        kwargs.setdefault("pool_pre_ping", True)
        kwargs.setdefault("pool_size", 5)
        return create_engine(url, **kwargs)
    except (ImportError, NoSuchModuleError) as error:
        raise ConfigError(
            f"ledger URL {safe_url(url)!r} needs a database driver that is not installed ({error})",
            fix="use postgresql:// (psycopg, installed with greenflow) or sqlite:///path/ledger.db",
        ) from None


@contextmanager
def writer_turn(engine: Engine) -> Iterator[None]:
    """Queue SQLite writers on an OS file lock before ``BEGIN IMMEDIATE``.

    SQLite's own busy handler polls with growing sleeps, so under contention a writer can lose the race
    again and again (seconds of tail latency with 16 writers). ``flock`` blocks in the kernel and wakes
    a waiter as soon as the lock is free. PostgreSQL needs none of this: its row locks queue waiters.
    """
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    with open(f"{database}.greenflow-lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _sqlite_locking(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself (pysqlite's implicit transactions defer the lock).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        readonly = connection.get_execution_options().get(READONLY, False)
        connection.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


# Alembic keeps its migration context in module globals: two threads migrating at once (several tasks
# opening a fresh ledger in one process, e.g. triggers) corrupt each other's run (KeyError 'config').
_MIGRATING = threading.RLock()


def alembic_config(engine: Engine | None = None) -> Config:
    """Alembic configuration pointing at the migrations shipped inside the package."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    """The schema revision this version of greenflow expects."""
    return SCHEMA_REVISION


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or ``None`` when it has no greenflow schema yet."""
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table("alembic_version"):
                return None
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one_or_none()
    except OperationalError as exc:
        raise LedgerUnavailable(
            f"cannot connect to the ledger at {safe_url(str(engine.url))}: {_first_line(exc)}",
            fix="check that the database is running and GREENFLOW_LEDGER_URL is right",
        ) from None


def upgrade(engine: Engine, revision: str = "head") -> str:
    """Migrate the ledger's schema to ``revision``; returns the revision reached."""
    from alembic import command

    current_revision(engine)  # connection problems become LedgerUnavailable
    with _MIGRATING:
        command.upgrade(alembic_config(engine), revision)
    reached = current_revision(engine)
    assert reached is not None
    return reached


def check_schema(engine: Engine, *, create_if_empty: bool = True) -> None:
    """Refuse to work on a ledger whose schema is not the one this greenflow expects.

    An empty database is given the schema when ``create_if_empty`` (a fresh install just works); an
    older schema is never migrated implicitly, because other workers may share the database.
    """
    current = current_revision(engine)
    expected = head_revision()
    if current == expected:
        return
    if current is None:
        with _MIGRATING:
            if current_revision(engine) == expected:  # another thread of this process just created it
                return
            with engine.connect() as connection:
                has_tables = bool(inspect(connection).get_table_names())
            if create_if_empty and not has_tables:
                upgrade(engine)
                return
        raise LedgerSchemaOutdated(
            f"the database at {safe_url(str(engine.url))} has no greenflow schema",
            fix="run `greenflow db upgrade` (or point GREENFLOW_LEDGER_URL at an empty database)",
        )
    if current not in KNOWN_REVISIONS:
        raise LedgerSchemaOutdated(
            f"the ledger schema is at revision {current}, which this greenflow does not know (newer?)",
            fix="upgrade greenflow on this machine to the version the other workers run",
        )
    raise LedgerSchemaOutdated(
        f"the ledger schema is at revision {current}, older than this greenflow's {expected}",
        fix="run `greenflow db upgrade`",
    )


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
