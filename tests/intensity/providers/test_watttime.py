"""watttime against a local server speaking WattTime API v3's documented shapes (login, 401, 403 included)."""

from __future__ import annotations

import base64
import logging
from datetime import UTC, datetime, timedelta

import pytest

from greenflow.errors import ConfigError, GreenflowError, ProviderError
from greenflow.intensity.forecast import LBS_PER_MWH_TO_G_PER_KWH
from greenflow.intensity.providers import ProviderAuthError
from greenflow.intensity.providers.watttime import WattTimeProvider

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
USER, PASSWORD = "greenflow-ci", "pw-5b1e-secret"


def moer(start: datetime, values: list[float | None]) -> list[dict]:
    return [{"point_time": (start + timedelta(minutes=5 * i)).isoformat(), "value": v} for i, v in enumerate(values)]


def meta(**extra) -> dict:
    return {
        "data_point_period_seconds": 300,
        "region": "CAISO_NORTH",
        "signal_type": "co2_moer",
        "model": {"date": "2023-03-01"},
        "units": "lbs_co2_per_mwh",
        "generated_at": NOW.isoformat(),
        "generated_at_period_seconds": 300,
        "warnings": [],
        **extra,
    }


class Logins:
    """Serves /login, handing out token-1, token-2, ... and checking Basic auth."""

    def __init__(self, reply):
        self.reply = reply
        self.issued: list[str] = []

    def __call__(self, seen):
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if seen.headers.get("authorization") != expected:
            return self.reply(401, {"error": "bad credentials"})
        self.issued.append(f"jwt-{len(self.issued) + 1}-abcdef0123456789")
        return self.reply(200, {"token": self.issued[-1]})


@pytest.fixture
def logins(api, reply):
    handler = Logins(reply)
    api.route("/login", handler)
    return handler


@pytest.fixture
def wt(api, retry, clock, logins):
    return WattTimeProvider(username=USER, password=PASSWORD, base_url=api.url, retry=retry, clock=clock)


def test_forecast_logs_in_then_converts_lbs_per_mwh(api, reply, wt, logins):
    api.route("/v3/forecast", reply(200, {"data": moer(NOW, [1000.0, 1048.41, None] * 200), "meta": meta()}))
    forecast = wt.forecast("caiso_north", hours=1)
    login, call = api.requests
    assert login.path == "/login"
    assert call.headers["authorization"] == f"Bearer {logins.issued[0]}"
    assert call.query == {"region": "CAISO_NORTH", "signal_type": "co2_moer", "horizon_hours": "1"}
    assert len(forecast.points) == 12 and forecast.points[0].duration == timedelta(minutes=5)
    assert forecast.points[0].value == pytest.approx(1000 * LBS_PER_MWH_TO_G_PER_KWH)
    assert forecast.points[0].value == pytest.approx(453.59237)
    assert forecast.points[1].value == pytest.approx(1048.41 * 0.45359237)
    assert forecast.points[2].value is None
    assert forecast.signal == "marginal" and forecast.generated_at == NOW
    assert forecast.meta["model"] == {"date": "2023-03-01"}


def test_token_is_reused_then_renewed_before_30_minutes(api, reply, wt, clock):
    api.route("/v3/forecast", reply(200, {"data": moer(NOW, [1.0] * 12), "meta": meta()}))
    wt.forecast("CAISO_NORTH", hours=1)
    clock.advance(timedelta(minutes=20))
    wt.forecast("CAISO_NORTH", hours=1)
    assert wt.logins == 1
    clock.advance(timedelta(minutes=6))  # 26 minutes after login: renew before the 30-minute expiry
    wt.forecast("CAISO_NORTH", hours=1)
    assert wt.logins == 2


def test_401_logs_in_again_once_and_succeeds(api, reply, wt, logins):
    def forecast(seen):
        if seen.headers["authorization"] == f"Bearer {logins.issued[0]}":
            return reply(401, {"error": "token expired"})
        return reply(200, {"data": moer(NOW, [2.0] * 12), "meta": meta()})

    api.route("/v3/forecast", forecast)
    assert len(wt.forecast("CAISO_NORTH", hours=1).points) == 12
    assert wt.logins == 2


def test_repeated_401_is_an_auth_error_not_a_loop(api, reply, wt):
    api.route("/v3/forecast", reply(401, {"error": "nope"}))
    with pytest.raises(ProviderAuthError):
        wt.forecast("CAISO_NORTH")
    assert wt.logins == 2 and len(api.seen("/v3/forecast")) == 2


def test_403_explains_the_plan(api, reply, wt):
    api.route("/v3/forecast", reply(403, {"error": "Forbidden"}))
    with pytest.raises(ProviderAuthError) as caught:
        wt.forecast("PJM_DC")
    assert "plan does not cover region 'PJM_DC'" in caught.value.message
    assert "CAISO_NORTH" in caught.value.fix
    assert len(api.seen("/v3/forecast")) == 1  # not retried


def test_wrong_password_is_an_auth_error_without_the_password(api, retry, clock, logins):
    provider = WattTimeProvider(username=USER, password="wrong-pw-123", base_url=api.url, retry=retry, clock=clock)
    with pytest.raises(ProviderAuthError) as caught:
        provider.forecast("CAISO_NORTH")
    assert "wrong-pw-123" not in str(caught.value) and USER in str(caught.value)


def test_missing_credentials_is_a_config_error(api):
    with pytest.raises(ConfigError, match="GREENFLOW_WATTTIME_USERNAME"):
        WattTimeProvider(base_url=api.url).forecast("CAISO_NORTH")
    assert api.requests == []


def test_region_from_location_then_forecast(api, reply, wt):
    api.route(
        "/v3/region-from-loc",
        reply(
            200,
            {"region": "SPP_WESTNE", "region_full_name": "SPP Western Nebraska", "signal_type": "co2_moer"},
        ),
    )
    api.route("/v3/forecast", reply(200, {"data": moer(NOW, [900.0] * 12), "meta": meta(region="SPP_WESTNE")}))
    forecast = wt.forecast("41.5,-104", hours=1)
    loc = api.seen("/v3/region-from-loc")[0]
    assert loc.query == {"latitude": "41.5", "longitude": "-104", "signal_type": "co2_moer"}
    assert api.seen("/v3/forecast")[0].query["region"] == "SPP_WESTNE"
    assert forecast.meta["watttime_region"] == "SPP_WESTNE"
    wt.forecast("41.5,-104", hours=1)
    assert len(api.seen("/v3/region-from-loc")) == 1  # a location's region is looked up once


def test_history_reads_v3_historical(api, reply, wt):
    start = NOW - timedelta(hours=1)
    api.route("/v3/historical", reply(200, {"data": moer(start, [500.0] * 12), "meta": meta()}))
    history = wt.history("CAISO_NORTH", start, NOW)
    query = api.seen("/v3/historical")[0].query
    assert query["start"] == "2024-05-01T11:00:00Z" and query["end"] == "2024-05-01T12:00:00Z"
    assert len(history.points) == 12 and history.points[0].value == pytest.approx(500 * 0.45359237)


def test_historical_forecasts(api, reply, wt):
    start = NOW - timedelta(hours=1)
    data = [
        {"generated_at": start.isoformat(), "forecast": moer(start, [100.0] * 3)},
        {"generated_at": (start + timedelta(minutes=5)).isoformat(), "forecast": moer(start, [200.0] * 3)},
    ]
    api.route("/v3/forecast/historical", reply(200, {"data": data, "meta": meta()}))
    forecasts = wt.historical_forecasts("CAISO_NORTH", start, NOW)
    assert [f.generated_at for f in forecasts] == [start, start + timedelta(minutes=5)]
    assert forecasts[1].points[0].value == pytest.approx(200 * 0.45359237)


def test_unknown_units_are_refused(api, reply, wt):
    api.route("/v3/forecast", reply(200, {"data": moer(NOW, [1.0]), "meta": meta(units="furlongs")}))
    with pytest.raises(ProviderError, match=r"malformed data.*furlongs"):
        wt.forecast("CAISO_NORTH")


def test_password_and_tokens_never_reach_logs_or_errors(api, reply, wt, logins, caplog):
    caplog.set_level(logging.DEBUG)
    api.route(
        "/v3/forecast",
        reply(500, {"error": PASSWORD}),
        reply(200, {"data": moer(NOW, [1.0] * 12), "meta": meta()}),
    )
    api.route("/v3/historical", lambda seen: reply(403, {"error": f"token {logins.issued[-1]} not allowed"}))
    wt.forecast("CAISO_NORTH", hours=1)
    with pytest.raises(GreenflowError) as caught:
        wt.history("CAISO_NORTH", NOW - timedelta(hours=1), NOW)
    shown = caplog.text + repr(wt) + str(vars(wt)) + str(caught.value)
    assert PASSWORD not in shown
    assert logins.issued and all(token not in shown for token in logins.issued)


def test_rate_limit_waits_for_retry_after(api, reply, wt, sleeps):
    api.route(
        "/v3/forecast",
        reply(429, {"error": "rate limited"}, headers={"Retry-After": "1.5"}),
        reply(200, {"data": moer(NOW, [1.0] * 12), "meta": meta()}),
    )
    assert len(wt.forecast("CAISO_NORTH", hours=1).points) == 12
    assert sleeps.calls[0] >= 1.5 and len(api.seen("/v3/forecast")) == 2
