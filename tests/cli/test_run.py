"""`greenflow run -- CMD`: exit codes, identity, budget refusal, signals, deferral (real processes).

Runs with nothing to plan or reserve may write their entry just after greenflow exits (see
greenflow.cli.fast_run): tests read those through :func:`_entries`, which flushes the spool first, as
`greenflow ledger flush` does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from greenflow import spool
from greenflow.ledger import Budget, Entry, Ledger

GREENFLOW = [sys.executable, "-m", "greenflow.cli"]


def _run(url: str, *args: str, env: dict[str, str] | None = None, **kwargs: object) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "GREENFLOW_LEDGER_URL": url, "GREENFLOW_CPU_TDP_W": "100", **(env or {})}
    return subprocess.run(
        [*GREENFLOW, "run", *args], env=full_env, capture_output=True, text=True, timeout=120, **kwargs
    )  # type: ignore[call-overload]


def _entries(url: str) -> list[Entry]:
    """The ledger's entries once every spooled run is written (waits for a detached writer at work)."""
    ledger = Ledger(url)
    report = spool.flush(ledger, spool.spool_dir(url))
    assert report.count("failed") == report.count("busy") == 0, report
    return ledger.entries()


def test_exit_code_passes_through_and_each_run_is_one_entry(sqlite_url: str) -> None:
    ok = _run(sqlite_url, "--task", "ok", "--", sys.executable, "-c", "print('trained')")
    assert ok.returncode == 0
    assert "trained" in ok.stdout
    failed = _run(sqlite_url, "--task", "bad", "--", sys.executable, "-c", "import sys; sys.exit(4)")
    assert failed.returncode == 4
    entries = {e.task_id: e for e in _entries(sqlite_url)}
    assert entries["ok"].decision == "ran_now"
    assert entries["bad"].decision == "failed"
    assert entries["bad"].error == "CommandFailed: command exited with code 4"
    assert entries["ok"].method_cpu == "estimate"  # no RAPL here: a labelled estimate, never a silent 0
    assert entries["ok"].energy_gpu_kwh is None and "gpu" in entries["ok"].measurement_notes


def test_identity_comes_from_the_airflow_task_context(sqlite_url: str) -> None:
    env = {
        "AIRFLOW_CTX_DAG_ID": "train_llm",
        "AIRFLOW_CTX_DAG_RUN_ID": "manual__1",
        "AIRFLOW_CTX_TASK_ID": "fit",
        "AIRFLOW_CTX_TRY_NUMBER": "2",
    }
    assert _run(sqlite_url, "--", "true", env=env).returncode == 0
    [entry] = _entries(sqlite_url)
    assert (entry.orchestrator, entry.workflow_id, entry.run_id, entry.task_id, entry.attempt) == (
        "airflow",
        "train_llm",
        "manual__1",
        "fit",
        2,
    )


def test_a_budget_that_cannot_cover_the_estimate_stops_the_command_before_it_starts(
    sqlite_url: str, tmp_path: Path
) -> None:
    Ledger(sqlite_url).budgets.set(Budget.parse("tiny", "1g", "day"))
    marker = tmp_path / "started"
    result = _run(sqlite_url, "--budget", "tiny", "--estimate", "5g", "--", "touch", str(marker))
    assert result.returncode == 3
    assert not marker.exists()
    assert "budget 'tiny' cannot cover 5 g" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    [entry] = Ledger(sqlite_url).entries()
    assert entry.decision == "skipped_budget"


_PATHS = [pytest.param([], id="fast-path"), pytest.param(["--budget", "big", "--estimate", "1g"], id="full-path")]


def _child_script(pid_file: Path, body: str) -> str:
    """A command that says it started (its pid, written atomically to ``pid_file``), then runs ``body``."""
    return (
        "import os, pathlib, time\n"
        f"ready = pathlib.Path({str(pid_file)!r})\n"
        "ready.with_suffix('.tmp').write_text(str(os.getpid()))\n"
        "ready.with_suffix('.tmp').replace(ready)\n"
        f"{body}\n"
    )


def _wait_for_pid(pid_file: Path, process: subprocess.Popen[str], timeout: float = 120.0) -> int:
    """The command's pid, once it has started (the readiness signal; fails if greenflow exits first)."""
    give_up = time.monotonic() + timeout
    while not pid_file.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < give_up, "the command never started"
        time.sleep(0.05)
    return int(pid_file.read_text())


def _ended(pid: int, timeout: float = 60.0) -> bool:
    """Whether process ``pid`` ends (or is a zombie: dead, not reaped) within ``timeout`` seconds."""
    give_up = time.monotonic() + timeout
    while time.monotonic() < give_up:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("path_args", _PATHS)
def test_sigterm_is_forwarded_and_recorded_as_interrupted_with_the_energy_used(
    sqlite_url: str, tmp_path: Path, path_args: list[str]
) -> None:
    Ledger(sqlite_url).budgets.set(Budget.parse("big", "1kg", "day"))
    env = {**os.environ, "GREENFLOW_LEDGER_URL": sqlite_url, "GREENFLOW_CPU_TDP_W": "100"}
    pid_file = tmp_path / "child.pid"
    script = _child_script(pid_file, "while True: sum(range(10000))")
    process = subprocess.Popen(
        [*GREENFLOW, "run", "--task", "long", *path_args, "--", sys.executable, "-c", script],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_pid(pid_file, process)
    process.send_signal(signal.SIGTERM)
    _out, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, err
    [entry] = _entries(sqlite_url)
    assert entry.decision == "interrupted"
    assert entry.energy_cpu_kwh is not None and entry.energy_cpu_kwh > 0


def _flush(url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GREENFLOW_LEDGER_URL": url}
    return subprocess.run([*GREENFLOW, "ledger", "flush"], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("path_args", _PATHS)
def test_kill_9_of_greenflow_takes_the_command_with_it_and_leaves_an_interrupted_attempt(
    ledger_url: str, tmp_path: Path, path_args: list[str]
) -> None:
    Ledger(ledger_url).budgets.set(Budget.parse("big", "1kg", "day"))
    env = {**os.environ, "GREENFLOW_LEDGER_URL": ledger_url, "GREENFLOW_CPU_TDP_W": "100"}
    pid_file = tmp_path / "child.pid"
    process = subprocess.Popen(
        [
            *GREENFLOW,
            "run",
            "--task",
            "killed",
            *path_args,
            "--",
            sys.executable,
            "-c",
            _child_script(pid_file, "time.sleep(600)"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    child = _wait_for_pid(pid_file, process)
    # While greenflow runs, its attempt's file is left alone: a flush never records a live run.
    live = _flush(ledger_url)
    assert live.returncode == 0, live.stderr
    assert "1 still running" in live.stdout
    assert Ledger(ledger_url).entries() == []

    process.kill()
    process.wait(timeout=60)
    assert _ended(child), "the command outlived greenflow, running unmetered"

    flushed = _flush(ledger_url)
    assert flushed.returncode == 0, flushed.stdout + flushed.stderr
    [entry] = Ledger(ledger_url).entries()
    assert (entry.task_id, entry.decision) == ("killed", "interrupted")
    assert entry.actual_start is not None and entry.ended_at is None  # when it stopped is not known
    assert entry.energy_kwh is None and "killed" in entry.measurement_notes["cpu"]
    assert entry.error is not None and "killed" in entry.error
    assert spool.pending(spool.spool_dir(ledger_url)) == []
    if path_args:  # the reservation made before the start is settled, by the estimate (labelled)
        assert entry.reservation_id is not None
        assert Ledger(ledger_url).budgets.status("big").reserved == 0.0
    assert Ledger(ledger_url).verify().ok


def test_a_budget_that_cannot_cover_the_estimate_refuses_at_once_instead_of_after_the_wait(
    sqlite_url: str, tmp_path: Path
) -> None:
    Ledger(sqlite_url).budgets.set(Budget.parse("tiny", "1g", "day"))
    marker = tmp_path / "started"
    # The trace's green window is hours after `now`: a run that planned first would wait for it.
    result = _run(
        sqlite_url,
        "--task",
        "shift",
        "--budget",
        "tiny",
        "--estimate",
        "5g",
        "--region",
        "ES",
        "--provider",
        "trace",
        "--provider-option",
        "now=2022-06-01T00:00Z",
        "--expected-duration",
        "2h",
        "--max-delay",
        "12h",
        "--",
        "touch",
        str(marker),
    )
    assert result.returncode == 3, result.stderr
    assert "waiting until" not in result.stderr  # refused before any wait
    assert "budget 'tiny' cannot cover 5 g" in result.stderr
    assert not marker.exists()
    [entry] = Ledger(sqlite_url).entries()
    assert entry.decision == "skipped_budget"
    assert entry.planned_start is not None and entry.requested_at is not None
    assert entry.planned_start > entry.requested_at  # the window it would have waited for


def test_waits_for_the_green_window_when_allowed_to(sqlite_url: str) -> None:
    result = _run(
        sqlite_url,
        "--task",
        "shift",
        "--region",
        "ES",
        "--provider",
        "trace",
        "--provider-option",
        "now=2022-06-01T00:00Z",
        "--expected-duration",
        "2h",
        "--max-delay",
        "14h",
        "--",
        "true",
    )
    assert result.returncode == 0, result.stderr
    assert "waiting until 2022-06-01T" in result.stderr
    [entry] = Ledger(sqlite_url).entries()
    assert entry.decision == "deferred"
    assert entry.deferred_seconds and entry.deferred_seconds > 6 * 3600


def test_forecast_correction_is_applied_and_recorded(sqlite_url: str) -> None:
    args = ["--region", "GB", "--provider", "trace", "--provider-option", "now=2023-03-28T14:00Z"]
    args += ["--expected-duration", "2h", "--max-delay", "20h", "-q"]
    plain = _run(sqlite_url, "--task", "plain", *args, "--no-forecast-correction", "--", "true")
    corrected = _run(sqlite_url, "--task", "corrected", *args, "--forecast-correction", "--", "true")
    assert plain.returncode == 0 and corrected.returncode == 0, corrected.stderr
    entries = {e.task_id: e for e in Ledger(sqlite_url).entries()}
    assert "forecast_correction" not in entries["plain"].extra
    entry = entries["corrected"]
    assert "GB: corrected (bias+carry)" in (entry.forecast_note or "")
    assert entry.extra["forecast_correction"]["regions"]["GB"]["applied"]
    assert entry.policy["forecast_correction"] == "bias+carry"
    # The same raw forecast as evidence; the corrected one moved the plan (the GB forecast's errors).
    assert entry.forecast_hash == entries["plain"].forecast_hash
    assert entry.planned_start != entries["plain"].planned_start


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--region", "ES", "--provider", "nope", "--", "true"], "provider='nope' is unknown"),
        (["--expected-duration", "-2h", "--", "true"], "is negative"),
        (["--estimate", "5 bananas", "--budget", "b", "--", "true"], "unknown unit 'bananas'"),
    ],
)
def test_bad_input_exits_2_before_running(sqlite_url: str, args: list[str], message: str) -> None:
    result = _run(sqlite_url, *args)
    assert result.returncode == 2
    assert message in result.stderr


def test_an_orchestrators_plan_is_kept_instead_of_planning_again(sqlite_url: str, tmp_path: Path) -> None:
    from greenflow.intensity.cache import ForecastCache
    from greenflow.intensity.providers.trace import TraceProvider
    from greenflow.ledger import Identity
    from greenflow.lifecycle import Lifecycle
    from greenflow.spec import CarbonSpec

    ledger = Ledger(sqlite_url)
    ledger.budgets.set(Budget.parse("gpu", "1kg", "month"))
    spec = CarbonSpec.build(
        region="ES", provider="trace", expected_duration="2h", max_delay="14h", budget="gpu", estimate="30g"
    )
    identity = Identity("airflow", "dag", "run", "bash_task")
    lifecycle = Lifecycle(
        spec,
        identity,
        ledger=ledger,
        cache=ForecastCache(),
        provider=TraceProvider(region="ES", now="2022-06-01T00:00Z"),
    )
    decision = lifecycle.reserve(lifecycle.plan())
    plan_file = tmp_path / "decision.json"
    plan_file.write_text(json.dumps(decision.to_dict()))
    result = _run(
        sqlite_url,
        "--workflow",
        "dag",
        "--run-id",
        "run",
        "--task",
        "bash_task",
        "--region",
        "ES",
        "--provider",
        "trace",
        "--provider-option",
        "now=2022-06-01T12:00Z",
        "--provider-option",
        "speed=1",
        "--budget",
        "gpu",
        "--decision",
        str(plan_file),
        "--",
        "true",
    )
    assert result.returncode == 0, result.stderr
    [entry] = Ledger(sqlite_url).entries()
    assert entry.decision == "deferred"
    assert entry.planned_start == decision.start_at
    assert entry.reservation_id == decision.reservation_id
    assert ledger.budgets.status("gpu").reserved == 0.0  # the orchestrator's reservation was settled


def _wait_for_entries(url: str, count: int, timeout: float = 90.0) -> list[Entry]:
    """Entries as they appear without anyone flushing (a detached writer's work)."""
    give_up = time.monotonic() + timeout
    while True:
        entries = Ledger(url).entries()
        if len(entries) >= count or time.monotonic() > give_up:
            return entries
        time.sleep(0.2)


def test_a_trivial_command_returns_at_once_and_a_detached_writer_records_it(sqlite_url: str) -> None:
    result = _run(sqlite_url, "--task", "quick", "--", "true")
    assert result.returncode == 0, result.stderr
    assert "ledger entry being written" in result.stderr
    [entry] = _wait_for_entries(sqlite_url, 1)  # nobody flushes: the writer greenflow started does it
    assert (entry.task_id, entry.decision) == ("quick", "ran_now")
    assert entry.method_cpu == "estimate"
    assert spool.pending(spool.spool_dir(sqlite_url)) == []


def test_ledger_write_wait_records_the_entry_before_exiting(sqlite_url: str) -> None:
    result = _run(sqlite_url, "--ledger-write", "wait", "--task", "synced", "--", "true")
    assert result.returncode == 0, result.stderr
    [entry] = Ledger(sqlite_url).entries()  # read at once, no flush
    assert entry.task_id == "synced"
    assert f"entry {entry.entry_id}" in result.stderr


def test_auto_waits_for_the_ledger_where_the_end_of_the_command_may_take_everything_down(sqlite_url: str) -> None:
    result = _run(sqlite_url, "--task", "pod", "--", "true", env={"KUBERNETES_SERVICE_HOST": "10.0.0.1"})
    assert result.returncode == 0, result.stderr
    assert [e.task_id for e in Ledger(sqlite_url).entries()] == ["pod"]


def test_a_command_that_runs_a_while_has_its_entry_written_before_greenflow_exits(
    sqlite_url: str, tmp_path: Path
) -> None:
    # The command runs until greenflow has begun opening the ledger alongside it (the SQLite file appears):
    # greenflow then finishes opening it and writes the entry itself, whatever the machine's load.
    database = Path(sqlite_url.removeprefix("sqlite:///"))
    assert not database.exists()
    script = f"import os, time\nwhile not os.path.exists({str(database)!r}): time.sleep(0.02)\n"
    result = _run(sqlite_url, "--task", "longer", "--", sys.executable, "-c", script)
    assert result.returncode == 0, result.stderr
    [entry] = Ledger(sqlite_url).entries()  # read at once, no flush: no writer process was needed
    assert f"entry {entry.entry_id}" in result.stderr
    assert "being written" not in result.stderr
    assert entry.ended_at is not None and entry.actual_start is not None


def test_the_same_attempt_run_twice_is_recorded_once(sqlite_url: str) -> None:
    for _ in range(2):
        assert _run(sqlite_url, "--run-id", "r1", "--task", "t", "--attempt", "1", "--", "true").returncode == 0
    assert len(_entries(sqlite_url)) == 1
    assert _run(sqlite_url, "--run-id", "r1", "--task", "t", "--attempt", "2", "--", "true").returncode == 0
    assert sorted(e.attempt for e in _entries(sqlite_url)) == [1, 2]


def test_a_command_that_cannot_start_exits_2_and_is_recorded_as_failed(sqlite_url: str, tmp_path: Path) -> None:
    result = _run(sqlite_url, "--task", "missing", "--", str(tmp_path / "no-such-program"))
    assert result.returncode == 2
    assert "cannot start" in result.stderr and "no-such-program" in result.stderr
    [entry] = _entries(sqlite_url)
    assert entry.decision == "failed"
    assert entry.error is not None and "cannot start" in entry.error


def test_a_bad_ledger_write_mode_stops_before_the_command_starts(sqlite_url: str, tmp_path: Path) -> None:
    marker = tmp_path / "started"
    result = _run(sqlite_url, "--ledger-write", "sometimes", "--", "touch", str(marker))
    assert result.returncode == 2
    assert "--ledger-write='sometimes' is not one of auto, background, wait" in result.stderr
    assert not marker.exists()
    assert _entries(sqlite_url) == []


def test_a_wait_stopped_by_sigterm_gives_the_reservation_back(sqlite_url: str, tmp_path: Path) -> None:
    Ledger(sqlite_url).budgets.set(Budget.parse("gpu", "1kg", "day"))
    marker = tmp_path / "started"
    env = {**os.environ, "GREENFLOW_LEDGER_URL": sqlite_url, "GREENFLOW_CPU_TDP_W": "100"}
    args = ["--task", "patient", "--budget", "gpu", "--estimate", "30g", "--region", "ES", "--provider", "trace"]
    # speed=1: the replayed clock runs in real time, so the green window is hours away.
    args += ["--provider-option", "now=2022-06-01T00:00Z", "--provider-option", "speed=1", "--max-delay", "14h"]
    process = subprocess.Popen(
        [*GREENFLOW, "run", *args, "--expected-duration", "2h", "--", "touch", str(marker)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    line = process.stderr.readline()  # the readiness signal: it reserved, then said what it waits for
    assert "waiting until" in line, line + process.communicate(timeout=60)[1]
    assert Ledger(sqlite_url).budgets.status("gpu").reserved == 30.0  # held through the wait
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM
    assert not marker.exists()
    assert Ledger(sqlite_url).budgets.status("gpu").reserved == 0.0
    assert Ledger(sqlite_url).entries() == []


def test_a_provider_outage_is_waited_out_under_the_tables_default_policy(sqlite_url: str) -> None:
    # on_provider_error defaults to "wait" in `greenflow run` too (it was "run" here alone): the attempt
    # retries until its latest start, then runs without a forecast, and the entry says so.
    down = ["--region", "national", "--provider", "ukgrid", "--provider-option", "base_url=http://127.0.0.1:9"]
    result = _run(sqlite_url, "--task", "outage", *down, "--max-delay", "2s", "--", "true",
                  env={"GREENFLOW_HTTP_TOTAL_TIME": "0.2"})  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "waiting until" in result.stderr and "retrying until" in result.stderr
    [entry] = Ledger(sqlite_url).entries()
    assert entry.forecast_note is not None
    assert "the deadline to start has come, running now without a forecast (on_provider_error=wait)" in (
        entry.forecast_note
    )
