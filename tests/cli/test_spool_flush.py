"""Spooled runs: a launcher that died after measuring loses nothing; `greenflow ledger flush` writes it once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from greenflow import spool
from greenflow.clock import utcnow
from greenflow.ledger import Ledger
from greenflow.metering.meter import Meter
from greenflow.spec import CarbonSpec


def _spooled(url: str, task: str, *, token: str | None = None) -> Path:
    """What a launcher killed after measuring leaves behind: a spool file nobody wrote yet."""
    options = {"token": token} if token else {}
    spec = CarbonSpec.build(provider="electricitymaps", provider_options=options, max_delay="0s", tags=["nightly"])
    requested = utcnow()
    with Meter(environ={"GREENFLOW_CPU_TDP_W": "100"}) as meter:
        meter.begin_window(task)
        busy_until = time.monotonic() + 0.3
        while time.monotonic() < busy_until:  # CPU time, so the TDP estimate has something to count
            sum(range(1000))
        measurement = meter.end_window(task)
    run = spool.SpooledRun(
        identity={"orchestrator": "cli", "workflow_id": "nightly", "run_id": "r1", "task_id": task, "attempt": 1},
        spec=spec.to_kwargs(),
        requested_at=requested,
        started=measurement.start,
        measurement=measurement.to_dict(),
        outcome="failed",
        error="CommandFailed: command exited with code 4",
    )
    return spool.spool(run, spool.spool_dir(url))


def test_flush_writes_a_left_over_run_once(cli, ledger_url: str) -> None:
    path = _spooled(ledger_url, "fit")
    result = cli("ledger", "flush", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["written"] == 1
    assert not path.exists()
    [entry] = Ledger(ledger_url).entries()
    assert (entry.workflow_id, entry.task_id, entry.decision) == ("nightly", "fit", "failed")
    assert entry.error == "CommandFailed: command exited with code 4"
    assert entry.energy_cpu_kwh is not None and entry.energy_cpu_kwh > 0
    assert list(entry.tags) == ["nightly"]
    assert json.loads(cli("ledger", "flush", "--json").output)["written"] == 0
    assert len(Ledger(ledger_url).entries()) == 1


def test_concurrent_writers_record_a_run_once(sqlite_url: str) -> None:
    _spooled(sqlite_url, "fit")
    ledger = Ledger(sqlite_url)
    reports: list[spool.FlushReport] = []
    threads = [
        threading.Thread(target=lambda: reports.append(spool.flush(ledger, spool.spool_dir(sqlite_url))))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sum(r.count("written") for r in reports) == 1
    assert len(ledger.entries()) == 1


def test_the_next_run_writes_what_an_earlier_one_left(sqlite_url: str) -> None:
    _spooled(sqlite_url, "left-over")
    env = {**os.environ, "GREENFLOW_LEDGER_URL": sqlite_url}
    done = subprocess.run(
        [sys.executable, "-m", "greenflow.cli", "run", "-q", "--task", "next", "--", "true"], env=env, timeout=120
    )
    assert done.returncode == 0
    give_up = time.monotonic() + 90
    while len(Ledger(sqlite_url).entries()) < 2 and time.monotonic() < give_up:
        time.sleep(0.2)
    assert sorted(e.task_id for e in Ledger(sqlite_url).entries()) == ["left-over", "next"]
    assert spool.pending(spool.spool_dir(sqlite_url)) == []


def test_a_spool_file_holds_no_credentials(tmp_path: Path) -> None:
    url = "postgresql://greenflow:s3cret-pw@db.example/ledger"
    path = _spooled(url, "fit", token="tok-123456")
    text = path.read_text()
    assert "tok-123456" not in text and "s3cret-pw" not in text
    assert path.parent.name not in url  # directories are named by a hash of the URL


def test_a_file_that_is_not_a_spooled_run_is_kept_and_reported(cli, ledger_url: str) -> None:
    directory = spool.spool_dir(ledger_url)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "garbage.json").write_text("{}")
    result = cli("ledger", "flush")
    assert result.exit_code == 1
    assert "garbage.json" in result.output and "not a greenflow spool file" in result.output
    assert (directory / "garbage.json").exists()


@pytest.fixture(autouse=True)
def _no_tdp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREENFLOW_CPU_TDP_W", "100")
