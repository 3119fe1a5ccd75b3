"""``greenflow demo`` end to end, as ``make demo`` runs it: real Airflow ``dag.test()``, a real Prefect
temporary server, the shipped trace replayed, one shared budget; then what the user reads and the ledger left.

About a minute (more under load); the Airflow and Prefect parts are the repository's example DAG and flow.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from greenflow.ledger import Entry, Ledger
from greenflow.units import format_mass

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("greenflow-demo")]

REPO = Path(__file__).resolve().parents[2]
REPLAY_SPEED = 1800.0
# The installed command, as `make demo` runs it (``python -m greenflow.cli`` where no script is installed).
_SCRIPT = Path(sys.executable).parent / "greenflow"
GREENFLOW = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "greenflow.cli"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    """One demo run into a temp directory (the expensive part, shared by the tests below)."""
    root = tmp_path_factory.mktemp("demo") / "demo-dir"
    env = {k: v for k, v in os.environ.items() if k != "GREENFLOW_LEDGER_URL"}
    # Half speed: under a loaded CI the first task can take seconds to start, and the window must not pass first.
    env["GREENFLOW_REPLAY_SPEED"] = str(REPLAY_SPEED)
    result = subprocess.run(
        [*GREENFLOW, "demo", "--dir", str(root)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    return result, root


@pytest.fixture(scope="module")
def entries(demo: tuple[subprocess.CompletedProcess[str], Path]) -> list[Entry]:
    _, root = demo
    ledger = Ledger(f"sqlite:///{root / 'ledger.db'}")
    try:
        return ledger.entries()
    finally:
        ledger.close()


def _one(entries: list[Entry], orchestrator: str, task_prefix: str) -> Entry:
    found = [e for e in entries if e.orchestrator == orchestrator and e.task_id.startswith(task_prefix)]
    assert len(found) == 1, [(e.orchestrator, e.task_id, e.decision) for e in entries]
    return found[0]


def test_the_demo_succeeds_and_leaves_a_verified_ledger(demo: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    result, root = demo
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    ledger = Ledger(f"sqlite:///{root / 'ledger.db'}")
    try:
        report = ledger.verify()
    finally:
        ledger.close()
    assert report.ok and report.entries >= 5
    assert f"ledger verified: {report.entries} entries, chain intact" in result.stdout
    assert f"greenflow --ledger sqlite:///{root / 'ledger.db'} ledger show" in result.stdout
    assert "make airflow-ui" in result.stdout and "make prefect-ui" in result.stdout
    # the orchestrators' own logs went to files, not to the screen
    assert (root / "logs" / "airflow.log").stat().st_size > 0 and (root / "logs" / "prefect.log").stat().st_size > 0
    assert "[DAG TEST]" not in result.stdout


def test_the_airflow_training_deferred_to_the_green_window_as_a_replay(
    demo: tuple[subprocess.CompletedProcess[str], Path], entries: list[Entry]
) -> None:
    result, _ = demo
    train = _one(entries, "airflow", "train")
    assert train.decision == "deferred", train.extra.get("decision_reason")
    assert train.requested_at is not None and train.planned_start is not None and train.actual_start is not None
    assert train.planned_start > train.requested_at and train.actual_start > train.requested_at
    assert (train.deferred_seconds or 0) > 0
    assert train.extra["replay"]["speed"] == REPLAY_SPEED
    assert train.region == "ES" and train.forecast_provider == "trace"
    # while it waited, the user saw what for and until when, in trace and wall-clock time
    waiting = [line for line in result.stdout.splitlines() if "airflow" in line and "(trace) =" in line]
    assert waiting and "UTC wall clock" in waiting[0]
    assert f"one trace hour = {3600 / REPLAY_SPEED:g} real second" in result.stdout


def test_the_prefect_training_deferred_too_with_simulated_gpu_energy_and_nothing_made_up(
    demo: tuple[subprocess.CompletedProcess[str], Path], entries: list[Entry]
) -> None:
    train = _one(entries, "prefect", "train")
    assert train.decision == "deferred"
    assert train.planned_start is not None and train.requested_at is not None
    assert train.planned_start > train.requested_at
    assert train.extra["replay"]["speed"] == REPLAY_SPEED
    # the GPU energy is the simulated draw over the trace time the stand-in ran: 300 W x ~2 h
    assert train.method_gpu == "simulated" and "simulated, not measured" in train.measurement_notes["gpu"]
    assert train.actual_start is not None and train.ended_at is not None
    hours = (train.ended_at - train.actual_start).total_seconds() / 3600
    assert hours >= 2 and train.energy_gpu_kwh == pytest.approx(0.3 * hours)
    # the host's meters are off in this part: CPU and DRAM are not measured, with the reason, never 0
    assert train.energy_cpu_kwh is None and train.measurement_notes["cpu"]
    assert train.saved_g is not None and train.saved_g > 10  # a real-size saving from the green window


def test_the_budget_the_first_runs_spent_skips_the_prefect_evaluation(
    demo: tuple[subprocess.CompletedProcess[str], Path], entries: list[Entry]
) -> None:
    result, _ = demo
    gate = _one(entries, "prefect", "carbon-budget-gate")
    assert gate.decision == "skipped_budget" and "example-training-daily" in (gate.error or "")
    assert not [e for e in entries if e.orchestrator == "prefect" and e.task_id.startswith("evaluate")]
    assert "evaluation skipped by the budget gate" in result.stdout
    assert "example-training-daily │ 240 g" in result.stdout  # the budget status table
    # the simulated runs emitted more than their declared estimates: the report says why the budget is past its limit
    assert "charged more than they reserved: train (airflow)" in " ".join(result.stdout.split())


def test_simulated_energy_is_labelled_and_the_summary_shows_real_savings(
    demo: tuple[subprocess.CompletedProcess[str], Path], entries: list[Entry]
) -> None:
    result, _ = demo
    ran = [e for e in entries if e.decision in ("deferred", "ran_now") and e.region is not None]
    assert {(e.orchestrator, e.task_id.split("-")[0]) for e in ran} == {
        ("airflow", "train"),
        ("airflow", "evaluate"),
        ("prefect", "train"),
    }
    assert all(e.method_gpu == "simulated" and e.energy_gpu_kwh for e in ran)
    out = " ".join(result.stdout.split())  # rich wraps long lines
    assert "GPU energy is SIMULATED, not measured" in out  # said before anything runs
    assert re.search(r"ledger entry: \w+, energy [\d.]+ Wh \(GPU simulated\)", out)  # the Airflow task's log line
    assert "(GPU SIMULATED)" in out  # the savings table
    saved = sum(e.saved_g or 0.0 for e in ran)
    assert saved > 10
    assert f"saved in total: {format_mass(saved)} (SIMULATED energy) over 3 run(s)" in out
