"""The provider as Airflow discovers it: entry point, classes that import, connection forms, config, decorator."""

from __future__ import annotations

import importlib
import subprocess
import sys
from importlib.metadata import entry_points

import pytest

from greenflow import distribution_name
from greenflow.airflow.get_provider_info import get_provider_info


def _import(dotted: str) -> object:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def test_the_entry_point_names_the_distribution() -> None:
    [entry] = [e for e in entry_points(group="apache_airflow_provider") if e.value.startswith("greenflow.")]
    info = entry.load()()
    # Airflow refuses a provider whose package-name is not the distribution declaring the entry point.
    assert entry.dist is not None
    assert info["package-name"] == entry.dist.metadata["Name"] == distribution_name()


def test_every_module_and_class_it_names_imports() -> None:
    info = get_provider_info()
    modules = [
        m
        for key in ("operators", "sensors", "hooks", "triggers")
        for group in info[key]
        for m in group["python-modules"]
    ]
    for module in modules:
        importlib.import_module(module)
    for dotted in info["extra-links"] + [d["class-name"] for d in info["task-decorators"]]:
        assert callable(_import(dotted))
    for conn in info["connection-types"]:
        hook = _import(conn["hook-class-name"])
        assert hook.conn_type == conn["connection-type"]  # type: ignore[attr-defined]


def test_airflow_validates_the_info_against_its_schema() -> None:
    import json
    from pathlib import Path

    import airflow
    import jsonschema

    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_providers_manager_registers_connections_decorator_and_config() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert distribution_name() in manager.providers
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    assert "carbon_aware" in ProvidersManagerTaskRuntime().taskflow_decorators
    behaviours = manager.field_behaviours
    assert behaviours["greenflow_electricitymaps"]["relabeling"]["password"] == "API token"
    assert "password" in behaviours["greenflow_ukgrid"]["hidden_fields"]
    widgets = manager.connection_form_widgets
    assert "extra__greenflow_ledger__url" in widgets
    assert widgets["extra__greenflow_carbon_aware_sdk__window_minutes"].field["schema"]["type"] == ["integer", "null"]
    options = dict(manager.provider_configs)[distribution_name()]["greenflow"]["options"]
    assert {"ledger_url", "ledger_conn_id", "on_budget_exceeded", "refresh_interval"} <= set(options)


def test_task_carbon_aware_is_available_on_airflow_sdk_task() -> None:
    from airflow.sdk import task

    from greenflow.airflow.decorators.carbon_aware import CarbonAwareDecoratedOperator

    decorator = task.carbon_aware(region="GB", provider="ukgrid", expected_duration="1h")

    def infer() -> int:
        return 1

    assert decorator(infer).operator_class is CarbonAwareDecoratedOperator


@pytest.mark.parametrize("command", [["providers", "list"]])
def test_airflow_providers_list_shows_greenflow(command: list[str]) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "airflow", *command], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    assert any(line.startswith(f"{distribution_name()} ") for line in out.splitlines())
