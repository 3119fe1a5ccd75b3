"""Connecting, migrating and refusing a ledger whose schema does not match."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text

from greenflow.errors import ConfigError, LedgerSchemaOutdated, LedgerUnavailable
from greenflow.ledger import Ledger
from greenflow.ledger.database import KNOWN_REVISIONS, SCHEMA_REVISION, alembic_config, create_ledger_engine, upgrade


def test_schema_revision_constant_matches_the_shipped_migrations() -> None:
    scripts = ScriptDirectory.from_config(alembic_config())
    assert scripts.get_current_head() == SCHEMA_REVISION
    assert set(KNOWN_REVISIONS) == {s.revision for s in scripts.walk_revisions()}


def test_upgrade_from_empty_then_again_is_a_no_op(ledger_url: str) -> None:
    engine = create_ledger_engine(ledger_url)
    assert upgrade(engine) == SCHEMA_REVISION
    assert upgrade(engine) == SCHEMA_REVISION
    engine.dispose()


def test_sqlite_ledger_runs_in_wal_mode(sqlite_url: str) -> None:
    ledger = Ledger(sqlite_url)
    with ledger.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_older_schema_is_refused_until_db_upgrade(ledger_url: str) -> None:
    older = KNOWN_REVISIONS[-2]
    engine = create_ledger_engine(ledger_url)
    upgrade(engine, older)  # a ledger another, older greenflow created
    with pytest.raises(
        LedgerSchemaOutdated, match=rf"at revision {older}, older than this greenflow's .*greenflow db upgrade"
    ):
        Ledger(ledger_url)
    assert upgrade(engine) == SCHEMA_REVISION
    Ledger(ledger_url).close()
    engine.dispose()


def test_unknown_newer_schema_is_refused(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    with ledger.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(LedgerSchemaOutdated, match="revision 9999, which this greenflow does not know"):
        Ledger(ledger_url)


def test_foreign_database_is_not_taken_over(sqlite_url: str) -> None:
    engine = create_ledger_engine(sqlite_url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE somebody_elses (id INTEGER)"))
    with pytest.raises(LedgerSchemaOutdated, match="has no greenflow schema"):
        Ledger(sqlite_url)


def test_unreachable_database_names_the_url_without_password() -> None:
    url = "postgresql://greenflow:s3cret@127.0.0.1:1/ledger"
    with pytest.raises(LedgerUnavailable) as caught:
        Ledger(url)
    assert "127.0.0.1:1" in str(caught.value)
    assert "s3cret" not in str(caught.value)
    assert "GREENFLOW_LEDGER_URL" in str(caught.value)


def test_garbage_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not a database URL"):
        Ledger("not a url at all")


def test_threads_opening_a_fresh_ledger_at_once_all_get_it(tmp_path: Path) -> None:
    """Several tasks of one process (e.g. triggers) opening a new ledger together: one creates it, all use it."""
    from concurrent.futures import ThreadPoolExecutor

    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    barrier = threading.Barrier(8)

    def open_and_count(_: int) -> int:
        barrier.wait()
        return len(Ledger(url).entries())

    with ThreadPoolExecutor(max_workers=8) as pool:
        counts = list(pool.map(open_and_count, range(8)))
    assert counts == [0] * 8
    assert Ledger(url).verify().ok
