"""Every provider refuses garbage in its payload: NaN, infinite, negative, absurd or non-numeric intensities,
and answers with nothing to plan on (no slots, only nulls). Checked where a slot is built, for forecasts and
actuals alike, against real local servers; trace CSV files are refused naming the line.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from greenflow.errors import InvalidInput, ProviderError
from greenflow.intensity.cache import ForecastCache, InMemorySharedStore
from greenflow.intensity.forecast import Forecast, ForecastPoint
from greenflow.intensity.policy import OutagePolicy, RunNow
from greenflow.intensity.providers.base import ProviderDataError, is_retryable
from greenflow.intensity.providers.carbon_aware_sdk import CarbonAwareSDKProvider
from greenflow.intensity.providers.electricitymaps import ElectricityMapsProvider
from greenflow.intensity.providers.trace import TraceProvider
from greenflow.intensity.providers.ukgrid import UKGridProvider
from greenflow.intensity.providers.watttime import WattTimeProvider

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
HOURS_BACK = NOW - timedelta(hours=3)
# (value, what the error must name)
BAD = [
    pytest.param(math.nan, "NaN", id="nan"),
    pytest.param(math.inf, "infinite", id="inf"),
    pytest.param(-400, "negative", id="negative"),
    pytest.param(1e9, "above", id="absurd"),
    pytest.param("250", "not a number", id="string"),
    pytest.param(True, "not a number", id="bool"),
]


def _ukgrid(values: list[Any], start: datetime) -> Any:
    rows = []
    for i, v in enumerate(values):
        begin = start + timedelta(minutes=30 * i)
        rows.append(
            {
                "from": begin.strftime("%Y-%m-%dT%H:%MZ"),
                "to": (begin + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%MZ"),
                "intensity": {"forecast": v, "actual": v, "index": "moderate"},
            }
        )
    return {"data": rows}


def _em(values: list[Any], start: datetime, key: str) -> Any:
    points = [
        {"datetime": (start + timedelta(hours=i)).strftime("%Y-%m-%dT%H:%M:%SZ"), "carbonIntensity": v}
        for i, v in enumerate(values)
    ]
    return {"zone": "FR", key: points}


def _wt(values: list[Any], start: datetime) -> Any:
    points = [{"point_time": (start + timedelta(minutes=5 * i)).isoformat(), "value": v} for i, v in enumerate(values)]
    return {"data": points, "meta": {"data_point_period_seconds": 300, "units": "lbs_co2_per_mwh"}}


def _sdk_forecast(values: list[Any], start: datetime) -> Any:
    data = [
        {"location": "eastus", "timestamp": (start + timedelta(minutes=5 * i)).isoformat(), "duration": 5, "value": v}
        for i, v in enumerate(values)
    ]
    return [{"location": "eastus", "generatedAt": start.isoformat(), "forecastData": data}]


def _sdk_history(values: list[Any], start: datetime) -> Any:
    return [
        {"location": "eastus", "time": (start + timedelta(hours=i)).isoformat(), "duration": "01:00:00", "rating": v}
        for i, v in enumerate(values)
    ]


# name -> (make provider, forecast route, forecast payload, history route, history payload, region)
Setup = tuple[Callable[..., Any], str, Callable[[list[Any]], Any], str, Callable[[list[Any]], Any], str]
PROVIDERS: dict[str, Setup] = {
    "ukgrid": (
        lambda url, retry, clock: UKGridProvider(base_url=url, retry=retry, clock=clock),
        r"/intensity/[^/]+/fw48h",
        lambda v: _ukgrid(v, NOW),
        r"/intensity/[^/]+/[^/]+",
        lambda v: _ukgrid(v, HOURS_BACK),
        "national",
    ),
    "electricitymaps": (
        lambda url, retry, clock: ElectricityMapsProvider(token="tok", base_url=url, retry=retry, clock=clock),
        "/carbon-intensity/forecast",
        lambda v: _em(v, NOW, "forecast"),
        "/carbon-intensity/history",
        lambda v: _em(v, HOURS_BACK, "history"),
        "FR",
    ),
    "watttime": (
        lambda url, retry, clock: WattTimeProvider(
            username="u", password="p-secret", base_url=url, retry=retry, clock=clock
        ),
        "/v3/forecast",
        lambda v: _wt(v, NOW),
        "/v3/historical",
        lambda v: _wt(v, HOURS_BACK),
        "CAISO_NORTH",
    ),
    "carbon-aware-sdk": (
        lambda url, retry, clock: CarbonAwareSDKProvider(base_url=url, retry=retry, clock=clock),
        "/emissions/forecasts/current",
        lambda v: _sdk_forecast(v, NOW),
        "/emissions/bylocation",
        lambda v: _sdk_history(v, HOURS_BACK),
        "eastus",
    ),
}


@pytest.fixture(params=list(PROVIDERS))
def setup(request, api, reply, retry, clock):
    make, f_route, f_payload, h_route, h_payload, region = PROVIDERS[request.param]
    api.route("/login", reply(200, {"token": "wt-token"}))

    def serve_forecast(values: list[Any]) -> None:
        api.route(f_route, reply(200, f_payload(values)))

    def serve_history(values: list[Any]) -> None:
        api.route(h_route, reply(200, h_payload(values)))

    return make(api.url, retry, clock), region, serve_forecast, serve_history


@pytest.mark.parametrize(("bad", "named"), BAD)
def test_a_bad_forecast_value_refuses_the_whole_answer(setup, bad, named):
    provider, region, serve_forecast, _ = setup
    serve_forecast([250.0, 240.0, bad] + [230.0] * 30)
    with pytest.raises(ProviderDataError) as caught:
        provider.forecast(region, hours=2)
    assert "malformed" in caught.value.message and named in caught.value.message
    assert is_retryable(caught.value)


@pytest.mark.parametrize(("bad", "named"), BAD)
def test_a_bad_actual_is_refused_too(setup, bad, named):
    provider, region, _, serve_history = setup
    serve_history([250.0, bad] + [230.0] * 40)
    with pytest.raises(ProviderDataError, match=named):
        provider.history(region, HOURS_BACK, NOW)


@pytest.mark.parametrize("values", [pytest.param([], id="no-slots"), pytest.param([None] * 40, id="all-null")])
def test_an_answer_with_nothing_to_plan_on_is_malformed(setup, values):
    provider, region, serve_forecast, _ = setup
    serve_forecast(values)
    with pytest.raises(ProviderDataError, match="no intensity"):
        provider.forecast(region, hours=2)


def test_nulls_among_values_stay_missing(setup):
    provider, region, serve_forecast, _ = setup
    serve_forecast([250.0, None] + [230.0] * 40)
    forecast = provider.forecast(region, hours=2)
    assert any(p.value is None for p in forecast.points) and forecast.known_points()


@pytest.mark.parametrize(("on_error", "runs"), [("run", True), ("fail", False)])
def test_the_outage_policy_decides_and_says_malformed(api, reply, retry, clock, on_error, runs):
    api.route(r"/intensity/[^/]+/fw48h", reply(200, _ukgrid([math.nan] * 96, NOW)))
    provider = UKGridProvider(base_url=api.url, retry=retry, clock=clock)
    policy = OutagePolicy(on_provider_error=on_error)  # type: ignore[arg-type]
    cache = ForecastCache(InMemorySharedStore(clock), clock=clock)
    if runs:
        decision = policy.resolve(cache, provider, "national", now=NOW)
        assert isinstance(decision, RunNow) and "malformed" in decision.reason and "NaN" in decision.reason
    else:
        with pytest.raises(ProviderError, match=r"malformed.*on_provider_error=fail"):
            policy.resolve(cache, provider, "national", now=NOW)
    assert cache.last_good(provider, "national") is None  # nothing of the garbage was kept


def test_a_stored_copy_that_fails_todays_checks_is_ignored(api, reply, retry, clock):
    """A shared cache row written by an older greenflow (NaN allowed then) is fetched again, not planned on."""

    class OldStore(InMemorySharedStore):
        def load(self, key: str) -> tuple[Forecast, datetime] | None:
            raise InvalidInput("intensity for the slot starting 2024-05-01T12:00:00Z is NaN")

    api.route(r"/intensity/[^/]+/fw48h", reply(200, _ukgrid([250.0] * 96, NOW)))
    provider = UKGridProvider(base_url=api.url, retry=retry, clock=clock)
    cached = ForecastCache(OldStore(clock), clock=clock).get(provider, "national", start=NOW, hours=2)
    assert cached.source == "provider" and cached.forecast.known_points()


@pytest.mark.parametrize(("text", "named"), [("-400", "negative"), ("inf", "infinite"), ("1e9", "above")])
def test_a_trace_file_with_a_bad_value_is_refused_naming_the_line(tmp_path: Path, text, named):
    trace = tmp_path / "bad.csv"
    trace.write_text(f"timestamp,value\n2024-05-01T00:00Z,200\n2024-05-01T01:00Z,{text}\n2024-05-01T02:00Z,100\n")
    with pytest.raises(InvalidInput, match=rf"line 3.*{named}"):
        TraceProvider(path=trace, region="X", now="2024-05-01T00:00Z")


def test_a_trace_nan_is_missing_as_pandas_writes_it(tmp_path: Path):
    trace = tmp_path / "gaps.csv"
    trace.write_text("timestamp,value\n2024-05-01T00:00Z,200\n2024-05-01T01:00Z,NaN\n2024-05-01T02:00Z,100\n")
    provider = TraceProvider(path=trace, region="X", now="2024-05-01T00:00Z")
    assert [p.value for p in provider.forecast("X", hours=3).points] == [200.0, None, 100.0]


def test_a_slot_cannot_hold_garbage_whatever_builds_it():
    with pytest.raises(InvalidInput, match="NaN"):
        ForecastPoint(NOW, NOW + timedelta(hours=1), math.nan)
    with pytest.raises(InvalidInput, match="NaN"):
        Forecast.from_dict(
            {
                "region": "R",
                "provider": "p",
                "signal": "average",
                "generated_at": NOW.isoformat(),
                "points": [{"start": NOW.isoformat(), "end": (NOW + timedelta(hours=1)).isoformat(), "value": "NaN"}],
            }
        )


def test_a_nan_in_the_provenance_is_dropped_so_the_forecast_stays_storable():
    forecast = Forecast(
        region="R",
        provider="p",
        signal="average",
        generated_at=NOW,
        points=(ForecastPoint(NOW, NOW + timedelta(hours=1), 100.0),),
        meta={"model": {"version": math.nan, "runs": [1.0, math.inf]}, "zone": "FR"},
    )
    assert forecast.meta == {"model": {"version": None, "runs": [1.0, None]}, "zone": "FR"}
    json.dumps(forecast.to_dict(), allow_nan=False)  # strict JSON, as PostgreSQL's JSON column wants
