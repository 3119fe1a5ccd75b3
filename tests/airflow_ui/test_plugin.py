"""The plugin as Airflow loads it: entry point, nav entry and task-instance tab, base_url, the ledger it reads."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import entry_points
from typing import Any

import pytest

from greenflow.airflow.plugins import ledger_plugin, ledger_source


def test_the_entry_point_names_the_plugin_class() -> None:
    (point,) = [p for p in entry_points(group="airflow.plugins") if p.name == "greenflow"]
    assert point.load() is ledger_plugin.GreenflowLedgerPlugin


def test_airflow_loads_it_with_its_app_and_views() -> None:
    from airflow.plugins_manager import get_fastapi_plugins, is_valid_plugin

    assert is_valid_plugin(ledger_plugin.GreenflowLedgerPlugin)
    apps, _middlewares = get_fastapi_plugins()
    (mine,) = [a for a in apps if a["url_prefix"] == "/greenflow"]
    from fastapi import FastAPI

    assert isinstance(mine["app"], FastAPI)


def test_nav_entry_and_task_instance_tab(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://localhost:8080")
    nav, tab = ledger_plugin.GreenflowLedgerPlugin().external_views
    assert nav["name"] == "Carbon Ledger" and nav["destination"] == "nav" and nav["url_route"] == "carbon-ledger"
    assert nav["href"] == "/greenflow/ledger"
    assert tab["destination"] == "task_instance" and tab["url_route"]
    assert tab["href"] == ("/greenflow/task?dag_id={DAG_ID}&run_id={RUN_ID}&task_id={TASK_ID}&map_index={MAP_INDEX}")


def test_hrefs_follow_a_base_url_sub_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://example.com/airflow/")
    nav, tab = ledger_plugin.GreenflowLedgerPlugin().external_views
    assert nav["href"] == "/airflow/greenflow/ledger"
    assert tab["href"].startswith("/airflow/greenflow/task?") and nav["icon"] == "/airflow/greenflow/static/leaf.svg"


def test_the_operator_link_lands_on_the_ledger_page(make_client: Any, seeded_sqlite: Any) -> None:
    from urllib.parse import urlsplit

    from greenflow.airflow.links.ledger import ledger_url_for

    link = ledger_url_for("http://airflow.test:8080", "train_llm", "manual__2026-01-02T08:00:00+00:00", "train")
    parts = urlsplit(link)
    html = make_client(seeded_sqlite.url).get(f"{parts.path}?{parts.query}").text
    assert 'id="task-detail"' in html and "attempt 2 · deferred" in html


def test_importing_the_plugin_does_not_import_fastapi() -> None:
    # Airflow imports every plugin in every task process: the app must be built only when asked for.
    code = (
        "import sys, airflow.sdk, greenflow.airflow.plugins.ledger_plugin as p; "
        "p.GreenflowLedgerPlugin(); print('fastapi' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy(), timeout=120
    )
    assert result.stdout.strip().splitlines()[-1] == "False", result.stderr[-2000:]


def test_the_ledger_comes_from_greenflow_config_then_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW__GREENFLOW__LEDGER_CONN_ID", raising=False)
    monkeypatch.setenv("GREENFLOW_LEDGER_URL", "sqlite:////tmp/from-env.db")
    monkeypatch.delenv("AIRFLOW__GREENFLOW__LEDGER_URL", raising=False)
    assert ledger_source.configured_url() == "sqlite:////tmp/from-env.db"
    monkeypatch.setenv("AIRFLOW__GREENFLOW__LEDGER_URL", "postgresql://gf@db/ledger")
    assert ledger_source.configured_url() == "postgresql+psycopg://gf@db/ledger"


def test_a_ledger_connection_takes_precedence_like_for_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__GREENFLOW__LEDGER_URL", "sqlite:////tmp/not-this.db")
    monkeypatch.setenv("AIRFLOW__GREENFLOW__LEDGER_CONN_ID", "gf_ui_test")
    monkeypatch.setenv(
        "AIRFLOW_CONN_GF_UI_TEST",
        '{"conn_type": "greenflow_ledger", "host": "db.internal", "login": "gf", "password": "pw", "schema": "ledger"}',
    )
    url = ledger_source.configured_url()
    assert url == "postgresql+psycopg://gf:pw@db.internal/ledger"
    monkeypatch.setenv("AIRFLOW__GREENFLOW__LEDGER_CONN_ID", "gf_ui_missing")
    with pytest.raises(Exception, match="names connection 'gf_ui_missing', which does not exist"):
        ledger_source.configured_url()
