"""End to end with the real scheduler, triggerer, DAG processor and API server (``airflow standalone``).

A DAG is triggered through the REST API v2; its carbon-aware task is seen ``deferred`` (held by the real
triggerer, no worker slot) and then ``success``; its ledger entry is written and its extra link resolves.
The task plans on a real-time trace written by the test, whose green window opens ~45 s after the trigger.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from greenflow.airflow.links.ledger import ledger_url_for
from greenflow.ledger import Ledger

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("airflow-e2e")]
E2E_DAG = Path(__file__).resolve().parent / "e2e_dags" / "greenflow_e2e_deferral.py"
DAG_ID = "greenflow_e2e_deferral"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_trace(path: Path, green_from: datetime | None) -> None:
    """10-second slots at 400 gCO2e/kWh around now; 50 for one minute from ``green_from``."""
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(minutes=5, seconds=now.second % 10)  # slots on :00, :10, ...
    lines = ["timestamp,gco2_per_kwh"]
    for i in range(6 * 60 * 3):
        moment = start + timedelta(seconds=10 * i)
        green = green_from is not None and green_from <= moment < green_from + timedelta(minutes=1)
        lines.append(f"{moment.strftime('%Y-%m-%dT%H:%M:%SZ')},{50 if green else 400}")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def standalone(tmp_path: Path) -> Iterator[dict[str, Any]]:
    home = tmp_path / "airflow"
    (home / "dags").mkdir(parents=True)
    shutil.copy(E2E_DAG, home / "dags")
    trace, ledger_db, port = tmp_path / "trace.csv", tmp_path / "ledger.db", _free_port()
    _write_trace(trace, None)  # the DAG file needs the trace to exist when it is parsed
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "GREENFLOW_LEDGER_URL": f"sqlite:///{ledger_db}",
            "GREENFLOW_E2E_TRACE": str(trace),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
    )
    log = (tmp_path / "standalone.log").open("w")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "airflow"), "standalone"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if process.poll() is not None:
                pytest.fail(f"airflow standalone exited: {(tmp_path / 'standalone.log').read_text()[-3000:]}")
            try:
                health = requests.get(f"{base}/api/v2/monitor/health", timeout=5).json()
                if all(
                    health.get(c, {}).get("status") == "healthy" for c in ("scheduler", "triggerer", "dag_processor")
                ):
                    break
            except (requests.RequestException, ValueError):
                pass
            if time.monotonic() > deadline:
                pytest.fail("airflow standalone was not healthy within 300 s")
            time.sleep(2)
        password = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
        token = requests.post(f"{base}/auth/token", json={"username": "admin", "password": password}, timeout=30)
        token.raise_for_status()
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        yield {"base": base, "session": session, "trace": trace, "ledger": f"sqlite:///{ledger_db}"}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        log.close()


def test_deferred_then_success_with_ledger_entry_and_extra_link(standalone: dict[str, Any]) -> None:
    base, session = standalone["base"], standalone["session"]
    deadline = time.monotonic() + 120
    while session.get(f"{base}/api/v2/dags/{DAG_ID}", timeout=30).status_code != 200:
        assert time.monotonic() < deadline, "the DAG processor never registered the DAG"
        time.sleep(2)

    green_from = (datetime.now(UTC) + timedelta(seconds=45)).replace(microsecond=0)
    green_from += timedelta(seconds=10 - green_from.second % 10)  # on a slot boundary
    _write_trace(standalone["trace"], green_from)
    created = session.post(f"{base}/api/v2/dags/{DAG_ID}/dagRuns", json={"logical_date": None}, timeout=30)
    assert created.status_code == 200, created.text
    run_id = created.json()["dag_run_id"]

    seen: list[str] = []
    ti_url = f"{base}/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/train"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        state = session.get(ti_url, timeout=30).json().get("state")
        if state and (not seen or seen[-1] != state):
            seen.append(state)
        if state in ("success", "failed", "upstream_failed"):
            break
        time.sleep(1)
    assert "deferred" in seen and seen[-1] == "success", seen

    [entry] = Ledger(standalone["ledger"]).entries()
    assert (entry.orchestrator, entry.workflow_id, entry.run_id, entry.task_id) == ("airflow", DAG_ID, run_id, "train")
    assert entry.decision == "deferred"
    assert entry.planned_start == green_from
    assert entry.actual_start is not None and entry.actual_start >= green_from
    assert entry.deferred_seconds is not None and entry.deferred_seconds > 10

    links = session.get(f"{ti_url}/links", timeout=30).json()["extra_links"]
    assert links["Carbon ledger"] == ledger_url_for(base, DAG_ID, run_id, "train")
    page = session.get(links["Carbon ledger"], timeout=60)  # served by greenflow's UI plugin
    assert page.status_code == 200, page.text[:500]
    assert entry.entry_id in page.text or entry.entry_id[:8] in page.text
    xcom = session.get(f"{ti_url}/xcomEntries/greenflow_entry_id", timeout=30)
    assert xcom.status_code == 200, xcom.text
    assert entry.entry_id in json.dumps(xcom.json())
