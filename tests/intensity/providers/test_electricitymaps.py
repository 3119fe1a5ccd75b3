"""electricitymaps against a local server speaking Electricity Maps API v3's documented shapes."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from greenflow.errors import ConfigError, GreenflowError, InvalidInput, ProviderError
from greenflow.intensity.providers import ProviderAuthError, ProviderUnavailable, get_provider
from greenflow.intensity.providers.electricitymaps import ElectricityMapsProvider
from greenflow.intensity.providers.http import RetrySettings

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
TOKEN = "em-token-7f3a9c-very-secret"


def hourly(start: datetime, values: list[float | None], **extra) -> list[dict]:
    return [
        {
            "datetime": (start + timedelta(hours=i)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "carbonIntensity": v,
            **extra,
        }
        for i, v in enumerate(values)
    ]


def forecast_body(zone: str = "FR", values: list[float | None] | None = None) -> dict:
    values = values if values is not None else [100.0 + i for i in range(72)]
    return {"zone": zone, "forecast": hourly(NOW, values), "updatedAt": "2024-05-01T11:53:20.794Z"}


@pytest.fixture
def em(api, retry, clock):
    return ElectricityMapsProvider(token=TOKEN, base_url=api.url, retry=retry, clock=clock)


def test_forecast_sends_token_zone_and_fallback_protection(api, reply, em):
    api.route("/carbon-intensity/forecast", reply(200, forecast_body()))
    forecast = em.forecast("fr", hours=24)
    (seen,) = api.requests
    assert seen.headers["auth-token"] == TOKEN
    assert seen.query == {
        "zone": "FR",
        "emissionFactorType": "lifecycle",
        "shouldUseFallbackCallerLookup": "false",
    }
    assert len(forecast.points) == 24
    assert forecast.points[0].start == NOW and forecast.points[0].duration == timedelta(hours=1)
    assert forecast.points[0].value == 100.0
    assert forecast.generated_at == datetime(2024, 5, 1, 11, 53, 20, 794000, tzinfo=UTC)
    assert forecast.signal == "average" and forecast.emission_factor == "lifecycle"


def test_forecast_by_coordinates_sends_lat_lon_not_zone(api, reply, em):
    api.route("/carbon-intensity/forecast", reply(200, forecast_body(zone="FR")))
    forecast = em.forecast("48.85, 2.35", hours=2)
    (seen,) = api.requests
    assert seen.query["lat"] == "48.85" and seen.query["lon"] == "2.35" and "zone" not in seen.query
    assert seen.query["shouldUseFallbackCallerLookup"] == "false"
    assert forecast.meta["zone"] == "FR" and forecast.region == "48.85,2.35"


def test_an_answer_for_another_zone_is_refused(api, reply, em):
    # What a silent fallback to the caller's location would look like.
    api.route("/carbon-intensity/forecast", reply(200, forecast_body(zone="DE")))
    with pytest.raises(ProviderError, match="answered for zone 'DE' when asked for 'FR'"):
        em.forecast("FR")


def test_empty_zone_is_refused_before_any_request(api, em):
    with pytest.raises(InvalidInput, match="caller's location"):
        em.forecast("  ")
    assert api.requests == []


@pytest.mark.parametrize("bad", ["France!", "91,0", "12,200", "f"])
def test_bad_zones_and_coordinates_are_refused(em, bad):
    with pytest.raises(InvalidInput):
        em.validate_region(bad)


def test_direct_emission_factor_is_asked_for_and_recorded(api, reply, retry, clock):
    provider = ElectricityMapsProvider(
        token=TOKEN, base_url=api.url, retry=retry, clock=clock, emission_factor="direct"
    )
    body = forecast_body()
    body["forecast"] = hourly(NOW, [50.0, 51.0], emissionFactorType="direct")
    api.route("/carbon-intensity/forecast", reply(200, {**body, "emissionFactorType": "direct"}))
    forecast = provider.forecast("FR", hours=2)
    assert api.requests[0].query["emissionFactorType"] == "direct"
    assert forecast.emission_factor == "direct"
    assert provider.cache_scope != ElectricityMapsProvider(token=TOKEN).cache_scope


def test_latest(api, reply, em):
    body = {
        "zone": "FR",
        "carbonIntensity": 103,
        "datetime": "2023-01-23T17:00:00.000Z",
        "updatedAt": "2023-01-23T16:53:20.794Z",
        "emissionFactorType": "lifecycle",
        "isEstimated": True,
        "estimationMethod": "TIME_SLICER_AVERAGE",
    }
    api.route("/carbon-intensity/latest", reply(200, body))
    point = em.latest("FR")
    assert point.value == 103.0 and point.estimated
    assert point.start == datetime(2023, 1, 23, 17, tzinfo=UTC)
    assert api.requests[0].query["shouldUseFallbackCallerLookup"] == "false"


def test_history_keeps_nulls_and_estimation_flags(api, reply, em):
    start = NOW - timedelta(hours=24)
    history = hourly(start, [300.0 + i for i in range(24)], emissionFactorType="lifecycle", isEstimated=False)
    history[5]["carbonIntensity"] = None
    history[6]["isEstimated"] = True
    api.route("/carbon-intensity/history", reply(200, {"zone": "FR", "history": history}))
    result = em.history("FR", start, NOW)
    assert len(result.points) == 24
    assert result.points[5].value is None
    assert result.points[6].estimated and not result.points[7].estimated
    assert result.meta["kind"] == "actual"


def test_401_is_an_auth_error_that_hides_the_token(api, reply, em):
    api.route("/carbon-intensity/forecast", reply(401, {"message": f"Invalid token {TOKEN}"}))
    with pytest.raises(ProviderAuthError) as caught:
        em.forecast("FR")
    assert "rejected the token" in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_403_says_the_plan_does_not_cover_it(api, reply, em):
    api.route("/carbon-intensity/forecast", reply(403, {"message": "Forbidden"}))
    with pytest.raises(ProviderAuthError, match="paid Electricity Maps plan"):
        em.forecast("FR")


def test_404_unknown_zone_is_bad_input_naming_the_zone(api, reply, em):
    api.route("/carbon-intensity/forecast", reply(404, {"status": "error", "message": "Zone 'XX' does not exist."}))
    with pytest.raises(InvalidInput, match="does not know zone 'XX'"):
        em.forecast("XX")


def test_missing_token_is_a_config_error_at_first_use_not_at_construction(api, monkeypatch):
    provider = get_provider("electricitymaps", base_url=api.url)
    assert provider.validate_region("FR") == "FR"  # usable for validation without a token
    with pytest.raises(ConfigError, match="GREENFLOW_ELECTRICITYMAPS_TOKEN"):
        provider.forecast("FR")
    assert api.requests == []


def test_token_and_url_come_from_the_environment(api, reply, monkeypatch):
    monkeypatch.setenv("GREENFLOW_ELECTRICITYMAPS_TOKEN", TOKEN)
    monkeypatch.setenv("GREENFLOW_ELECTRICITYMAPS_URL", api.url)
    api.route("/carbon-intensity/forecast", reply(200, forecast_body()))
    get_provider("electricitymaps").forecast("FR", start=NOW, hours=1)
    assert api.requests[0].headers["auth-token"] == TOKEN


def test_token_never_reaches_logs_errors_or_reprs(api, reply, em, caplog):
    caplog.set_level(logging.DEBUG)
    api.route("/carbon-intensity/forecast", reply(503, {"message": TOKEN}), reply(200, forecast_body()))
    api.route("/carbon-intensity/latest", reply(200, body=f"not json {TOKEN}"))
    api.route("/carbon-intensity/history", reply(401, {"error": f"bad token {TOKEN}"}))
    em.forecast("FR")
    errors: list[GreenflowError] = []
    for call in (lambda: em.latest("FR"), lambda: em.history("FR", NOW - timedelta(hours=1), NOW)):
        with pytest.raises(GreenflowError) as caught:
            call()
        errors.append(caught.value)
    assert len(caplog.records) > 0
    shown = caplog.text + repr(em) + str(em.__dict__) + "".join(f"{e}{e!r}{e.fix}" for e in errors)
    assert TOKEN not in shown


def test_a_hanging_api_times_out_as_an_outage(api, reply, sleeps, clock):
    api.route("/carbon-intensity/forecast", reply(200, forecast_body(), delay=1.0))
    settings = RetrySettings(timeout=0.2, total_time=0.5, backoff=0.01, sleep=sleeps)
    provider = ElectricityMapsProvider(token=TOKEN, base_url=api.url, retry=settings, clock=clock)
    with pytest.raises(ProviderUnavailable, match="timed out") as caught:
        provider.forecast("FR")
    assert "electricitymaps" in caught.value.message and TOKEN not in str(caught.value)
