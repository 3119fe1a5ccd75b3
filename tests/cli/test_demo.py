"""``greenflow demo`` end to end, as ``make demo`` runs it: real Airflow ``dag.test()``, a real Prefect
temporary server, an interruptible ``greenflow run``, the shipped trace replayed, one shared budget; then
what the user reads and the ledger left.

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
    ran = [
        e for e in entries if e.region is not None and (e.decision in ("deferred", "ran_now") or "segment" in e.extra)
    ]
    assert {(e.orchestrator, e.task_id.split("-")[0]) for e in ran} == {
        ("airflow", "train"),
        ("airflow", "evaluate"),
        ("prefect", "train"),
        ("cli", "finetune"),
    }
    assert all(e.method_gpu == "simulated" and e.energy_gpu_kwh for e in ran)
    out = " ".join(result.stdout.split())  # rich wraps long lines
    assert "GPU energy is SIMULATED, not measured" in out  # said before anything runs
    assert re.search(r"ledger entry: \w+, energy [\d.]+ Wh \(GPU simulated\)", out)  # the Airflow task's log line
    assert "(GPU SIMULATED)" in out  # the savings table
    saved = sum(e.saved_g or 0.0 for e in ran)
    assert saved > 10
    # the interruptible fine-tune's segments count as one run
    assert f"saved in total: {format_mass(saved)} (SIMULATED energy) over 4 run(s)" in out


def test_the_interruptible_finetune_runs_in_green_segments_and_resumes_from_its_checkpoint(
    demo: tuple[subprocess.CompletedProcess[str], Path], entries: list[Entry]
) -> None:
    result, root = demo
    segments = sorted(
        (e for e in entries if e.orchestrator == "cli" and e.task_id == "finetune"),
        key=lambda e: e.extra["segment"]["index"],
    )
    assert len(segments) >= 2, [(e.task_id, e.decision) for e in segments]
    assert segments[0].decision == "interrupted" and segments[-1].decision in ("ran_now", "deferred")
    assert len({e.extra["segment"]["link"] for e in segments}) == 1
    assert all(e.method_gpu == "simulated" and e.extra["replay"]["speed"] == REPLAY_SPEED for e in segments)
    # the command saved its checkpoint on SIGTERM and the next segment started from it, not from step 0
    log = (root / "finetune" / "training.log").read_text().splitlines()
    paused = [line for line in log if line.startswith("0 paused at ")]
    resumed = [line for line in log if line.startswith("1 resumed from step ")]
    assert paused and resumed and paused[0].split()[-1] == resumed[0].split()[-1] != "0", log
    step = resumed[0].split()[-1]
    out = " ".join(result.stdout.split())  # rich wraps long lines
    # while it ran: the pause at the segment's end, the resume, the plan of its segments
    assert f"segment's end: SIGTERM, checkpoint saved at step {step}, paused" in out
    assert f"next segment: resumed from its checkpoint at step {step}" in out
    assert re.search(r"paused until its next green segment; plan: Running in \d+ segments in ES", out)
    # the report: one row per segment with its planned and actual times, the resume, the saving labelled
    assert f"demo-finetune.finetune (cli, `greenflow run --interruptible`): {len(segments)} segment(s)" in out
    assert f"1/{len(segments)}" in out and "paused: SIGTERM at the segment's planned end" in out
    assert f"segment 2 resumed from its checkpoint at step {step}" in out
    saved = sum(e.saved_g or 0.0 for e in segments)
    assert saved > 10  # greener segments than running in one piece at once, at a real GPU's draw
    assert f"saved vs running in one piece now: {format_mass(saved)}" in out
    assert re.search(r"saved vs running in one piece now: [^:]+ \(SIMULATED energy\)", out)
