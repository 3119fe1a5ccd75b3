"""The shared retrying session: back-off, Retry-After, the total-time bound, timeouts, malformed JSON."""

from __future__ import annotations

import socket
import time
from datetime import timedelta
from email.utils import format_datetime

import pytest

from greenflow.clock import utcnow
from greenflow.errors import ConfigError, ProviderError
from greenflow.intensity.providers.base import ProviderUnavailable
from greenflow.intensity.providers.http import ProviderSession, RetrySettings, Secret


def test_5xx_then_success_is_retried_with_growing_backoff(api, reply, retry, sleeps):
    api.route("/data", reply(503), reply(500), reply(502), reply(200, {"ok": True}))
    session = ProviderSession("demo", api.url, retry)
    response = session.get("data")
    assert response.status_code == 200
    assert session.json(response) == {"ok": True}
    assert len(api.seen("/data")) == 4
    assert len(sleeps.calls) == 3
    # Exponential with jitter: attempt n sleeps in [d/2, d] with d = min(backoff_max, backoff * 2**n).
    for attempt, pause in enumerate(sleeps.calls):
        ceiling = min(retry.backoff_max, retry.backoff * 2**attempt)
        assert ceiling / 2 <= pause <= ceiling


def test_429_retry_after_seconds_is_honoured(api, reply, retry, sleeps):
    api.route("/data", reply(429, {"error": "slow down"}, headers={"Retry-After": "2"}), reply(200, {"ok": 1}))
    response = ProviderSession("demo", api.url, retry).get("data")
    assert response.status_code == 200
    assert sleeps.calls and sleeps.calls[0] >= 2.0


def test_503_retry_after_http_date_is_honoured(api, reply, retry, sleeps):
    when = format_datetime(utcnow().replace(microsecond=0) + timedelta(seconds=3), usegmt=True)
    api.route("/data", reply(503, headers={"Retry-After": when}), reply(200, {"ok": 1}))
    ProviderSession("demo", api.url, retry).get("data")
    assert sleeps.calls and 1.0 <= sleeps.calls[0] <= 3.5


def test_retry_after_beyond_the_budget_fails_at_once(api, reply, retry, sleeps):
    api.route("/data", reply(429, headers={"Retry-After": "120"}))
    with pytest.raises(ProviderUnavailable) as caught:
        ProviderSession("demo", api.url, retry).get("data")
    assert len(api.seen("/data")) == 1
    assert sleeps.calls == []
    assert "Retry-After 120" in caught.value.message
    assert "budget" in caught.value.message


@pytest.mark.parametrize("value", ["NaN", "inf", "-5", "soon"])
def test_a_nonsense_retry_after_falls_back_to_the_usual_backoff(api, reply, retry, sleeps, value):
    api.route("/data", reply(503, headers={"Retry-After": value}), reply(200, {"ok": 1}))
    assert ProviderSession("demo", api.url, retry).get("data").status_code == 200
    assert len(sleeps.calls) == 1 and 0 <= sleeps.calls[0] <= retry.backoff_max


def test_attempts_are_bounded(api, reply, retry, sleeps):
    api.route("/data", reply(500))
    with pytest.raises(ProviderUnavailable, match="HTTP 500"):
        ProviderSession("demo", api.url, retry).get("data")
    assert len(api.seen("/data")) == retry.max_attempts


def test_timeouts_are_retried_then_fail_within_the_total_time(api, reply, sleeps):
    api.route("/slow", reply(200, {"late": True}, delay=1.0))
    # Without the total bound, 50 attempts of 0.2 s each would take 10 s.
    settings = RetrySettings(timeout=0.2, total_time=0.7, max_attempts=50, backoff=0.01, sleep=sleeps)
    started = time.monotonic()
    with pytest.raises(ProviderUnavailable, match="timed out"):
        ProviderSession("demo", api.url, settings).get("slow")
    assert time.monotonic() - started < 3
    assert len(api.seen("/slow")) >= 2


def test_connection_refused_is_an_outage(retry):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ProviderUnavailable, match="connection failed"):
        ProviderSession("demo", f"http://127.0.0.1:{port}", retry).get("data")


def test_client_errors_are_not_retried(api, reply, retry):
    api.route("/data", reply(404, {"message": "nope"}))
    response = ProviderSession("demo", api.url, retry).get("data")
    assert response.status_code == 404
    assert len(api.seen("/data")) == 1


def test_malformed_json_names_provider_and_url_without_secrets(api, reply, retry):
    api.route("/data", reply(200, body="<html>tok-SECRET-123 oops"))
    session = ProviderSession("demo", api.url, retry)
    session.add_secret(Secret("tok-SECRET-123"))
    with pytest.raises(ProviderError) as caught:
        session.json(session.get("data", params={"zone": "FR"}))
    text = str(caught.value)
    assert "demo" in text and f"{api.url}/data?zone=FR" in text and "malformed JSON" in text
    assert "tok-SECRET-123" not in text


def test_secret_never_shows_in_repr_or_str():
    secret = Secret("hunter2")
    assert "hunter2" not in repr(secret) and "hunter2" not in str(secret) and "hunter2" not in f"{secret}"
    assert secret.reveal() == "hunter2"


def test_settings_come_from_env_and_bad_values_are_config_errors(monkeypatch):
    monkeypatch.setenv("GREENFLOW_HTTP_TIMEOUT", "3")
    monkeypatch.setenv("GREENFLOW_HTTP_TOTAL_TIME", "12")
    settings = RetrySettings.from_env()
    assert (settings.timeout, settings.total_time) == (3.0, 12.0)
    monkeypatch.setenv("GREENFLOW_HTTP_TOTAL_TIME", "soon")
    with pytest.raises(ConfigError, match="GREENFLOW_HTTP_TOTAL_TIME"):
        RetrySettings.from_env()
    with pytest.raises(ConfigError, match="total_time"):
        RetrySettings(total_time=0)
