"""docker-compose.yml: valid for Compose, and the fleet it describes is the one the docs promise.

No Docker engine runs here; `docker compose config` (or `docker-compose config`, which `make test`
installs) parses, validates and resolves the file, which is what this test checks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _compose_command() -> list[str]:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.fail("neither `docker compose` nor `docker-compose` is installed: run `make test`, which installs it")


def _words(command: str | list[str]) -> str:
    # Compose v2 resolves a command to a list, v1 keeps the string.
    return command if isinstance(command, str) else " ".join(command)


@pytest.fixture(scope="module")
def resolved() -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENFLOW_")}
    result = subprocess.run(
        [*_compose_command(), "-f", str(ROOT / "docker-compose.yml"), "config"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


def test_airflow_runs_celery_with_one_gpu_worker_per_region_queue(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"):
        assert services[name]["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    queues = {name: _words(svc["command"]) for name, svc in services.items() if name.startswith("airflow-worker-")}
    assert queues == {
        "airflow-worker-gb": "celery worker --queues gb",
        "airflow-worker-no": "celery worker --queues no",
    }
    for name in queues:
        devices = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["capabilities"] == ["gpu"]
    assert services["airflow-worker-gb"]["environment"]["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis")


def test_one_postgres_server_holds_airflow_metadata_and_the_ledger_in_separate_databases(
    resolved: dict[str, Any],
) -> None:
    env = resolved["services"]["airflow-scheduler"]["environment"]
    metadata, ledger = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], env["GREENFLOW_LEDGER_URL"]
    assert metadata.rsplit("/", 1)[1] == "airflow"
    assert ledger.rsplit("/", 1)[1] == "greenflow"
    assert env["AIRFLOW__GREENFLOW__LEDGER_URL"] == ledger
    init_sql = (ROOT / "docker" / "postgres-init.sql").read_text()
    assert "CREATE DATABASE airflow" in init_sql and "CREATE DATABASE greenflow" in init_sql


def test_prefect_server_and_a_process_worker_per_region_pool_share_the_ledger(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    assert "prefect server start" in _words(services["prefect-server"]["command"])
    for region, pool in (("gb", "gb-pool"), ("no", "no-pool")):
        worker = services[f"prefect-worker-{region}"]
        assert f"prefect worker start --pool {pool}" in _words(worker["command"])
        assert worker["environment"]["PREFECT_API_URL"] == "http://prefect-server:4200/api"
        assert worker["environment"]["GREENFLOW_LEDGER_URL"].endswith("/greenflow")


def test_examples_are_mounted_and_no_secret_is_written_in_the_file(resolved: dict[str, Any]) -> None:
    mounts = [str(v) for v in resolved["services"]["airflow-scheduler"]["volumes"]]
    assert any("dags" in m and "/opt/airflow/dags" in m for m in mounts)
    env = resolved["services"]["airflow-worker-gb"]["environment"]
    assert env["GREENFLOW_ELECTRICITYMAPS_TOKEN"] == ""  # from .env at run time, never in the file
    example = (ROOT / ".env.example").read_text()
    assert "GREENFLOW_ELECTRICITYMAPS_TOKEN=" in example and "GREENFLOW_WATTTIME_PASSWORD=" in example
