"""CarbonBudgetTrigger: survives serde, fires once the budget has room (re-reading it at the recheck
cadence and at the period's end), and only reads the ledger."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from greenflow.airflow.triggers.budget import CarbonBudgetTrigger
from greenflow.ledger import Budget, Identity, Ledger
from greenflow.ledger import registry as ledger_registry
from greenflow.ledger.budgets import Budgets


def _exhaust(ledger: Ledger) -> str:
    ledger.budgets.set(Budget.parse("gpu", "100g", "day"))
    held = ledger.budgets.reserve("gpu", Identity("airflow", "dag", "run", "train"), 100.0, estimate_source="test")
    assert ledger.budgets.status("gpu").exhausted
    return held.reservation_id


def _release_later(ledger: Ledger, reservation_id: str, seconds: float) -> None:
    threading.Timer(seconds, ledger.budgets.release, args=[reservation_id]).start()


async def _collect(trigger: CarbonBudgetTrigger, timeout: float = 20) -> list[Any]:
    async def drain() -> list[Any]:
        return [event async for event in trigger.run()]

    return await asyncio.wait_for(drain(), timeout)


def test_serialize_round_trips_through_airflow_serde() -> None:
    from airflow.models.trigger import Trigger
    from airflow.sdk.serde import deserialize, serialize

    trigger = CarbonBudgetTrigger(
        budget="gpu", period_end=datetime(2024, 2, 1, tzinfo=UTC), min_remaining="20g", recheck_seconds=60
    )
    classpath, kwargs = trigger.serialize()
    assert deserialize(serialize(kwargs)) == kwargs
    rebuilt = CarbonBudgetTrigger(**Trigger._decrypt_kwargs(Trigger.encrypt_kwargs(kwargs)))
    assert rebuilt.serialize() == (classpath, kwargs)


def test_fires_when_a_reservation_is_released(gf_ledger: Ledger) -> None:
    reservation = _exhaust(gf_ledger)
    trigger = CarbonBudgetTrigger(
        budget="gpu", period_end=datetime.now(UTC) + timedelta(days=1), min_remaining="50g", recheck_seconds=0.1
    )
    _release_later(gf_ledger, reservation, 0.4)
    [event] = asyncio.run(_collect(trigger))
    assert event.payload["status"]["remaining"] == 100.0
    assert event.payload["checks"] >= 2  # it re-read the budget while it was still spent
    assert gf_ledger.count() == 0


def test_re_reads_at_the_period_end_even_with_a_long_recheck(gf_ledger: Ledger) -> None:
    reservation = _exhaust(gf_ledger)
    _release_later(gf_ledger, reservation, 0.1)
    trigger = CarbonBudgetTrigger(
        budget="gpu", period_end=datetime.now(UTC) + timedelta(seconds=0.5), recheck_seconds=3600
    )
    started = time.monotonic()
    [event] = asyncio.run(_collect(trigger))
    assert time.monotonic() - started < 5
    assert event.payload["checks"] == 1
    assert not event.payload["status"]["exhausted"]


def test_reading_the_budget_never_blocks_the_triggerers_event_loop(
    gf_ledger: Ledger, monkeypatch: pytest.MonkeyPatch, loop_watch: Any
) -> None:
    reservation = _exhaust(gf_ledger)
    monkeypatch.setattr(ledger_registry, "_ledgers", {})  # the triggerer opens its own engine on the ledger
    _release_later(gf_ledger, reservation, 0.4)

    async def triggerer() -> tuple[int, list[Any]]:
        trigger = CarbonBudgetTrigger(
            budget="gpu", period_end=datetime.now(UTC) + timedelta(days=1), min_remaining="50g", recheck_seconds=0.1
        )
        return threading.get_ident(), await _collect(trigger)

    loop_watch.wrap(monkeypatch, Ledger, "__init__")
    loop_watch.wrap(monkeypatch, Budgets, "status")
    with loop_watch:
        loop_thread, [event] = asyncio.run(triggerer())

    assert event.payload["checks"] >= 2
    assert loop_watch.on(loop_thread) == []
    assert {"Ledger.__init__", "Budgets.status"} <= set(loop_watch.off(loop_thread))
