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


def test_a_file_that_is_not_a_spooled_run_is_moved_aside_and_reported(cli, ledger_url: str) -> None:
    directory = spool.spool_dir(ledger_url)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "garbage.json").write_text("{}")
    result = cli("ledger", "flush")
    assert result.exit_code == 1
    assert "rejected garbage.json" in result.output and "not a greenflow spool file" in result.output
    assert not (directory / "garbage.json").exists()
    assert (directory / "rejected" / "garbage.json").read_text() == "{}"
    assert "not a greenflow spool file" in (directory / "rejected" / "garbage.json.reason").read_text()
    assert cli("ledger", "flush").exit_code == 0  # not retried forever


def _console_flush(url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GREENFLOW_LEDGER_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "greenflow.cli", "ledger", "flush"], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        pytest.param("task_id", "t" * 300, "300 characters", id="task-over-its-column"),
        pytest.param("attempt", 99999999999999999999, "attempt=99999999999999999999", id="attempt-over-integer"),
        pytest.param("workflow_id", "bad\x00nul", "NUL", id="nul-in-a-name"),
    ],
)
def test_a_run_the_ledger_can_never_take_is_rejected_once_not_retried_forever(
    ledger_url: str, field: str, value: object, why: str
) -> None:
    # What an older greenflow spooled without checking: no flush could ever write it.
    path = _spooled(ledger_url, "fit")
    data = json.loads(path.read_text())
    data["identity"][field] = value
    path.write_text(json.dumps(data))
    first = _console_flush(ledger_url)
    assert first.returncode == 1, first.stdout + first.stderr
    assert f"rejected {path.name}" in first.stderr and why in first.stderr
    assert "Traceback" not in first.stderr
    rejected = path.parent / "rejected"
    assert json.loads((rejected / path.name).read_text())["identity"][field] == value  # kept for a human
    assert why in (rejected / f"{path.name}.reason").read_text()
    assert spool.pending(path.parent) == []
    again = _console_flush(ledger_url)
    assert again.returncode == 0, again.stderr
    assert Ledger(ledger_url).entries() == []
    assert Ledger(ledger_url).verify().ok


def test_a_transient_failure_keeps_the_file_for_the_next_flush(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    path = _spooled(sqlite_url, "fit")
    ledger = Ledger(sqlite_url)

    def database_down(*_args: object, **_kwargs: object) -> None:
        raise OperationalError("INSERT", {}, ConnectionRefusedError("connection refused"))

    monkeypatch.setattr(ledger, "append", database_down)
    [delivery] = spool.flush(ledger, path.parent).deliveries
    assert delivery.status == "failed" and "connection refused" in (delivery.reason or "")
    assert path.exists() and not (path.parent / "rejected").exists()
    monkeypatch.undo()
    [delivery] = spool.flush(Ledger(sqlite_url), path.parent).deliveries
    assert delivery.status == "written"


@pytest.fixture(autouse=True)
def _no_tdp(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GREENFLOW_CPU_TDP_W", "100")


def test_an_owner_is_alive_only_while_its_very_process_runs() -> None:
    me = spool.this_process()
    assert spool.owner_alive(me)
    assert not spool.owner_alive({**me, "start": "0"})  # the pid reused by another process
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    assert not spool.owner_alive({**me, "pid": int(finished.stdout)})
    assert spool.owner_alive({**me, "host": "another-host"})  # cannot be judged from here: left alone
