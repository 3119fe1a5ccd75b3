"""carbon-aware-sdk against a local server speaking the Carbon Aware SDK Web API's documented shapes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from greenflow.errors import ConfigError, InvalidInput, ProviderError
from greenflow.intensity.providers import get_provider
from greenflow.intensity.providers.carbon_aware_sdk import CarbonAwareSDKProvider

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def forecast_payload(start: datetime, values: list[float | None], location: str = "eastus") -> list[dict]:
    data = [
        {
            "location": location,
            "timestamp": (start + timedelta(minutes=5 * i)).isoformat(),
            "duration": 5,
            "value": v,
        }
        for i, v in enumerate(values)
    ]
    return [
        {
            "location": location,
            "dataStartAt": start.isoformat(),
            "dataEndAt": (start + timedelta(minutes=5 * len(values))).isoformat(),
            "windowSize": 30,
            "generatedAt": (start - timedelta(minutes=3)).isoformat(),
            "optimalDataPoints": [{"location": location, "timestamp": start.isoformat(), "duration": 30, "value": 1}],
            "forecastData": data,
        }
    ]


@pytest.fixture
def sdk(api, retry, clock):
    return CarbonAwareSDKProvider(base_url=api.url, retry=retry, clock=clock)


def test_forecast_asks_for_the_window_and_reads_forecast_data(api, reply, sdk):
    api.route("/emissions/forecasts/current", reply(200, forecast_payload(NOW, [400.0, None, 380.5] + [300.0] * 21)))
    forecast = sdk.forecast("eastus", hours=2)
    assert api.requests[0].query == {
        "location": "eastus",
        "dataStartAt": "2024-05-01T12:00:00Z",
        "dataEndAt": "2024-05-01T14:00:00Z",
        "windowSize": "30",
    }
    assert [p.value for p in forecast.points[:3]] == [400.0, None, 380.5]
    assert forecast.points[0].duration == timedelta(minutes=5) and len(forecast.points) == 24
    assert forecast.generated_at == NOW - timedelta(minutes=3)
    assert forecast.signal == "marginal"


def test_400_outside_the_forecast_falls_back_to_what_the_sdk_has(api, reply, sdk):
    def answer(seen):
        if "dataEndAt" in seen.query:
            return reply(400, {"title": "dataEndAt is outside the forecast"})
        return reply(200, forecast_payload(NOW, [250.0] * 12))

    api.route("/emissions/forecasts/current", answer)
    forecast = sdk.forecast("eastus", hours=48)
    assert len(api.requests) == 2 and len(forecast.points) == 12


def test_history_uses_time_and_totime_not_starttime(api, reply, sdk):
    rows = [
        {
            "location": "eastus",
            "time": (NOW + timedelta(minutes=5 * i)).isoformat(),
            "rating": 410.0 + i,
            "duration": "00:05:00",
        }
        for i in range(6)
    ]
    api.route("/emissions/bylocation", reply(200, rows))
    history = sdk.history("eastus", NOW, NOW + timedelta(minutes=30))
    query = api.requests[0].query
    assert query == {"location": "eastus", "time": "2024-05-01T12:00:00Z", "toTime": "2024-05-01T12:30:00Z"}
    assert [p.value for p in history.points] == [410.0, 411.0, 412.0, 413.0, 414.0, 415.0]
    assert history.points[0].duration == timedelta(minutes=5)


def test_server_errors_are_retried(api, reply, sdk):
    api.route(
        "/emissions/forecasts/current",
        reply(500, {"title": "boom"}),
        reply(200, forecast_payload(NOW, [1.0] * 24)),
    )
    assert len(sdk.forecast("eastus", hours=2).points) == 24
    assert len(api.requests) == 2


def test_malformed_payload_is_a_provider_error(api, reply, sdk):
    api.route("/emissions/forecasts/current", reply(200, {"not": "a list"}))
    with pytest.raises(ProviderError, match="malformed data"):
        sdk.forecast("eastus")


def test_unknown_location_is_bad_input(api, reply, sdk):
    api.route("/emissions/bylocation", reply(404, {"title": "Location nowhere not found"}))
    with pytest.raises(InvalidInput, match="nowhere"):
        sdk.history("nowhere", NOW - timedelta(hours=1), NOW)


def test_self_hosted_sdk_needs_a_url():
    with pytest.raises(ConfigError, match="GREENFLOW_CARBON_AWARE_SDK_URL"):
        get_provider("carbon-aware-sdk")


def test_signal_is_declared_by_the_user(api):
    assert get_provider("carbon-aware-sdk", base_url=api.url, signal="average").signal == "average"
    with pytest.raises(InvalidInput, match="signal"):
        get_provider("carbon-aware-sdk", base_url=api.url, signal="green")
