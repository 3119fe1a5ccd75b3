"""CarbonBudgetSensor: passes with room; otherwise waits deferred, skips or fails, and always records why."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException, TaskDeferred

from greenflow.airflow.carbon_aware_base import ENTRY_XCOM_KEY
from greenflow.airflow.sensors.budget import CarbonBudgetSensor
from greenflow.airflow.triggers.budget import CarbonBudgetTrigger
from greenflow.ledger import Budget, Identity, Ledger


def _spend(ledger: Ledger, grams: float) -> str:
    ledger.budgets.set(Budget.parse("gpu", "100g", "day"))
    return ledger.budgets.reserve(
        "gpu", Identity("airflow", "d", "r", "train"), grams, estimate_source="t"
    ).reservation_id


def test_with_room_it_passes_and_records_the_budget(gf_ledger: Ledger, make_context: Any) -> None:
    _spend(gf_ledger, 30)
    context = make_context(task_id="budget_gate")
    status = CarbonBudgetSensor(task_id="budget_gate", budget="gpu", min_remaining="50g").execute(context)
    assert status["remaining"] == 70.0
    [entry] = gf_ledger.entries()
    assert entry.decision == "ran_now" and entry.budget == "gpu"
    assert entry.extra["budget_status"]["spent"] == 30.0
    assert context["ti"].xcoms[ENTRY_XCOM_KEY] == entry.entry_id


@pytest.mark.parametrize(("mode", "raised"), [("skip", AirflowSkipException), ("fail", AirflowFailException)])
def test_without_room_it_skips_or_fails_and_records_skipped_budget(
    gf_ledger: Ledger, make_context: Any, mode: str, raised: type[Exception]
) -> None:
    _spend(gf_ledger, 80)
    sensor = CarbonBudgetSensor(task_id="budget_gate", budget="gpu", min_remaining="50g", on_exhausted=mode)
    with pytest.raises(raised, match="budget gpu has no room"):
        sensor.execute(make_context(task_id="budget_gate"))
    [entry] = gf_ledger.entries()
    assert entry.decision == "skipped_budget" and "20 g left, needs 50g" in (entry.error or "")


def test_wait_defers_until_room_then_records_the_wait(gf_ledger: Ledger, make_context: Any) -> None:
    reservation = _spend(gf_ledger, 100)
    sensor = CarbonBudgetSensor(
        task_id="budget_gate", budget="gpu", recheck_interval="0.1s", timeout=timedelta(days=31)
    )
    context = make_context(task_id="budget_gate")
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context)
    trigger = deferred.value.trigger
    assert isinstance(trigger, CarbonBudgetTrigger)
    assert trigger.period_end == gf_ledger.budgets.status("gpu").period_end
    assert timedelta(seconds=float(deferred.value.timeout)) == timedelta(days=31)  # the sensor timeout applies
    assert gf_ledger.count() == 0

    gf_ledger.budgets.release(reservation)

    async def fire() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("no event")

    event = asyncio.run(asyncio.wait_for(fire(), 20))
    status = CarbonBudgetSensor(task_id="budget_gate", budget="gpu", recheck_interval="0.1s").execute_complete(
        context, event
    )
    assert status["remaining"] == 100.0
    [entry] = gf_ledger.entries()
    assert entry.decision == "deferred" and entry.deferred_seconds is not None and entry.deferred_seconds > 0


def test_a_spent_budget_covering_the_dag_closes_the_sensor_of_a_budget_with_room(
    gf_ledger: Ledger, make_context: Any
) -> None:
    """Issue 14 item 1: nested budgets. The DAG's own cap is spent though the watched budget has room."""
    from greenflow.ledger import Entry

    gf_ledger.budgets.set(Budget.parse("gpu", "100g", "day"))
    gf_ledger.budgets.set(Budget.parse("dag-cap", "10g", "day", scope="workflow:unit_dag"))
    gf_ledger.append(Entry.for_attempt(Identity("airflow", "unit_dag", "r", "train"), "ran_now", charged_g=20.0))
    assert gf_ledger.budgets.status("gpu").remaining == 80.0
    sensor = CarbonBudgetSensor(task_id="budget_gate", budget="gpu", on_exhausted="fail")
    with pytest.raises(AirflowFailException, match=r"budget gpu has no room \(budget dag-cap \(covers this work too"):
        sensor.execute(make_context(task_id="budget_gate"))
    assert not sensor.poke(make_context(task_id="budget_gate"))
