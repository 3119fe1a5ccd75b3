"""The ledger in Prefect's UI: keyed, bounded artifacts with the run's entries, a summary, budgets' progress."""

from __future__ import annotations

import json
from typing import Any

import pytest
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

from greenflow.ledger import Budget, Entry, Identity
from greenflow.prefect import LEDGER_KEY, carbon_aware, with_ledger_artifacts
from greenflow.prefect import artifacts as artifacts_module
from greenflow.prefect.artifacts import artifact_key, budget_key, entry_row, summary_markdown


def _artifacts(key: str, flow_run_id: Any = None) -> list[Any]:
    flt = ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
    if flow_run_id is not None:
        flt = ArtifactFilter(key=ArtifactFilterKey(any_=[key]), flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
    with get_client(sync_client=True) as client:
        return list(client.read_artifacts(artifact_filter=flt))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("gpu-monthly", "greenflow-budget-gpu-monthly"),
        ("GPU Monthly", "greenflow-budget-gpu-monthly-"),
        ("équipe/vision", "greenflow-budget-quipe-vision-"),
        ("???", "greenflow-budget-unnamed-"),
    ],
)
def test_keys_are_what_prefect_accepts_and_stable(name: str, expected: str) -> None:
    key = budget_key(name)
    assert key.startswith(expected) and key == budget_key(name)
    assert all(c.islower() or c.isdigit() or c == "-" for c in key)
    assert len(artifact_key("greenflow-run", "x" * 500)) < 100


def test_names_that_slug_alike_never_share_a_key() -> None:
    assert len({budget_key("gpu monthly"), budget_key("gpu-monthly"), budget_key("GPU monthly")}) == 3


def test_rows_and_summary_say_not_measured_instead_of_zero() -> None:
    unmeasured = Entry.for_attempt(
        Identity("prefect", "train", "run-1", "train-0"),
        "deferred",
        region="ES",
        deferred_seconds=5400.0,
        measurement_notes={"gpu": "no NVIDIA GPU: the NVML library is not found", "cpu": "no RAPL"},
    )
    row = entry_row(unmeasured)
    assert row["kWh"] is None and row["gCO2e"] is None and row["saved gCO2e"] is None
    assert row["deferred"] == "1:30" and "no NVIDIA GPU" in row["note"]
    text = summary_markdown("train", "run-1", [unmeasured])
    assert "| energy | not measured (0 of 1 attempts measured) |" in text
    assert "no NVIDIA GPU" in text and "0.000" not in text


@pytest.mark.xdist_group("prefect")
@pytest.mark.usefixtures("prefect_server")
def test_a_flow_run_publishes_its_entries_summary_ledger_and_budget(
    ledger, replay, fake_gpu_meter, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    ledger.budgets.set(Budget.parse("gpu-daily", "1kg", "day"))
    seen_by_user_hook: list[str] = []

    def user_hook(flow: Any, flow_run: Any, state: Any) -> None:
        seen_by_user_hook.append(state.name)

    @task
    @carbon_aware(
        region="ES",
        provider="trace",
        # 4000x, not 36000x: starting a flow run takes seconds on a loaded machine, and at 36000x a few
        # seconds are a whole trace day (the green window passes before the task plans).
        provider_options=replay(speed=4000.0),
        expected_duration="2h",
        max_delay="14h",
        budget="gpu-daily",
        estimate="40g",
        meter_factory=fake_gpu_meter,
    )
    def train() -> str:
        return "model.pt"

    @task
    @carbon_aware(
        region="ES", provider="trace", provider_options=replay(), max_delay="0h", meter_factory=fake_gpu_meter
    )
    def evaluate(model: str) -> float:
        return 0.76

    @flow(name="Train + Evaluate", on_completion=[user_hook])
    def train_and_evaluate() -> float:
        return evaluate(train())

    published = with_ledger_artifacts(train_and_evaluate)
    assert published.on_completion_hooks[0] is user_hook  # the user's hook is kept, ours comes after
    state = published(return_state=True)
    assert state.is_completed() and seen_by_user_hook == ["Completed"]
    run_id = state.state_details.flow_run_id
    table_key = artifact_key("greenflow-run", "Train + Evaluate")
    assert table_key.startswith("greenflow-run-train-evaluate-")

    [table] = _artifacts(table_key, run_id)
    rows = json.loads(table.data)
    assert [(r["task"].split("-")[0], r["region"], r["decision"]) for r in rows] == [
        ("train", "ES", "deferred"),
        ("evaluate", "ES", "ran_now"),
    ]
    assert rows[0]["kWh"] > 0 and rows[0]["gCO2e"] > 0 and rows[0]["saved gCO2e"] > 0
    assert rows[0]["deferred"] != "0:00" and rows[1]["deferred"] == "0:00"

    [summary] = _artifacts(artifact_key("greenflow-summary", "Train + Evaluate"), run_id)
    assert summary.type == "markdown"
    assert "# greenflow: Train + Evaluate" in summary.data and "decisions | deferred 1, ran_now 1" in summary.data
    assert "## Windows chosen" in summary.data and "| ES | 2022-06-01T" in summary.data
    assert "saved by shifting" in summary.data and "of running at request time" in summary.data
    assert "Times are a replayed trace's" in summary.data

    [recent] = _artifacts(LEDGER_KEY, run_id)
    recent_rows = json.loads(recent.data)
    assert 2 <= len(recent_rows) <= artifacts_module.RECENT_ROWS
    assert recent_rows[0]["seq"] > recent_rows[-1]["seq"]  # newest first

    progress = _artifacts(budget_key("gpu-daily"), run_id)
    assert progress and float(progress[-1].data) > 0.0

    # Bounded: a run with more entries than the cap publishes the first MAX_RUN_ROWS and says so.
    monkeypatch.setattr(artifacts_module, "MAX_RUN_ROWS", 1)
    again = published(return_state=True)
    [capped] = _artifacts(table_key, again.state_details.flow_run_id)
    assert len(json.loads(capped.data)) == 1 and "(first 1)" in capped.description
