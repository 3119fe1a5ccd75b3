"""One ledger per database URL per process, whichever entry point opens it (a worker may host several)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from greenflow.ledger import registry
from greenflow.ledger.registry import cached_ledger, shared_ledger


@pytest.fixture(autouse=True)
def fresh_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(registry, "_ledgers", {})
    yield
    registry.close_all()


def test_the_same_url_is_one_ledger_and_the_default_is_the_configured_url(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GREENFLOW_LEDGER_URL", sqlite_url)
    assert cached_ledger(sqlite_url) is None
    ledger = shared_ledger(sqlite_url)
    assert shared_ledger(sqlite_url) is ledger
    assert shared_ledger() is ledger  # GREENFLOW_LEDGER_URL names the same database
    assert cached_ledger(None) is ledger


@pytest.mark.postgres
def test_plain_postgresql_urls_share_the_psycopg_ledger(postgres_url: str) -> None:
    plain = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    assert shared_ledger(plain) is shared_ledger(postgres_url)


def test_airflow_tasks_the_airflow_ui_and_prefect_share_one_ledger_in_one_process(sqlite_url: str) -> None:
    from greenflow.airflow.plugins.ledger_source import open_source
    from greenflow.airflow.resources import ledger_at as airflow_ledger
    from greenflow.prefect.connections import ledger_at as prefect_ledger

    ledger = airflow_ledger(sqlite_url)
    assert prefect_ledger(sqlite_url) is ledger
    assert open_source(sqlite_url).ledger is ledger
