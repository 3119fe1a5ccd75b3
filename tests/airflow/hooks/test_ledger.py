"""The ledger connection: URLs built from its fields, the password never shown, and lookups by conn id."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from greenflow.airflow.hooks.ledger import GreenflowLedgerHook, ledger_url_from_connection
from greenflow.airflow.ledger_access import ledger_url
from greenflow.errors import ConfigError


def _conn(**fields: Any) -> Any:
    extra = fields.pop("extra", {})
    values = {"conn_id": "gf", "conn_type": "greenflow_ledger", "host": None, "schema": None, "login": None}
    values.update({"password": None, "port": None, **fields})
    return SimpleNamespace(**values, extra_dejson=extra)


def test_postgres_url_from_the_fields_includes_the_password() -> None:
    conn = _conn(host="db.internal", port=5432, schema="greenflow", login="gf", password="s3cret")
    assert ledger_url_from_connection(conn) == "postgresql+psycopg://gf:s3cret@db.internal:5432/greenflow"


def test_the_url_field_wins_and_gets_the_password_added() -> None:
    conn = _conn(password="p@ss", extra={"url": "postgresql+psycopg://gf@db:5433/ledger"})
    assert ledger_url_from_connection(conn) == "postgresql+psycopg://gf:p%40ss@db:5433/ledger"


def test_sqlite_takes_the_file_from_the_database_field(tmp_path: Any) -> None:
    conn = _conn(schema=str(tmp_path / "ledger.db"), extra={"extra__greenflow_ledger__driver": "sqlite"})
    assert ledger_url_from_connection(conn) == f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"conn_type": "postgres"}, "has type 'postgres', not greenflow_ledger"),
        ({"password": "s3cret"}, "names no database host"),
        ({"extra": {"driver": "sqlite"}}, "names no file"),
        ({"password": "s3cret", "extra": {"url": "not a url"}}, "not a SQLAlchemy URL"),
    ],
)
def test_bad_connections_say_what_to_fix_without_the_password(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        ledger_url_from_connection(_conn(**fields))
    assert message in str(error.value)
    assert error.value.fix
    assert "s3cret" not in str(error.value)


def test_a_task_finds_its_ledger_through_an_airflow_connection(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    path = tmp_path / "conn-ledger.db"
    conn = {"conn_type": "greenflow_ledger", "schema": str(path), "extra": {"driver": "sqlite"}}
    monkeypatch.setenv("AIRFLOW_CONN_GF_LEDGER", json.dumps(conn))
    assert ledger_url("gf_ledger") == f"sqlite:///{path}"
    ledger = GreenflowLedgerHook("gf_ledger").get_conn()
    assert ledger.count() == 0 and path.exists()


def test_without_a_connection_the_greenflow_section_then_the_environment_decide(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("GREENFLOW_LEDGER_URL", f"sqlite:///{tmp_path / 'env.db'}")
    assert ledger_url() == f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("AIRFLOW__GREENFLOW__LEDGER_URL", f"sqlite:///{tmp_path / 'cfg.db'}")
    assert ledger_url() == f"sqlite:///{tmp_path / 'cfg.db'}"


def test_a_missing_connection_names_it_and_how_to_create_it() -> None:
    with pytest.raises(ConfigError) as error:
        ledger_url("no_such_ledger")
    assert "'no_such_ledger' is not defined" in str(error.value)
    assert "AIRFLOW_CONN_NO_SUCH_LEDGER" in str(error.value)
