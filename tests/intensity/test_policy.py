"""The outage policy: every branch returns a decision with a reason, or raises under "fail"."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from greenflow.errors import InvalidInput, ProviderError
from greenflow.intensity.cache import CachedForecast, ForecastCache
from greenflow.intensity.forecast import Forecast, ForecastPoint
from greenflow.intensity.policy import OutagePolicy, RetryUntil, RunNow, UseForecast
from greenflow.intensity.providers.base import ProviderAuthError, ProviderUnavailable
from greenflow.intensity.providers.electricitymaps import ElectricityMapsProvider
from greenflow.intensity.providers.ukgrid import UKGridProvider

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
OUTAGE = ProviderUnavailable("ukgrid unreachable at http://127.0.0.1/x: HTTP 503", fix="check the network")


def cached(fetched_at: datetime, hours: int = 48) -> CachedForecast:
    points = tuple(
        ForecastPoint(fetched_at + timedelta(minutes=30 * i), fetched_at + timedelta(minutes=30 * (i + 1)), 200.0)
        for i in range(hours * 2)
    )
    forecast = Forecast(region="national", provider="ukgrid", signal="average", generated_at=fetched_at, points=points)
    return CachedForecast("ukgrid|national|average", forecast, fetched_at, "memory")


def test_a_recent_enough_forecast_is_used_and_flagged_stale():
    decision = OutagePolicy("run", max_staleness=timedelta(hours=3)).decide(
        OUTAGE, cached(NOW - timedelta(hours=2)), now=NOW
    )
    assert isinstance(decision, UseForecast)
    assert decision.stale and decision.age == timedelta(hours=2)
    assert "HTTP 503" in decision.reason and "2:00 ago" in decision.reason
    assert decision.to_dict()["stale"] is True and decision.to_dict()["forecast_hash"]


def test_too_old_a_forecast_under_run_runs_now_and_says_why():
    decision = OutagePolicy("run", max_staleness=timedelta(hours=1)).decide(
        OUTAGE, cached(NOW - timedelta(hours=2)), now=NOW
    )
    assert isinstance(decision, RunNow)
    assert "2:00 old" in decision.reason and "on_provider_error=run" in decision.reason
    assert "HTTP 503" in decision.error


def test_a_forecast_that_no_longer_covers_now_is_not_used():
    old = cached(NOW - timedelta(hours=5), hours=4)
    decision = OutagePolicy("run", max_staleness=timedelta(hours=12)).decide(OUTAGE, old, now=NOW)
    assert isinstance(decision, RunNow) and "no longer covers now" in decision.reason


def test_wait_retries_until_the_deadline():
    policy = OutagePolicy("wait", max_staleness=timedelta(0), retry_interval=timedelta(minutes=5))
    deadline = NOW + timedelta(hours=2)
    decision = policy.decide(OUTAGE, None, now=NOW, deadline=deadline)
    assert isinstance(decision, RetryUntil)
    assert decision.retry_at == NOW + timedelta(minutes=5) and decision.deadline == deadline
    assert "retrying until" in decision.reason and "no earlier forecast" in decision.reason
    near = policy.decide(OUTAGE, None, now=deadline - timedelta(minutes=1), deadline=deadline)
    assert isinstance(near, RetryUntil) and near.retry_at == deadline


def test_wait_runs_once_the_deadline_has_come():
    decision = OutagePolicy("wait").decide(OUTAGE, None, now=NOW, deadline=NOW)
    assert isinstance(decision, RunNow) and "deadline to start has come" in decision.reason


def test_wait_does_not_wait_for_an_auth_error():
    denied = ProviderAuthError("watttime: the account's plan does not cover region 'PJM_DC'", fix="upgrade")
    decision = OutagePolicy("wait").decide(denied, None, now=NOW, deadline=NOW + timedelta(hours=5))
    assert isinstance(decision, RunNow) and "waiting cannot fix" in decision.reason


def test_fail_raises_with_the_cause():
    with pytest.raises(ProviderError, match="on_provider_error=fail") as caught:
        OutagePolicy("fail").decide(OUTAGE, None, now=NOW)
    assert caught.value.__cause__ is OUTAGE


def test_fail_still_uses_a_fresh_enough_forecast():
    decision = OutagePolicy("fail").decide(OUTAGE, cached(NOW - timedelta(minutes=40)), now=NOW)
    assert isinstance(decision, UseForecast) and decision.stale


@pytest.mark.parametrize(
    "kwargs",
    [
        {"on_provider_error": "ignore"},
        {"max_staleness": timedelta(hours=-1)},
        {"retry_interval": timedelta(0)},
    ],
)
def test_bad_policy_settings_are_bad_input(kwargs):
    with pytest.raises(InvalidInput):
        OutagePolicy(**kwargs)


def test_every_decision_has_a_reason_for_the_ledger():
    decisions = [
        OutagePolicy("run").decide(OUTAGE, None, now=NOW),
        OutagePolicy("wait").decide(OUTAGE, None, now=NOW, deadline=NOW + timedelta(hours=1)),
        OutagePolicy("wait").decide(OUTAGE, None, now=NOW, deadline=None),
        OutagePolicy("run").decide(OUTAGE, cached(NOW), now=NOW),
    ]
    for decision in decisions:
        record = decision.to_dict()
        assert record["kind"] in ("run_now", "retry", "forecast") and record["reason"]


def test_resolve_end_to_end_through_a_real_outage(api, reply, retry, clock):
    entries = [
        {
            "from": (NOW + timedelta(minutes=30 * i)).strftime("%Y-%m-%dT%H:%MZ"),
            "to": (NOW + timedelta(minutes=30 * (i + 1))).strftime("%Y-%m-%dT%H:%MZ"),
            "intensity": {"forecast": 120, "index": "low"},
        }
        for i in range(96)
    ]
    api.route(r"/intensity/.+/fw48h", reply(200, {"data": entries}), reply(503))
    ukgrid = UKGridProvider(base_url=api.url, retry=retry, clock=clock)
    cache = ForecastCache(clock=clock)
    policy = OutagePolicy("run", max_staleness=timedelta(hours=2))

    fresh = policy.resolve(cache, ukgrid, "national", now=clock())
    assert isinstance(fresh, UseForecast) and not fresh.stale

    clock.advance(timedelta(minutes=45))  # past the 30-minute TTL; the API is now down
    stale = policy.resolve(cache, ukgrid, "national", now=clock())
    assert isinstance(stale, UseForecast) and stale.stale and stale.age == timedelta(minutes=45)

    clock.advance(timedelta(hours=2))
    gone = policy.resolve(cache, ukgrid, "national", now=clock())
    assert isinstance(gone, RunNow) and "unreachable" in gone.reason


def test_bad_input_is_not_treated_as_an_outage(api, reply, retry, clock):
    api.route("/carbon-intensity/forecast", reply(404, {"message": "Zone 'XX' does not exist."}))
    em = ElectricityMapsProvider(token="t", base_url=api.url, retry=retry, clock=clock)
    with pytest.raises(InvalidInput, match="does not know zone"):
        OutagePolicy("run").resolve(ForecastCache(clock=clock), em, "XX")
