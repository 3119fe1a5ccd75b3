"""A replayed forecast snapshot is as old as its issue time: older than max_staleness is an outage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from greenflow.intensity.cache import ForecastCache
from greenflow.intensity.policy import OutagePolicy, RetryUntil, RunNow, UseForecast
from greenflow.intensity.providers.trace import TraceProvider
from greenflow.ledger import Identity
from greenflow.lifecycle import Lifecycle
from greenflow.spec import CarbonSpec

# The shipped GB trace has no snapshot between 2023-03-19T12:31Z and 2023-03-21T12:31Z.
GAP = datetime(2023, 3, 20, 19, 31, tzinfo=UTC)  # the latest snapshot is 31 hours old
FRESH = datetime(2023, 3, 21, 14, 0, tzinfo=UTC)  # the latest snapshot is 1.5 hours old


def _resolve(policy: OutagePolicy, now: datetime) -> object:
    provider = TraceProvider(region="GB", now=now)
    return policy.resolve(
        ForecastCache(), provider, "GB", start=now, hours=24, deadline=now + timedelta(hours=6), now=now
    )


def test_a_snapshot_older_than_max_staleness_is_not_planned_on() -> None:
    waited = _resolve(OutagePolicy("wait"), GAP)
    assert isinstance(waited, RetryUntil)  # a later snapshot may come before the latest start
    assert "GB was issued 31:00 before 2023-03-20T19:31:00+00:00 (at 2023-03-19T12:31:00+00:00)" in waited.reason
    assert "older than max_staleness 6:00" in waited.reason
    assert isinstance(_resolve(OutagePolicy("run"), GAP), RunNow)


def test_a_recent_snapshot_or_a_generous_max_staleness_plans_as_before() -> None:
    assert isinstance(_resolve(OutagePolicy("wait"), FRESH), UseForecast)
    allowed = _resolve(OutagePolicy("wait", max_staleness=timedelta(hours=36)), GAP)
    assert isinstance(allowed, UseForecast) and not allowed.stale


@pytest.mark.parametrize(("now", "action"), [(GAP, "retry"), (FRESH, "defer")])
def test_a_task_on_the_trace_waits_out_a_stale_snapshot(now: datetime, action: str) -> None:
    spec = CarbonSpec.build(region="GB", provider="trace", expected_duration="1h", max_delay="12h")
    lifecycle = Lifecycle(
        spec, Identity("cli", "stale", "r", "t"), cache=ForecastCache(), provider=TraceProvider(region="GB", now=now)
    )
    decision = lifecycle.plan()
    assert decision.action in ({action} if action == "retry" else {"defer", "run_now"})
    if action == "retry":
        assert "older than max_staleness" in decision.reason
