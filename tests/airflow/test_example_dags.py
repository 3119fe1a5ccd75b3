"""Every example DAG through ``dag.test()`` from the DAGs folder (Airflow runs the triggers in-process):
task states, the ledger entries each task wrote, budget effects, XComs and extra links.

The examples replay shipped traces at 3600x from the moment the run starts, so how long a task waits
depends on how long the machine takes to start it; the assertions check relations the ledger must
satisfy rather than exact times.
"""

from __future__ import annotations

from typing import Any

import pytest

from greenflow.airflow.carbon_aware_base import ENTRY_XCOM_KEY
from greenflow.airflow.links.ledger import ledger_url_for
from greenflow.ledger import Entry, Ledger

pytestmark = pytest.mark.xdist_group("airflow-dagtest")
LINK_KEY = "_link_GreenflowLedgerLink"


def _run(dagbag: Any, dag_id: str, conf: dict[str, Any] | None = None) -> tuple[Any, dict[Any, str | None]]:
    run = dagbag.get_dag(dag_id).test(run_conf=conf)
    states = {
        (ti.task_id if ti.map_index < 0 else (ti.task_id, ti.map_index)): (ti.state and str(ti.state))
        for ti in run.get_task_instances()
    }
    return run, states


def _xcom(run: Any, task_id: str, key: str = "return_value", map_index: int | None = None) -> Any:
    ti = next(
        t for t in run.get_task_instances() if t.task_id == task_id and (map_index is None or t.map_index == map_index)
    )
    return ti.xcom_pull(task_ids=task_id, key=key, map_indexes=map_index)


def _entries(ledger: Ledger, task_id: str) -> list[Entry]:
    return [e for e in ledger.entries() if e.task_id == task_id]


def test_training_defers_to_the_green_window_then_evaluates_within_budget(dagbag: Any, gf_ledger: Ledger) -> None:
    run, states = _run(dagbag, "greenflow_example_training")
    assert run.state == "success"
    assert set(states.values()) == {"success"}

    [train] = _entries(gf_ledger, "train")
    assert train.orchestrator == "airflow" and train.workflow_id == "greenflow_example_training"
    assert train.run_id == run.run_id and train.attempt == 1
    assert train.decision in ("deferred", "ran_now")  # ran_now only if the machine was too slow to start it
    if train.decision == "deferred":
        assert train.planned_start > train.requested_at and train.deferred_seconds > 0
    assert train.region == "ES" and train.forecast_provider == "trace" and train.forecast
    assert train.energy_kwh is None and "no NVIDIA GPU" in train.measurement_notes["gpu"]  # honest: nothing measured
    assert train.budget == "example-training-daily" and train.charged_g == 50.0 and train.tags == ("gpu", "training")
    assert _xcom(run, "train", ENTRY_XCOM_KEY) == train.entry_id
    assert _xcom(run, "train")["checkpoint"].endswith("ckpt-final.pt")
    assert _xcom(run, "train", LINK_KEY) == ledger_url_for(
        "http://airflow.test:8080", "greenflow_example_training", run.run_id, "train"
    )

    [gate] = _entries(gf_ledger, "budget_gate")
    assert gate.decision == "ran_now" and gate.extra["budget_status"]["spent"] == 50.0
    [evaluate] = _entries(gf_ledger, "evaluate")
    assert evaluate.decision == "ran_now" and evaluate.charged_g == 10.0
    status = gf_ledger.budgets.status("example-training-daily")
    assert status.settled == 60.0 and status.reserved == 0.0
    assert gf_ledger.verify().ok


def test_a_budget_spent_by_training_blocks_the_evaluation(dagbag: Any, gf_ledger: Ledger) -> None:
    _, states = _run(dagbag, "greenflow_example_training", {"budget_limit": "60g"})
    assert states["train"] == "success"
    assert states["budget_gate"] == "skipped" and states["evaluate"] == "skipped"
    [gate] = _entries(gf_ledger, "budget_gate")
    assert gate.decision == "skipped_budget" and "10 g left, needs 20g" in (gate.error or "")
    assert _entries(gf_ledger, "evaluate") == []
    assert gf_ledger.budgets.status("example-training-daily").spent == 50.0


def test_a_budget_too_small_for_the_estimate_skips_training_with_a_record(dagbag: Any, gf_ledger: Ledger) -> None:
    _, states = _run(dagbag, "greenflow_example_training", {"budget_limit": "40g"})
    assert states["train"] == "skipped" and states["evaluate"] == "skipped"
    [train] = _entries(gf_ledger, "train")
    assert train.decision == "skipped_budget" and "cannot cover 50 g" in (train.error or "")


def test_taskflow_maps_carbon_aware_shards(dagbag: Any, gf_ledger: Ledger) -> None:
    run, states = _run(dagbag, "greenflow_example_taskflow")
    assert run.state == "success"
    assert states[("batch_inference", 0)] == states[("batch_inference", 1)] == "success"
    shards = sorted(_entries(gf_ledger, "batch_inference"), key=lambda e: e.map_index or 0)
    assert [e.map_index for e in shards] == [0, 1]
    assert all(e.region == "GB" and e.functional_unit == "1k rows" and e.functional_units == 10 for e in shards)
    assert _xcom(run, "report") == 20_000
    assert _xcom(run, "batch_inference", LINK_KEY, map_index=1).endswith("&map_index=1")


@pytest.mark.parametrize("limit", ["300g", "5g"])
def test_validation_gate_takes_the_path_its_recorded_inputs_justify(dagbag: Any, gf_ledger: Ledger, limit: str) -> None:
    run, states = _run(dagbag, "greenflow_example_validation_gate", {"budget_limit": limit})
    assert run.state == "success"
    [gate] = _entries(gf_ledger, "gate")
    choice, inputs = gate.extra["gate"]["choice"], gate.extra["gate"]["inputs"]
    ran = {task for task in ("full_validation", "reduced_validation") if states[task] == "success"}
    assert ran == set(choice["branch"] or [])
    assert {task for task in ("full_validation", "reduced_validation") if states[task] == "skipped"} == {
        "full_validation",
        "reduced_validation",
    } - ran
    remaining = inputs["budget"]["remaining"]
    if limit == "5g":
        assert choice["branch"] is None and gate.decision == "skipped_budget" and remaining == 5.0
    elif inputs["intensity_now"] <= 250:
        assert choice["branch"] == ["full_validation"] and gate.decision == "ran_now"
    else:
        assert choice["branch"] == ["reduced_validation"] and gate.decision == "degraded"
    for task in ran:
        [entry] = _entries(gf_ledger, task)
        assert entry.decision == "ran_now" and entry.budget == "example-validation-daily"


def test_green_window_sensor_holds_the_command_then_greenflow_run_meters_it(dagbag: Any, gf_ledger: Ledger) -> None:
    run, states = _run(dagbag, "greenflow_example_green_window_command")
    assert run.state == "success" and set(states.values()) == {"success"}
    [sensor] = _entries(gf_ledger, "wait_for_green")
    assert sensor.decision in ("deferred", "ran_now") and sensor.energy_kwh is None
    assert _xcom(run, "wait_for_green")["entry_id"] == sensor.entry_id
    assert "submitting the nightly Spark job in GB" in _xcom(run, "submit")
    [package] = _entries(gf_ledger, "package")  # written by `greenflow run` in the command's process
    assert package.orchestrator == "airflow" and package.run_id == run.run_id and package.region == "GB"
    assert package.decision == "ran_now" and package.measurement_notes["gpu"]
    assert _xcom(run, "package") == "packaged"
    assert _xcom(run, "package", ENTRY_XCOM_KEY) == package.entry_id


def test_refusals_and_failures_are_recorded(dagbag: Any, gf_ledger: Ledger) -> None:
    _, states = _run(dagbag, "greenflow_test_refusals")
    assert states == {
        "tiny_budget": "success",
        "refused_python": "skipped",
        "refused_bash_skip": "skipped",
        "refused_bash_fail": "failed",
        "crashing": "failed",
        "command_exit_3": "failed",  # exit 3 from the command itself is a failure, not a budget refusal
    }
    decisions = {e.task_id: e.decision for e in gf_ledger.entries()}
    assert decisions == {
        "refused_python": "skipped_budget",
        "refused_bash_skip": "skipped_budget",
        "refused_bash_fail": "skipped_budget",
        "crashing": "failed",
        "command_exit_3": "failed",
    }
    [crash] = _entries(gf_ledger, "crashing")
    assert crash.error == "RuntimeError: CUDA out of memory"
    assert gf_ledger.budgets.status("test-refusals").spent == 0.0
