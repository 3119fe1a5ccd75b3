"""``greenflow demo`` end to end, as ``make demo`` runs it: real Airflow ``dag.test()``, a real Prefect
temporary server, the shipped trace replayed, one shared budget; then what the user reads and the ledger left.

About a minute (more under load); the Airflow and Prefect parts are the repository's example DAG and flow.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from greenflow.ledger import Entry, Ledger

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


def test_the_prefect_training_deferred_too_and_its_energy_is_not_made_up(
    demo: tuple[subprocess.CompletedProcess[str], Path], entries: list[Entry]
) -> None:
    result, _ = demo
    train = _one(entries, "prefect", "train")
    assert train.decision == "deferred"
    assert train.planned_start is not None and train.requested_at is not None
    assert train.planned_start > train.requested_at
    assert train.extra["replay"]["speed"] == REPLAY_SPEED
    assert train.energy_kwh is None and train.measurement_notes["gpu"]  # nothing measured, with the reason
    assert train.charged_g == train.estimate_g == 50.0  # so the budget keeps the declared estimate
    assert "not measured" in result.stdout


def test_the_budget_the_first_runs_spent_skips_the_prefect_evaluation(
    demo: tuple[subprocess.CompletedProcess[str], Path], entries: list[Entry]
) -> None:
    result, _ = demo
    gate = _one(entries, "prefect", "carbon-budget-gate")
    assert gate.decision == "skipped_budget" and "cannot cover 20 g" in (gate.error or "")
    assert not [e for e in entries if e.orchestrator == "prefect" and e.task_id.startswith("evaluate")]
    assert "evaluation skipped by the budget gate" in result.stdout
    assert "example-training-daily │ 60 g  │ 50 g" in result.stdout  # the budget status table


def test_estimates_are_labelled_as_estimates(
    demo: tuple[subprocess.CompletedProcess[str], Path], entries: list[Entry]
) -> None:
    result, _ = demo
    evaluate = _one(entries, "airflow", "evaluate")
    assert evaluate.decision == "ran_now"
    if evaluate.method_cpu == "estimate":  # no RAPL on this host: the TDP estimate the demo configures
        assert evaluate.energy_kwh is not None and "CPU ESTIMATE" in result.stdout
        assert "GREENFLOW_CPU_TDP_W=65 W" in result.stdout
    else:  # a host with RAPL measures instead
        assert evaluate.method_cpu == "rapl"
