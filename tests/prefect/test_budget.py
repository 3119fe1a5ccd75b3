"""Budget gates, the ``greenflow.budget.exhausted`` event and the governance gate, under the test server."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from greenflow.errors import BudgetExceeded, InvalidInput
from greenflow.governance import GatePolicy
from greenflow.ledger import Budget, Entry, Identity
from greenflow.prefect import (
    BUDGET_EXHAUSTED_EVENT,
    budget_gate_task,
    carbon_aware,
    carbon_budget_gate,
    governance_gate,
)

pytestmark = [pytest.mark.xdist_group("prefect"), pytest.mark.usefixtures("prefect_server")]


def _spend(ledger, budget: str, grams: float) -> None:  # type: ignore[no-untyped-def]
    ledger.append(
        Entry.for_attempt(
            Identity("cli", "w", f"r-{time.monotonic_ns()}", "t"), "ran_now", charged_g=grams, budget=budget
        )
    )


def _task_runs(flow_run_id: UUID) -> dict[str, Any]:
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {run.name: run for run in runs}


def _events(name: str, budget: str, since: datetime) -> list[dict[str, Any]]:
    """A budget's events the server received, read back through its API (the event reaches Prefect, not a mock)."""
    body = {
        "filter": {
            "event": {"name": [name]},
            "resource": {"id": [f"greenflow.budget.{budget}"]},
            "occurred": {"since": since.isoformat()},
        },
        "limit": 50,
    }
    deadline = time.monotonic() + 30
    while True:
        with get_client(sync_client=True) as client:
            events = client.request("POST", "/events/filter", json=body).json()["events"]
        if events or time.monotonic() > deadline:
            return list(events)
        time.sleep(0.5)


def test_skip_mode_keeps_the_run_green_without_starting_the_gpu_work(ledger) -> None:  # type: ignore[no-untyped-def]
    ledger.budgets.set(Budget.parse("eval-skip", "10g", "month"))
    _spend(ledger, "eval-skip", 10.0)
    evaluated: list[str] = []

    @task
    def evaluate(model: str) -> str:
        evaluated.append(model)
        return "top1=0.76"

    @flow
    def train_and_evaluate() -> str | None:
        if carbon_budget_gate("eval-skip", mode="skip"):
            return evaluate("model.pt")
        return None

    since = datetime.now(UTC) - timedelta(seconds=1)
    state = train_and_evaluate(return_state=True)
    assert state.is_completed() and state.result() is None
    assert evaluated == []
    [gate] = [r for name, r in _task_runs(state.state_details.flow_run_id).items() if name.startswith("carbon-budget")]
    assert gate.state.is_completed() and gate.state.name == "Skipped"
    assert "budget 'eval-skip' is spent" in gate.state.message and "work skipped" in gate.state.message
    [entry] = [e for e in ledger.entries() if e.run_id == str(state.state_details.flow_run_id)]
    assert entry.decision == "skipped_budget" and entry.task_id.startswith("carbon-budget-gate-")
    assert entry.budget == "eval-skip" and entry.extra["gate"]["status"]["exhausted"] is True
    [event] = _events(BUDGET_EXHAUSTED_EVENT, "eval-skip", since)
    assert event["resource"]["prefect.resource.id"] == "greenflow.budget.eval-skip"
    assert event["payload"]["limit"] == 10.0 and event["payload"]["remaining"] == 0.0
    assert {r["prefect.resource.role"] for r in event["related"]} >= {"flow-run", "task-run", "flow"}


def test_fail_mode_fails_the_gate_and_downstream_tasks_never_start(ledger) -> None:  # type: ignore[no-untyped-def]
    ledger.budgets.set(Budget.parse("eval-fail", "10g", "month"))
    _spend(ledger, "eval-fail", 12.0)
    evaluated: list[str] = []

    @task
    def evaluate(model: str) -> str:
        evaluated.append(model)
        return "ok"

    @flow
    def pipeline() -> str:
        gate = budget_gate_task.submit("eval-fail", "fail")
        evaluate.submit("model.pt", wait_for=[gate]).wait()
        return gate.result()

    state = pipeline(return_state=True)
    assert state.is_failed()
    assert evaluated == []
    runs = _task_runs(state.state_details.flow_run_id)
    [gate] = [r for name, r in runs.items() if name.startswith("carbon-budget")]
    assert gate.state.is_failed() and "BudgetExceeded" in gate.state.message
    [downstream] = [r for name, r in runs.items() if name.startswith("evaluate")]
    assert downstream.state.name == "NotReady" and not downstream.state.is_final()
    with pytest.raises(BudgetExceeded, match="budget 'eval-fail' is spent"):
        state.result()


def test_an_open_gate_lets_work_through_and_records_nothing(ledger) -> None:  # type: ignore[no-untyped-def]
    ledger.budgets.set(Budget.parse("eval-open", "100g", "month"))
    _spend(ledger, "eval-open", 30.0)

    @flow
    def pipeline() -> tuple[bool, bool]:
        return carbon_budget_gate("eval-open", mode="fail"), carbon_budget_gate("eval-open", "skip", estimate="80g")

    state = pipeline(return_state=True)
    assert state.result() == (True, False)  # 70 g left: open, but not for an 80 g estimate
    gates = sorted(_task_runs(state.state_details.flow_run_id).values(), key=lambda r: r.expected_start_time)
    assert [g.state.name for g in gates] == ["Completed", "Skipped"]
    assert "30 g of 100 g spent or reserved (30%)" in gates[0].state.message
    assert "cannot cover 80 g" in gates[1].state.message
    assert [e.decision for e in ledger.entries() if e.run_id == str(state.state_details.flow_run_id)] == [
        "skipped_budget"
    ]


def test_wait_mode_waits_for_the_spending_to_leave_a_rolling_period(ledger) -> None:  # type: ignore[no-untyped-def]
    ledger.budgets.set(Budget.parse("burst", "10g", "rolling:0.001h"))  # a 3.6-second rolling window
    _spend(ledger, "burst", 10.0)
    started = time.monotonic()

    @flow
    def pipeline() -> bool:
        return carbon_budget_gate("burst", mode="wait", max_wait="60s", poll_every="0.5s")

    state = pipeline(return_state=True)
    assert state.result() is True
    assert time.monotonic() - started >= 2.0  # it did wait for the spend to age out
    [gate] = _task_runs(state.state_details.flow_run_id).values()
    assert "open again after" in gate.state.message


def test_wait_mode_fails_at_once_when_the_next_period_is_past_max_wait(ledger) -> None:  # type: ignore[no-untyped-def]
    ledger.budgets.set(Budget.parse("monthly", "10g", "month"))
    _spend(ledger, "monthly", 10.0)
    with pytest.raises(BudgetExceeded, match="starts after max_wait"):
        carbon_budget_gate("monthly", mode="wait", max_wait="1s")  # outside a flow: runs inline
    assert [e.decision for e in ledger.entries()][-1] == "skipped_budget"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "sometimes"}, "mode='sometimes' is not one of fail, skip, wait"),
        ({"estimate": "lots"}, "estimate='lots'"),
        ({"max_wait": "forever"}, "max_wait='forever' is not a duration"),
    ],
)
def test_bad_gate_input_is_refused_before_anything_runs(kwargs, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(")):
        carbon_budget_gate("gpu", **kwargs)


def test_a_task_that_spends_the_budget_emits_the_event_and_the_progress_artifact(ledger, replay) -> None:  # type: ignore[no-untyped-def]
    ledger.budgets.set(Budget.parse("train-daily", "25g", "day"))

    @task
    @carbon_aware(
        region="ES", provider="trace", provider_options=replay(), max_delay="0h", budget="train-daily", estimate="25g"
    )
    def train() -> str:
        return "model.pt"

    @flow
    def nightly() -> str:
        return train()

    since = datetime.now(UTC) - timedelta(seconds=1)
    assert nightly() == "model.pt"  # nothing measured here (no GPU, no RAPL): the budget keeps the estimate
    assert ledger.budgets.status("train-daily").exhausted
    [event] = _events(BUDGET_EXHAUSTED_EVENT, "train-daily", since)
    assert event["resource"]["prefect.resource.name"] == "train-daily"
    with get_client(sync_client=True) as client:
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

        [progress] = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["greenflow-budget-train-daily"]))
        )
    assert progress.type == "progress" and float(progress.data) == 100.0
    assert "25 g of 25 g spent or reserved" in progress.description


def test_governance_gate_chooses_by_budget_and_intensity_and_records_every_choice(ledger, replay) -> None:  # type: ignore[no-untyped-def]
    ledger.budgets.set(Budget.parse("validation", "100g", "month"))

    @flow
    def validate(budget_spent: float, now: str) -> str:
        _spend(ledger, "validation", budget_spent)
        return governance_gate(
            budget="validation",
            region="ES",
            provider="trace",
            provider_options=replay(now=now),
            expected_duration="30m",
            reduce_above=250,
            reduce_when_spent=0.8,
        )

    midday, midnight = "2022-06-01T12:00Z", "2022-06-01T00:00Z"
    runs = [validate(10.0, midday, return_state=True)]  # clean grid, 10% spent
    runs.append(validate(0.0, midnight, return_state=True))  # dirty grid (~315 g/kWh lifecycle)
    runs.append(validate(75.0, midday, return_state=True))  # 85% spent
    runs.append(validate(20.0, midday, return_state=True))  # 105% spent
    assert [r.result() for r in runs] == ["full", "reduced", "reduced", "skipped"]
    entries = [ledger.entries()[-1]]
    entries = [e for r in runs for e in ledger.entries() if e.run_id == str(r.state_details.flow_run_id) and e.policy]
    assert [e.decision for e in entries] == ["ran_now", "degraded", "degraded", "skipped_budget"]
    assert entries[1].intensity_g_per_kwh > 250 and "above 250" in entries[1].extra["gate"]["reason"]
    assert "85% spent" in entries[2].extra["gate"]["reason"]
    assert entries[0].intensity_g_per_kwh < 250 and entries[0].region == "ES"
    # The policy is the core's, as data, recorded with each choice and the rule that made it.
    policy = GatePolicy.tiered(reduce_above=250, reduce_when_spent=0.8).to_dict()
    assert all(e.extra["gate"]["policy"] == policy for e in entries)
    assert [e.extra["gate"]["rule"]["rule"] for e in entries] == ["otherwise", 2, 1, 0]
    names = [next(iter(_task_runs(r.state_details.flow_run_id).values())).state.name for r in runs]
    assert names == ["Completed", "Reduced", "Reduced", "Skipped"]


def test_a_spent_budget_counting_the_same_work_closes_the_gate(ledger) -> None:  # type: ignore[no-untyped-def]
    """Issue 14 item 1: two tag:ml budgets; the narrow one is spent, a gate on the wide one must close."""
    ledger.budgets.set(Budget.parse("team-ml", "30g", "month", scope="tag:ml"))
    ledger.budgets.set(Budget.parse("dag-ml", "100g", "month", scope="tag:ml"))
    ledger.append(Entry.for_attempt(Identity("cli", "w", "r", "t"), "ran_now", charged_g=30.0, tags=("ml",)))
    assert not ledger.budgets.status("dag-ml").exhausted

    @flow
    def pipeline() -> bool:
        return carbon_budget_gate("dag-ml", "skip")

    state = pipeline(return_state=True)
    assert state.result() is False
    [gate] = _task_runs(state.state_details.flow_run_id).values()
    assert gate.state.name == "Skipped" and "budget 'team-ml' is spent" in gate.state.message


def _ages(value: object) -> list[float]:
    """Every ``age_seconds`` recorded anywhere in an entry's JSON."""
    if isinstance(value, dict):
        found = [float(v) for k, v in value.items() if k == "age_seconds" and v is not None]
        return found + [age for v in value.values() for age in _ages(v)]
    if isinstance(value, list):
        return [age for v in value for age in _ages(v)]
    return []


def test_a_replayed_governance_gate_records_its_choice_in_the_trace_clock(ledger, replay) -> None:  # type: ignore[no-untyped-def]
    """Issue 15: a replayed choice was stamped with the wall clock next to a 2022 forecast and not marked as a
    replay (the UI then took its times for real ones). It keeps the trace's clock, says so, and waited for nothing."""
    midnight = datetime(2022, 6, 1, tzinfo=UTC)
    choice = governance_gate(
        region="ES",
        provider="trace",
        provider_options=replay(now=midnight.isoformat()),
        expected_duration="30m",
        reduce_above=250,
    )  # outside a flow: runs inline
    assert choice == "reduced"  # night in Spain: ~315 g/kWh
    [entry] = ledger.entries()
    assert entry.decision == "degraded" and entry.deferred_seconds == 0
    assert entry.requested_at == entry.planned_start == entry.actual_start
    assert midnight <= entry.actual_start < midnight + timedelta(hours=1)
    assert entry.extra["replay"]["speed"] == 36000
    assert entry.region == "ES" and entry.forecast_hash and entry.intensity_g_per_kwh > 250
    assert entry.extra["check_policy"]["gate"] == "governance_gate"
    ages = _ages(entry.policy) + _ages(entry.extra)
    assert ages and all(0 <= age < 3600 for age in ages)  # fetched just now, whatever the trace's time


def test_a_closed_budget_gate_records_no_start_and_no_wait(ledger) -> None:  # type: ignore[no-untyped-def]
    ledger.budgets.set(Budget.parse("closed", "10g", "month"))
    _spend(ledger, "closed", 10.0)
    before = datetime.now(UTC)
    with pytest.raises(BudgetExceeded):
        carbon_budget_gate("closed", mode="fail")  # outside a flow: runs inline
    entry = ledger.entries()[-1]
    assert entry.decision == "skipped_budget" and entry.actual_start is None and entry.deferred_seconds == 0
    assert before <= entry.requested_at <= datetime.now(UTC)
    assert "replay" not in entry.extra and entry.policy["gate"] == "carbon_budget_gate"
