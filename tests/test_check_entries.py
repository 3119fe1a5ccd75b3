"""The entries of gates and sensors (greenflow.check_entries): what they did, in one clock, never a plan's wait.

The lifecycle runs on the shipped Spanish trace replayed from midnight (its clock moved by the test, as a
trigger or a scheduled state would): the night is dirty, the middle of the day much greener.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from greenflow.check_entries import record_check
from greenflow.intensity.cache import ForecastCache
from greenflow.intensity.providers.trace import TraceProvider
from greenflow.ledger import Identity, Ledger
from greenflow.lifecycle import Lifecycle
from greenflow.spec import CarbonSpec

MIDNIGHT = datetime(2022, 6, 1, tzinfo=UTC)
NOT_METERED = "not metered: a check runs no work"


@pytest.fixture
def ledger(sqlite_url: str) -> Ledger:
    return Ledger(sqlite_url)


@pytest.fixture
def provider() -> TraceProvider:
    return TraceProvider(region="ES", now=MIDNIGHT)


@pytest.fixture
def lifecycle(ledger: Ledger, provider: TraceProvider) -> Lifecycle:
    spec = CarbonSpec.build(region="ES", provider="trace", expected_duration="2h", max_delay="14h")
    identity = Identity("airflow", "validate", "run-1", "gate")
    return Lifecycle(spec, identity, ledger=ledger, cache=ForecastCache(), provider=provider)


def test_a_check_that_acts_at_once_records_no_wait_whatever_its_plan_said(lifecycle: Lifecycle) -> None:
    """Issue 15: a gate branched at 00:00 on a plan for noon; its entry said it waited 12 h until noon."""
    decision = lifecycle.plan()
    assert decision.deferred and decision.start_at >= MIDNIGHT + timedelta(hours=6)  # the plan: wait for the sun

    entry = record_check("degraded", not_metered=NOT_METERED, lifecycle=lifecycle, decision=decision, at_once=True)
    assert entry.decision == "degraded" and entry.deferred_seconds == 0
    assert entry.requested_at == entry.planned_start == entry.actual_start == MIDNIGHT
    assert datetime.fromisoformat(entry.extra["plan"]["start"]) == decision.start_at  # the plan it judged by, kept
    assert "acted at once" in entry.extra["decision_reason"]
    assert entry.extra["replay"]["note"]  # planned on a replayed trace: its times are the trace's
    assert entry.forecast_hash and entry.region == "ES" and entry.energy_kwh is None
    assert entry.measurement_notes == {"reason": NOT_METERED}


def test_a_check_that_waited_is_deferred_and_starts_at_its_planned_start(
    lifecycle: Lifecycle, provider: TraceProvider
) -> None:
    decision = lifecycle.plan()
    # The replay runs on past the window while the orchestrator wakes the check: that drift is not a wait.
    provider.set_now(decision.start_at + timedelta(hours=2))
    entry = record_check(not_metered=NOT_METERED, lifecycle=lifecycle, decision=decision)
    assert entry.decision == "deferred"
    assert entry.actual_start == entry.planned_start == decision.start_at <= decision.latest_start
    assert entry.deferred_seconds == (decision.start_at - MIDNIGHT).total_seconds()


def test_a_check_that_let_nothing_through_has_no_start(lifecycle: Lifecycle) -> None:
    decision = lifecycle.plan()
    entry = record_check(
        "skipped_budget", not_metered=NOT_METERED, lifecycle=lifecycle, decision=decision, at_once=True
    )
    assert entry.actual_start is None and entry.deferred_seconds == 0


def test_a_check_without_a_plan_records_the_wall_clock_and_its_real_wait(ledger: Ledger) -> None:
    identity = Identity("airflow", "train", "run-1", "budget_sensor")
    asked = datetime.now(UTC) - timedelta(minutes=5)  # a sensor resumed after its trigger fired
    entry = record_check(
        "deferred", not_metered=NOT_METERED, ledger=ledger, identity=identity, requested_at=asked, budget="gpu"
    )
    assert entry.requested_at == asked and entry.planned_start is None
    assert entry.actual_start is not None and entry.actual_start > asked
    assert entry.deferred_seconds == pytest.approx((entry.actual_start - asked).total_seconds())
    assert entry.budget == "gpu" and "replay" not in entry.extra

    closed = Identity("airflow", "train", "run-2", "budget_sensor")
    entry = record_check("skipped_budget", not_metered=NOT_METERED, ledger=ledger, identity=closed, error="spent")
    assert entry.actual_start is None and entry.deferred_seconds == 0 and entry.error == "spent"


@pytest.mark.parametrize(
    ("outcome", "message"),
    [("failed", "not a check's"), ("deferred", "did not wait cannot be recorded as deferred")],
)
def test_a_check_cannot_claim_what_it_did_not_do(lifecycle: Lifecycle, outcome: str, message: str) -> None:
    decision = lifecycle.plan()
    with pytest.raises(ValueError, match=message):
        record_check(outcome, not_metered=NOT_METERED, lifecycle=lifecycle, decision=decision, at_once=True)  # type: ignore[arg-type]
    assert lifecycle.ledger.count() == 0
