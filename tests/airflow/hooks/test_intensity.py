"""Forecast-provider connections: options for each provider, credentials kept secret, types checked."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from greenflow.airflow.hooks.intensity import (
    CarbonAwareSDKHook,
    ElectricityMapsHook,
    TraceHook,
    UKGridHook,
    WattTimeHook,
    hook_for_connection,
)
from greenflow.airflow.spec_params import runtime_spec
from greenflow.errors import ConfigError
from greenflow.intensity.providers.http import Secret


def _conn(conn_type: str, **fields: Any) -> Any:
    extra = fields.pop("extra", {})
    values = {"conn_id": "c", "host": None, "schema": None, "login": None, "password": None, "port": None}
    return SimpleNamespace(conn_type=conn_type, **{**values, **fields}, extra_dejson=extra)


def test_electricitymaps_token_becomes_a_secret_that_never_prints() -> None:
    conn = _conn(
        "greenflow_electricitymaps",
        host="http://127.0.0.1:9/v3",
        password="em-token-123",
        extra={"emission_factor": "direct", "disable_estimations": "true"},
    )
    options = ElectricityMapsHook.options_from(conn)
    assert isinstance(options["token"], Secret) and options["token"].reveal() == "em-token-123"
    assert options == {**options, "base_url": "http://127.0.0.1:9/v3", "emission_factor": "direct"}
    assert options["disable_estimations"] is True
    assert "em-token-123" not in repr(options)


def test_watttime_login_and_password() -> None:
    options = WattTimeHook.options_from(
        _conn("greenflow_watttime", login="me", password="pw", extra={"signal_type": "co2_aoer"})
    )
    assert options["username"] == "me" and options["password"].reveal() == "pw"
    assert options["signal_type"] == "co2_aoer"


def test_carbon_aware_sdk_window_must_be_a_whole_number() -> None:
    conn = _conn("greenflow_carbon_aware_sdk", host="http://sdk:8080", extra={"window_minutes": "half an hour"})
    with pytest.raises(ConfigError, match="window_minutes='half an hour'"):
        CarbonAwareSDKHook.options_from(conn)
    conn.extra_dejson = {"extra__greenflow_carbon_aware_sdk__window_minutes": "15", "signal": "average"}
    assert CarbonAwareSDKHook.options_from(conn) == {
        "base_url": "http://sdk:8080",
        "window_minutes": 15,
        "signal": "average",
    }


def test_ukgrid_and_trace_connections() -> None:
    assert UKGridHook.options_from(_conn("greenflow_ukgrid", host=" ")) == {}
    assert TraceHook.options_from(_conn("greenflow_trace", extra={"path": "/data/de.csv", "column": "g"})) == {
        "path": "/data/de.csv",
        "column": "g",
    }


def test_a_connection_of_another_provider_is_refused() -> None:
    with pytest.raises(ConfigError) as error:
        hook_for_connection(_conn("greenflow_watttime"), "electricitymaps")
    assert "does not serve provider 'electricitymaps'" in str(error.value)
    assert "greenflow_electricitymaps" in (error.value.fix or "")


def test_runtime_spec_merges_the_connection_and_the_provider_gets_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    conn = {"conn_type": "greenflow_electricitymaps", "password": "em-token-456", "host": "http://127.0.0.1:9/v3"}
    monkeypatch.setenv("AIRFLOW_CONN_EM", json.dumps(conn))
    spec, provider = runtime_spec({"region": "DE", "provider": "electricitymaps"}, {}, "em")
    assert spec.provider_options["token"].reveal() == "em-token-456"
    assert provider._token.reveal() == "em-token-456"  # type: ignore[attr-defined]
    assert "em-token-456" not in repr(spec) and "em-token-456" not in repr(provider)
    assert "token" not in json.dumps(spec.policy_inputs())
