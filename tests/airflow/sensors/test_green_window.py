"""GreenWindowSensor: defers until the window, then records its decision (not metered) and opens the way."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred

from greenflow.airflow.carbon_aware_base import ENTRY_XCOM_KEY
from greenflow.airflow.sensors.green_window import GreenWindowSensor
from greenflow.airflow.triggers.window import CarbonWindowTrigger
from greenflow.ledger import Ledger


def _sensor(now: datetime, **overrides: Any) -> GreenWindowSensor:
    options = {"now": now.isoformat(), "speed": 36_000, "replay_started_at": datetime.now(UTC).isoformat()}
    args = {"task_id": "wait", "region": "ES", "provider": "trace", "provider_options": options}
    return GreenWindowSensor(**{**args, "expected_duration": "2h", "max_delay": "14h", **overrides})


def _ages(value: object) -> list[float]:
    """Every ``age_seconds`` recorded anywhere in an entry's JSON."""
    if isinstance(value, dict):
        found = [float(v) for k, v in value.items() if k == "age_seconds" and v is not None]
        return found + [age for v in value.values() for age in _ages(v)]
    if isinstance(value, list):
        return [age for v in value for age in _ages(v)]
    return []


async def _fire(trigger: CarbonWindowTrigger) -> dict[str, Any]:
    async for event in trigger.run():
        return dict(event.payload)
    raise AssertionError("no event")


def test_defers_then_records_a_deferred_decision(gf_ledger: Ledger, make_context: Any, midnight: datetime) -> None:
    sensor = _sensor(midnight)
    context = make_context(task_id="wait")
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context)
    assert isinstance(deferred.value.trigger, CarbonWindowTrigger)
    assert gf_ledger.count() == 0

    event = asyncio.run(asyncio.wait_for(_fire(deferred.value.trigger), 20))
    opened = sensor.execute_complete(context, event)

    [entry] = gf_ledger.entries()
    assert entry.decision == "deferred" and entry.task_id == "wait"
    assert opened == {
        "region": "ES",
        "planned_start": event["decision"]["start_at"],
        "latest_start": event["decision"]["latest_start"],
        "entry_id": entry.entry_id,
    }
    assert context["ti"].xcoms[ENTRY_XCOM_KEY] == entry.entry_id
    assert entry.energy_kwh is None and "greenflow does not run" in entry.measurement_notes["reason"]
    assert entry.extra["fired"] == "planned_start" and entry.forecast_hash
    # Issue 15: a replayed entry is marked, starts at its planned start (not after its latest start), and its
    # forecast ages are wall-clock ones (a trace's "now" minus a real fetch time gave -142580490 s).
    assert entry.extra["replay"]["speed"] == 36_000
    assert entry.actual_start == entry.planned_start <= datetime.fromisoformat(event["decision"]["latest_start"])
    ages = _ages(entry.policy) + _ages(entry.extra)
    assert ages and all(0 <= age < 3600 for age in ages)


def test_in_the_window_already_it_succeeds_at_once(gf_ledger: Ledger, make_context: Any) -> None:
    noon = datetime(2022, 6, 1, 12, tzinfo=UTC)
    opened = _sensor(noon, max_delay="2h").execute(make_context(task_id="wait"))
    [entry] = gf_ledger.entries()
    assert entry.decision == "ran_now" and opened["entry_id"] == entry.entry_id
