"""`greenflow budget …`: documented JSON, tables, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from greenflow.ledger import Entry, Identity, Ledger


def test_set_list_and_status_json(cli, ledger_url: str) -> None:  # type: ignore[no-untyped-def]
    assert cli("budget", "set", "gpu", "--limit", "5kg", "--period", "month", "--scope", "tag:gpu").exit_code == 0
    Ledger(ledger_url).append(
        Entry.for_attempt(Identity("cli", "w", "r", "t"), "ran_now", charged_g=1250.0, tags=("gpu",))
    )
    listed = json.loads(cli("budget", "list", "--json").stdout)
    assert listed == [{"name": "gpu", "limit": 5000.0, "unit": "gCO2e", "period": "month", "scope": "tag:gpu"}]
    status = json.loads(cli("budget", "status", "gpu", "--json").stdout)
    assert status["spent"] == 1250.0
    assert status["remaining"] == 3750.0
    assert status["share_spent"] == 0.25
    assert status["exhausted"] is False
    assert {"limit", "spent", "reserved", "remaining", "period_end", "period_start", "unit"} <= set(status)
    table = cli("budget", "status").stdout
    assert "gpu" in table and "25%" in table


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--limit", "5 furlongs"], "limit='5 furlongs' has an unknown unit 'furlongs'"),
        (["--limit", "-1kg"], "must be greater than zero"),
        (["--limit", "0kWh"], "must be greater than zero"),
        (["--limit", "5kg", "--period", "quarter"], "period 'quarter' is unknown"),
        (["--limit", "5kg", "--timezone", "Mars/Olympus"], "time zone 'Mars/Olympus' is unknown"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(cli, args: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    result = cli("budget", "set", "gpu", *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert json.loads(cli("budget", "list", "--json").stdout) == []


def test_status_of_unknown_budget(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("budget", "status", "nope")
    assert result.exit_code == 2
    assert "budget 'nope' does not exist" in result.stderr
    assert "greenflow budget set nope" in result.stderr


def test_overlapping_budgets_stop_the_second_run_naming_the_wide_one(cli, ledger_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Issue 14 item 1: two tag:ml budgets (30 g, 100 g); two 25 g runs naming dag-ml, the first still running."""
    assert cli("budget", "set", "team-ml", "--limit", "30g", "--period", "day", "--scope", "tag:ml").exit_code == 0
    assert cli("budget", "set", "dag-ml", "--limit", "100g", "--period", "day", "--scope", "tag:ml").exit_code == 0
    env = {**os.environ, "GREENFLOW_LEDGER_URL": ledger_url, "GREENFLOW_CPU_TDP_W": "100"}
    ready, done = tmp_path / "ready", tmp_path / "done"
    holds = f"touch {ready}; while [ ! -e {done} ]; do sleep 0.05; done"

    def run(attempt: int, *command: str) -> list[str]:
        return [
            *[sys.executable, "-m", "greenflow.cli", "run", "--task", "t1", "--tag", "ml", "--budget", "dag-ml"],
            *["--attempt", str(attempt), "--estimate", "25g", "--ledger-write", "wait", "--", *command],
        ]

    first = subprocess.Popen(run(1, "sh", "-c", holds), env=env, stderr=subprocess.PIPE, text=True)
    try:
        while not ready.exists():  # the first run holds its reservation and is running
            assert first.poll() is None, first.stderr.read() if first.stderr else ""
            time.sleep(0.05)
        second = subprocess.run(run(2, "true"), env=env, capture_output=True, text=True, timeout=120)
        team = json.loads(cli("budget", "status", "team-ml", "--json").stdout)
    finally:
        done.touch()
        first.wait(timeout=120)
    assert second.returncode == 3, second.stderr  # refused before starting
    assert "budget 'team-ml'" in second.stderr
    assert team["spent"] <= team["limit"] == 30.0
    assert first.returncode == 0
