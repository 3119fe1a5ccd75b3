"""No credential follows a redirect off the configured host, for any provider (real local servers).

"Another host" is another scheme, host name or port than the base URL's: a second server on another port
of 127.0.0.1, and the same server reached as ``localhost`` instead of ``127.0.0.1`` (greenflow compares
names as written, it does not resolve them). A redirect on the configured host is followed, credentials
and all.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest

from greenflow.intensity.cache import ForecastCache
from greenflow.intensity.policy import OutagePolicy, RunNow
from greenflow.intensity.providers import ProviderUnavailable
from greenflow.intensity.providers.base import ProviderRedirectRefused
from greenflow.intensity.providers.electricitymaps import ElectricityMapsProvider
from greenflow.intensity.providers.http import ProviderSession, same_host
from greenflow.intensity.providers.watttime import WattTimeProvider

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
EM_TOKEN = "em-token-redirect-7f3a9c"
WT_USER, WT_PASSWORD = "greenflow-ci", "pw-redirect-5b1e"


def em_forecast() -> dict:
    points = [
        {"datetime": (NOW + timedelta(hours=i)).strftime("%Y-%m-%dT%H:%M:%SZ"), "carbonIntensity": 100 + i}
        for i in range(24)
    ]
    return {"zone": "FR", "forecast": points, "updatedAt": NOW.isoformat()}


def wt_forecast() -> dict:
    points = [{"point_time": (NOW + timedelta(minutes=5 * i)).isoformat(), "value": 900.0} for i in range(60)]
    return {"data": points, "meta": {"data_point_period_seconds": 300, "units": "lbs_co2_per_mwh"}}


def elsewhere(api, target_kind: str) -> str:
    """The base URL of "another host": a second server, or the same server named ``localhost``."""
    if target_kind == "other-port":
        return api.url
    return api.url.replace("127.0.0.1", "localhost")


def secrets_in(seen) -> list[str]:
    """Every credential-looking value a server received (headers and query)."""
    found = []
    for request in seen:
        for key, value in {**request.headers, **request.query}.items():
            if key in ("auth-token", "authorization", "token", "api_key", "apikey") or any(
                secret in value for secret in (EM_TOKEN, WT_PASSWORD, "wt-token-1")
            ):
                found.append(f"{key}={value}")
    return found


@pytest.mark.parametrize("target_kind", ["other-port", "localhost-name"])
def test_electricitymaps_token_never_follows_a_redirect_to_another_host(fake_api, reply, retry, clock, target_kind):
    configured = fake_api()
    other = fake_api() if target_kind == "other-port" else configured
    target = elsewhere(other, target_kind)
    configured.route(
        "/carbon-intensity/forecast",
        lambda seen: (
            reply(200, em_forecast())
            if seen.headers.get("host", "").startswith("localhost")
            else reply(302, {}, headers={"Location": f"{target}/steal/forecast?zone=FR"})
        ),
    )
    other.route("/steal/forecast", reply(200, em_forecast()))
    provider = ElectricityMapsProvider(token=EM_TOKEN, base_url=configured.url, retry=retry, clock=clock)
    with pytest.raises(ProviderRedirectRefused) as caught:
        provider.forecast("FR", hours=6)
    assert "another host" in caught.value.message
    assert EM_TOKEN not in caught.value.one_line() and EM_TOKEN not in repr(caught.value)
    # The other host was never asked anything, let alone with the token.
    assert other.seen("/steal/.*") == []
    assert [r for r in configured.requests if r.headers.get("host", "").startswith("localhost")] == []
    assert secrets_in(other.seen("/steal/.*")) == []


@pytest.mark.parametrize("target_kind", ["other-port", "localhost-name"])
def test_watttime_password_and_token_never_follow_a_redirect_to_another_host(
    fake_api, reply, retry, clock, target_kind
):
    configured = fake_api()
    other = fake_api() if target_kind == "other-port" else configured
    target = elsewhere(other, target_kind)
    configured.route("/login", reply(302, {}, headers={"Location": f"{target}/steal/login"}))
    other.route("/steal/login", reply(200, {"token": "wt-token-1"}))
    provider = WattTimeProvider(
        username=WT_USER, password=WT_PASSWORD, base_url=configured.url, retry=retry, clock=clock
    )
    with pytest.raises(ProviderRedirectRefused):
        provider.forecast("CAISO_NORTH", hours=1)
    assert other.seen("/steal/.*") == []
    # And the bearer token of a later request: the login works, the forecast redirects away.
    configured.route("/login", reply(200, {"token": "wt-token-1"}))
    configured.route("/v3/forecast", reply(307, {}, headers={"Location": f"{target}/steal/forecast"}))
    other.route("/steal/forecast", reply(200, wt_forecast()))
    fresh = WattTimeProvider(username=WT_USER, password=WT_PASSWORD, base_url=configured.url, retry=retry, clock=clock)
    with pytest.raises(ProviderRedirectRefused):
        fresh.forecast("CAISO_NORTH", hours=1)
    assert other.seen("/steal/.*") == []


def test_a_redirect_on_the_configured_host_is_followed_with_the_token(api, reply, retry, clock):
    api.route(
        "/carbon-intensity/forecast", reply(301, {}, headers={"Location": "/v3b/carbon-intensity/forecast?zone=FR"})
    )
    api.route("/v3b/carbon-intensity/forecast", reply(200, em_forecast()))
    provider = ElectricityMapsProvider(token=EM_TOKEN, base_url=api.url, retry=retry, clock=clock)
    forecast = provider.forecast("FR", hours=6)
    assert len(forecast.points) == 6
    [moved] = api.seen("/v3b/.*")
    assert moved.headers["auth-token"] == EM_TOKEN and moved.query["zone"] == "FR"


def test_a_refused_redirect_is_not_retried_and_the_policy_applies(fake_api, reply, retry, sleeps, clock):
    configured, other = fake_api(), fake_api()
    configured.route("/carbon-intensity/forecast", reply(302, {}, headers={"Location": f"{other.url}/x"}))
    provider = ElectricityMapsProvider(token=EM_TOKEN, base_url=configured.url, retry=retry, clock=clock)
    decision = OutagePolicy(on_provider_error="wait").resolve(
        ForecastCache(clock=clock), provider, "FR", deadline=NOW + timedelta(hours=4), now=NOW
    )
    # Waiting cannot change where the provider points: run now, and say why.
    assert isinstance(decision, RunNow)
    assert "another host" in decision.reason and EM_TOKEN not in decision.reason
    assert len(configured.seen("/carbon-intensity/forecast")) == 1 and sleeps.calls == []
    assert other.requests == []


def test_endless_same_host_redirects_end(api, reply, retry):
    api.route("/loop", reply(302, {}, headers={"Location": "/loop"}))
    session = ProviderSession("demo", api.url, retry)
    with pytest.raises(Exception, match="redirected more than"):
        session.get("/loop")
    with pytest.raises(ProviderUnavailable):
        ProviderSession("demo", "http://127.0.0.1:9", retry).get("/x")


@pytest.mark.parametrize(
    ("base", "target", "same"),
    [
        ("https://api.electricitymaps.com/v3/", "https://api.electricitymaps.com/v4/x", True),
        ("https://api.electricitymaps.com/v3/", "https://API.ElectricityMaps.com:443/v3/x", True),
        ("http://api.carbonintensity.org.uk", "https://api.carbonintensity.org.uk/x", True),  # upgrade
        ("https://api.electricitymaps.com/v3/", "http://api.electricitymaps.com/v3/x", False),  # downgrade
        ("https://api.electricitymap.org/v3/", "https://api.electricitymaps.com/v3/x", False),
        ("http://127.0.0.1:8080", "http://localhost:8080/x", False),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8081/x", False),
        ("https://api.watttime.org", "https://api.watttime.org.evil.example/x", False),
        ("https://api.watttime.org", "https://user@evil.example/x", False),
    ],
)
def test_what_counts_as_the_configured_host(base, target, same):
    assert same_host(base, target) is same


def test_basic_auth_header_shape_is_what_the_login_sends(api, reply, retry, clock):
    # Guard for the test above: the login really carries the password in a header the server sees.
    api.route("/login", reply(200, {"token": "wt-token-1"}))
    api.route("/v3/forecast", reply(200, wt_forecast()))
    WattTimeProvider(username=WT_USER, password=WT_PASSWORD, base_url=api.url, retry=retry, clock=clock).forecast(
        "CAISO_NORTH", hours=1
    )
    [login] = api.seen("/login")
    assert login.headers["authorization"] == "Basic " + base64.b64encode(f"{WT_USER}:{WT_PASSWORD}".encode()).decode()
