"""`greenflow run -- CMD`: exit codes, identity, budget refusal, signals, deferral (real processes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from greenflow.ledger import Budget, Ledger

GREENFLOW = [sys.executable, "-m", "greenflow.cli"]


def _run(url: str, *args: str, env: dict[str, str] | None = None, **kwargs: object) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "GREENFLOW_LEDGER_URL": url, "GREENFLOW_CPU_TDP_W": "100", **(env or {})}
    return subprocess.run(
        [*GREENFLOW, "run", *args], env=full_env, capture_output=True, text=True, timeout=120, **kwargs
    )  # type: ignore[call-overload]


def test_exit_code_passes_through_and_each_run_is_one_entry(sqlite_url: str) -> None:
    ok = _run(sqlite_url, "--task", "ok", "--", sys.executable, "-c", "print('trained')")
    assert ok.returncode == 0
    assert "trained" in ok.stdout
    failed = _run(sqlite_url, "--task", "bad", "--", sys.executable, "-c", "import sys; sys.exit(4)")
    assert failed.returncode == 4
    entries = {e.task_id: e for e in Ledger(sqlite_url).entries()}
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
    [entry] = Ledger(sqlite_url).entries()
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


def test_sigterm_is_forwarded_and_recorded_as_interrupted_with_the_energy_used(sqlite_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "GREENFLOW_LEDGER_URL": sqlite_url, "GREENFLOW_CPU_TDP_W": "100"}
    script = "import time\nwhile True: sum(range(10000))"
    process = subprocess.Popen(
        [*GREENFLOW, "run", "--task", "long", "--", sys.executable, "-c", script],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(4)  # let it start and burn some CPU
    process.send_signal(signal.SIGTERM)
    _out, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, err
    [entry] = Ledger(sqlite_url).entries()
    assert entry.decision == "interrupted"
    assert entry.energy_cpu_kwh is not None and entry.energy_cpu_kwh > 0


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
