"""The one state machine every entry point drives: ``Lifecycle.advance`` -> Wait | Run | Skip | Fail.

Real data and a real ledger: the shipped Spanish trace (a replay, so its clock is set by the test), the
planner, the budgets; the outage cases use a provider pointed at a closed port.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from greenflow.clock import utcnow
from greenflow.intensity.cache import ForecastCache
from greenflow.intensity.providers.http import RetrySettings
from greenflow.intensity.providers.trace import TraceProvider
from greenflow.intensity.providers.ukgrid import UKGridProvider
from greenflow.ledger import Budget, Identity, Ledger
from greenflow.lifecycle import Lifecycle
from greenflow.metering.meter import Meter
from greenflow.spec import CarbonSpec
from greenflow.steps import Fail, Run, Skip, Wait
from greenflow.testing.fake_nvml import FakeGpu, FakeNvml

MIDNIGHT = datetime(2022, 6, 1, 0, 0, tzinfo=UTC)
# A replay an hour per second: a wait for a window hours ahead lasts seconds of wall time, so the test sees it.
SPEED = 3600.0


@pytest.fixture
def ledger(sqlite_url: str) -> Ledger:
    return Ledger(sqlite_url)


@pytest.fixture
def meter_factory(tmp_path: Path):  # type: ignore[no-untyped-def]
    fake = FakeNvml([FakeGpu(uuid="GPU-11111111-2222-3333-4444-555555555555", power_w=300.0)])
    return lambda: Meter(nvml=fake.backend(), rapl_root=tmp_path / "no-rapl", sample_interval=0.02, environ={})


def _replay(ledger, meter_factory, provider, **spec):  # type: ignore[no-untyped-def]
    options = {"region": "ES", "provider": "trace", "expected_duration": "2h", "max_delay": "14h", **spec}
    return Lifecycle(
        CarbonSpec.build(**options),
        Identity("cli", "train_llm", "run-1", "train", 1),
        ledger=ledger,
        cache=ForecastCache(),
        provider=provider,
        meter_factory=meter_factory,
    )


def _outage(ledger, meter_factory, policy: str, **spec):  # type: ignore[no-untyped-def]
    down = UKGridProvider(
        base_url="http://127.0.0.1:9", retry=RetrySettings(timeout=0.2, total_time=0.5, max_attempts=2, backoff=0.01)
    )
    options = {"region": "national", "expected_duration": "1h", "max_delay": "4h", "max_staleness": "0s", **spec}
    return Lifecycle(
        CarbonSpec.build(on_provider_error=policy, **options),
        Identity("cli", "w", "r", "t"),
        ledger=ledger,
        cache=ForecastCache(),
        provider=down,
        meter_factory=meter_factory,
    )


def test_a_green_window_ahead_is_a_wait_until_its_wall_time_then_a_run(ledger, meter_factory) -> None:
    provider = TraceProvider(region="ES", now=MIDNIGHT, speed=SPEED)
    lifecycle = _replay(ledger, meter_factory, provider)
    step = lifecycle.advance()
    assert isinstance(step, Wait) and not step.for_forecast
    assert step.until == step.decision.wake_at and step.decision.start_at > MIDNIGHT + timedelta(hours=1)
    assert ledger.entries() == []  # waiting writes nothing

    # Resumed before its time (a wake-up a hair early): still a wait; told it waited: a run.
    assert isinstance(lifecycle.advance(step.decision), Wait)
    resumed = lifecycle.advance(step.decision, waited=True)
    assert isinstance(resumed, Run) and resumed.decision.start_at == step.decision.start_at
    entry = lifecycle.run(resumed.decision, lambda: None).entry
    assert entry.decision == "deferred" and entry.planned_start == step.decision.start_at


def test_nothing_to_plan_is_a_run_at_once(ledger, meter_factory) -> None:
    lifecycle = _replay(ledger, meter_factory, TraceProvider(region="ES", now=MIDNIGHT), max_delay="0h")
    step = lifecycle.advance()
    assert isinstance(step, Run) and step.decision.action == "run_now"


def test_a_budget_that_cannot_cover_the_estimate_is_a_skip_with_its_entry(ledger, meter_factory) -> None:
    ledger.budgets.set(Budget.parse("gpu", "5g", "month"))
    lifecycle = _replay(ledger, meter_factory, TraceProvider(region="ES", now=MIDNIGHT), budget="gpu", estimate="10g")
    step = lifecycle.advance()
    assert isinstance(step, Skip)
    assert step.entry.decision == "skipped_budget" and [e.entry_id for e in ledger.entries()] == [step.entry.entry_id]
    assert "gpu" in step.refusal.message


def test_a_budget_that_fits_is_reserved_before_the_wait(ledger, meter_factory) -> None:
    ledger.budgets.set(Budget.parse("gpu", "1kg", "month"))
    provider = TraceProvider(region="ES", now=MIDNIGHT, speed=SPEED)
    lifecycle = _replay(ledger, meter_factory, provider, budget="gpu", estimate="10g")
    step = lifecycle.advance()
    assert isinstance(step, Wait) and step.decision.reservation_id is not None
    # Resuming keeps the one reservation (no second hold on the budget).
    assert lifecycle.advance(step.decision, waited=True).decision.reservation_id == step.decision.reservation_id


def test_no_forecast_under_fail_is_a_fail_step_with_the_failed_entry(ledger, meter_factory) -> None:
    step = _outage(ledger, meter_factory, "fail").advance()
    assert isinstance(step, Fail)
    assert step.entry is not None and step.entry.decision == "failed"
    assert [e.entry_id for e in ledger.entries()] == [step.entry.entry_id]


def test_no_forecast_under_wait_is_a_wait_for_the_forecast_then_runs_by_the_latest_start(ledger, meter_factory) -> None:
    lifecycle = _outage(ledger, meter_factory, "wait", max_delay="0s")
    step = lifecycle.advance()
    # With no room to wait (max_delay 0), the latest start is now: the policy runs at once, recorded.
    assert isinstance(step, Run) and step.decision.action == "run_now"

    waiting = _outage(ledger, meter_factory, "wait").advance()
    assert isinstance(waiting, Wait) and waiting.for_forecast and waiting.until > utcnow()


def test_a_deadline_that_passed_since_declaration_runs_at_once_and_says_so(ledger, meter_factory) -> None:
    provider = TraceProvider(region="ES", now=MIDNIGHT)
    lifecycle = _replay(ledger, meter_factory, provider, max_delay=None, deadline="2022-06-01T06:00Z")
    provider.set_now(MIDNIGHT + timedelta(hours=7))  # the task is only started after its deadline
    step = lifecycle.advance()
    assert isinstance(step, Run) and "has passed" in step.decision.reason
    entry = lifecycle.run(step.decision, lambda: None).entry
    assert entry.decision == "ran_now"


def test_a_retry_keeps_the_first_requests_deadline(ledger, meter_factory) -> None:
    provider = TraceProvider(region="ES", now=MIDNIGHT)
    lifecycle = _replay(ledger, meter_factory, provider, max_delay="2h")
    first = lifecycle.advance()
    provider.set_now(MIDNIGHT + timedelta(hours=3))  # the first attempt failed after its latest start
    retry = lifecycle.advance(retry_of=first.decision)
    assert isinstance(retry, Run)
    assert retry.decision.latest_start == first.decision.latest_start
    assert retry.decision.retry_requested_at == MIDNIGHT + timedelta(hours=3)


def test_a_refresh_never_moves_the_start_later_nor_fails_the_wait(ledger, meter_factory) -> None:
    provider = TraceProvider(region="ES", now=MIDNIGHT, speed=SPEED)
    lifecycle = _replay(ledger, meter_factory, provider)
    held = lifecycle.advance()
    assert isinstance(held, Wait)
    fresh = lifecycle.refresh(held.decision)
    assert fresh.start_at <= held.decision.start_at and fresh.latest_start == held.decision.latest_start

    broken = _outage(ledger, meter_factory, "fail")
    assert broken.refresh(held.decision) is held.decision  # a failing refresh keeps the plan, writes nothing
    assert ledger.entries() == []
