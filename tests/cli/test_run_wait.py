"""How ``greenflow run`` sleeps through a :class:`~greenflow.steps.Wait`: re-plans at the forecast refresh, retries
an outage through ``Lifecycle.advance``. In-process, on a fake clock: the waits take no real time."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from greenflow.cli import run as run_cli
from greenflow.lifecycle import Decision
from greenflow.replanning import MIN_REFRESH_WALL, refresh_period
from greenflow.steps import Run, Step, Wait

T0 = datetime(2024, 5, 1, tzinfo=UTC)


class Clock:
    """The wall clock ``greenflow run`` reads, moved on by its sleeps."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclasses.dataclass
class Provider:
    refresh_interval: timedelta


class FakeLifecycle:
    """Records refreshes and advances; ``refreshed`` replaces the held plan at a given refresh."""

    def __init__(self, clock: Clock, refresh: timedelta, refreshed: dict[int, Decision] | None = None) -> None:
        self.provider = Provider(refresh)
        self.replay_speed: float | None = None
        self.clock = clock
        self.refreshes: list[datetime] = []
        self.advanced: list[Decision] = []
        self.refreshed = refreshed or {}

    def refresh(self, decision: Decision) -> Decision:
        self.refreshes.append(self.clock.now)
        return self.refreshed.get(len(self.refreshes), decision)

    def advance(self, decision: Decision) -> Step:
        self.advanced.append(decision)
        if decision.action == "retry":  # the provider is back: a plan for now
            return Run(dataclasses.replace(decision, action="run_now", reason="forecast back"))
        return Run(decision) if decision.wake_at <= self.clock.now else Wait(decision, decision.wake_at)


def _decision(start: timedelta, action: str = "defer") -> Decision:
    return Decision(
        requested_at=T0,
        start_at=T0 + start,
        latest_start=T0 + timedelta(hours=6),
        wake_at=T0 + start,
        region="GB",
        action=action,  # type: ignore[arg-type]
        reason="test",
    )


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(run_cli, "utcnow", fake)
    monkeypatch.setattr(run_cli.time, "sleep", fake.sleep)
    return fake


def _wait(lifecycle: FakeLifecycle, decision: Decision) -> Step:
    return run_cli._wait(cast(Any, lifecycle), Wait(decision, decision.wake_at), quiet=True)


def test_a_planned_wait_re_plans_at_each_forecast_refresh_and_runs_at_its_start(clock: Clock) -> None:
    lifecycle = FakeLifecycle(clock, refresh=timedelta(minutes=30))
    step = _wait(lifecycle, _decision(timedelta(hours=2)))
    assert isinstance(step, Run) and step.decision.start_at == T0 + timedelta(hours=2)
    assert lifecycle.refreshes == [T0 + timedelta(minutes=30 * n) for n in (1, 2, 3)]
    assert clock.now == T0 + timedelta(hours=2)  # woke at the start, not a refresh later


def test_a_greener_sooner_window_found_at_a_refresh_starts_the_command_sooner(clock: Clock) -> None:
    sooner = _decision(timedelta(minutes=70))
    lifecycle = FakeLifecycle(clock, refresh=timedelta(minutes=30), refreshed={2: sooner})
    step = _wait(lifecycle, _decision(timedelta(hours=5)))
    assert isinstance(step, Run) and step.decision is sooner
    assert clock.now == T0 + timedelta(minutes=70)


def test_an_outage_retry_asks_again_at_its_time_through_advance_without_refreshing(clock: Clock) -> None:
    lifecycle = FakeLifecycle(clock, refresh=timedelta(minutes=1))
    retry = _decision(timedelta(minutes=5), action="retry")
    step = _wait(lifecycle, retry)
    assert isinstance(step, Run) and step.decision.reason == "forecast back"
    assert lifecycle.refreshes == [] and lifecycle.advanced == [retry]
    assert clock.now == T0 + timedelta(minutes=5)


def test_a_provider_without_a_cadence_re_plans_every_30_minutes_of_a_replay_divided_by_its_speed() -> None:
    lifecycle = FakeLifecycle(Clock(), refresh=timedelta(0))
    assert refresh_period(cast(Any, lifecycle)) == timedelta(minutes=30)
    lifecycle.replay_speed = 60.0
    assert refresh_period(cast(Any, lifecycle)) == timedelta(seconds=30)
    lifecycle.replay_speed = 1e9
    assert refresh_period(cast(Any, lifecycle)) == MIN_REFRESH_WALL
