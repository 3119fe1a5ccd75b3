"""WattTime API v3: marginal operating emissions rate (``co2_moer``) in lbs/MWh, converted to g/kWh.

``/login`` with HTTP Basic auth gives a bearer token valid about 30 minutes; greenflow renews it after
25 minutes, logs in again once on a 401, and turns a 403 (the plan does not cover the region or signal)
into a clear error instead of a retry loop.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from greenflow.clock import parse_time, utcnow
from greenflow.errors import ConfigError, InvalidInput, ProviderError
from greenflow.intensity.forecast import (
    LBS_PER_MWH_TO_G_PER_KWH,
    Forecast,
    ForecastPoint,
    Signal,
    intensity_value,
)
from greenflow.intensity.providers.base import (
    ProviderAuthError,
    env_option,
    forecast_window,
    history_window,
    payload_error,
    require_values,
)
from greenflow.intensity.providers.http import ProviderSession, RetrySettings, Secret, error_message

DEFAULT_URL = "https://api.watttime.org"
MAX_HORIZON_HOURS = 72
# Tokens last about 30 minutes; renewing early avoids a request racing the expiry.
TOKEN_RENEW_AFTER = timedelta(minutes=25)
_REGION = re.compile(r"^[A-Z0-9_]+$")
_LATLON = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*$")
_UNIT_FACTORS = {"lbs_co2_per_mwh": LBS_PER_MWH_TO_G_PER_KWH, "g_co2_per_kwh": 1.0}


class WattTimeProvider:
    """Marginal-emissions forecasts and history from WattTime, by balancing-authority region or lat,lon."""

    name = "watttime"
    signal: Signal = "marginal"
    refresh_interval = timedelta(minutes=5)

    def __init__(
        self,
        *,
        username: str | None = None,
        password: str | Secret | None = None,
        base_url: str | None = None,
        signal_type: str = "co2_moer",
        retry: RetrySettings | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._username = env_option(username, "GREENFLOW_WATTTIME_USERNAME") or ""
        raw = password.reveal() if isinstance(password, Secret) else env_option(password, "GREENFLOW_WATTTIME_PASSWORD")
        self._password = Secret(raw or "")
        url = env_option(base_url, "GREENFLOW_WATTTIME_URL", DEFAULT_URL)
        assert url is not None  # a default is given
        self._http = ProviderSession(self.name, url, retry)
        self._http.add_secret(self._password)
        self.signal_type = signal_type
        self.cache_scope = signal_type
        self._clock = clock
        self._token: Secret | None = None
        self._token_at: datetime | None = None
        self._token_lock = threading.Lock()
        self._regions: dict[str, str] = {}
        self.logins = 0
        """How many times this provider logged in (lets a test see token reuse and renewal)."""

    def __repr__(self) -> str:
        return (
            f"WattTimeProvider(base_url={self._http.base_url!r}, username={self._username!r}, "
            f"password={self._password!r})"
        )

    # -- interface -------------------------------------------------------------------------------
    def validate_region(self, region: str) -> str:
        """A WattTime region code (``CAISO_NORTH``) or ``lat,lon`` (resolved with region-from-loc)."""
        raw = (region or "").strip()
        match = _LATLON.match(raw)
        if match:
            lat, lon = float(match.group(1)), float(match.group(2))
            if -90 <= lat <= 90 and -180 <= lon <= 180:
                return f"{lat:g},{lon:g}"
            raise InvalidInput(
                f"watttime coordinates {raw!r} are out of range",
                fix="latitude must be in [-90, 90] and longitude in [-180, 180], written lat,lon",
            )
        code = raw.upper()
        if code and _REGION.match(code):
            return code
        raise InvalidInput(
            f"watttime region {region!r} is not a region code",
            fix="use a WattTime region like CAISO_NORTH or PJM_DC, or coordinates like 41.5,-104",
        )

    def forecast(self, region: str, *, start: datetime | None = None, hours: float = 48) -> Forecast:
        """``/v3/forecast``: 5-minute points from the current period, up to 72 hours ahead."""
        normalised = self.validate_region(region)
        begin, end = forecast_window(start, hours, self.name, self._clock)
        code = self._resolve(normalised)
        ahead = (end - self._clock()).total_seconds() / 3600
        horizon = max(0, min(MAX_HORIZON_HOURS, math.ceil(ahead)))
        body, url = self._get_json(
            "v3/forecast", {"region": code, "signal_type": self.signal_type, "horizon_hours": horizon}, code
        )
        try:
            meta = body["meta"]
            points = _points(body["data"], meta)
            generated = parse_time(meta["generated_at"]) if meta.get("generated_at") else self._clock()
            model = meta.get("model")
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise payload_error(self.name, url, exc) from None
        forecast = Forecast(
            region=normalised,
            provider=self.name,
            signal=self.signal,
            generated_at=generated,
            points=tuple(p for p in points if p.end > begin and p.start < end),
            meta={"watttime_region": code, "signal_type": self.signal_type, "model": model},
        )
        return require_values(forecast, url, begin, end)

    def history(self, region: str, start: datetime, end: datetime) -> Forecast:
        """``/v3/historical``: the actual marginal rate over [start, end)."""
        normalised = self.validate_region(region)
        start, end = history_window(start, end)
        code = self._resolve(normalised)
        params = {"region": code, "signal_type": self.signal_type, "start": _iso(start), "end": _iso(end)}
        body, url = self._get_json("v3/historical", params, code)
        try:
            points = _points(body["data"], body.get("meta") or {})
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise payload_error(self.name, url, exc) from None
        return Forecast(
            region=normalised,
            provider=self.name,
            signal=self.signal,
            generated_at=self._clock(),
            points=tuple(p for p in points if p.end > start and p.start < end),
            meta={"watttime_region": code, "signal_type": self.signal_type, "kind": "actual"},
        )

    def historical_forecasts(self, region: str, start: datetime, end: datetime) -> list[Forecast]:
        """``/v3/forecast/historical``: the forecasts WattTime published between ``start`` and ``end``."""
        normalised = self.validate_region(region)
        start, end = history_window(start, end)
        code = self._resolve(normalised)
        params = {"region": code, "signal_type": self.signal_type, "start": _iso(start), "end": _iso(end)}
        body, url = self._get_json("v3/forecast/historical", params, code)
        try:
            meta = body.get("meta") or {}
            return [
                Forecast(
                    region=normalised,
                    provider=self.name,
                    signal=self.signal,
                    generated_at=parse_time(item["generated_at"]),
                    points=tuple(_points(item["forecast"], meta)),
                    meta={"watttime_region": code, "signal_type": self.signal_type},
                )
                for item in body["data"]
            ]
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise payload_error(self.name, url, exc) from None

    def region_from_location(self, latitude: float, longitude: float) -> str:
        """``/v3/region-from-loc``: the WattTime region containing the point."""
        params = {"latitude": f"{latitude:g}", "longitude": f"{longitude:g}", "signal_type": self.signal_type}
        body, url = self._get_json("v3/region-from-loc", params, f"{latitude:g},{longitude:g}")
        region = body.get("region")
        if not isinstance(region, str) or not region:
            raise payload_error(self.name, url, "no 'region' in the answer")
        return region

    # -- internals -------------------------------------------------------------------------------
    def _resolve(self, normalised: str) -> str:
        match = _LATLON.match(normalised)
        if not match:
            return normalised
        if normalised not in self._regions:
            self._regions[normalised] = self.region_from_location(float(match.group(1)), float(match.group(2)))
        return self._regions[normalised]

    def _login(self, stale: Secret | None) -> Secret:
        """A valid token: the current one unless it is ``stale`` or older than the renewal age."""
        with self._token_lock:
            now = self._clock()
            fresh = (
                self._token is not None
                and self._token is not stale
                and self._token_at is not None
                and now - self._token_at < TOKEN_RENEW_AFTER
            )
            if fresh and self._token is not None:
                return self._token
            if not self._username or not self._password:
                raise ConfigError(
                    "no WattTime credentials configured",
                    fix="set GREENFLOW_WATTTIME_USERNAME and GREENFLOW_WATTTIME_PASSWORD (or pass them)",
                )
            response = self._http.get("login", auth=(self._username, self._password.reveal()))
            if response.status_code in (401, 403):
                detail = error_message(self._http, response)
                raise ProviderAuthError(
                    f"watttime refused the login for user {self._username!r} ({detail})",
                    fix="check GREENFLOW_WATTTIME_USERNAME and GREENFLOW_WATTTIME_PASSWORD",
                )
            if response.status_code != 200:
                raise ProviderError(f"watttime login failed: {error_message(self._http, response)}", fix="retry later")
            body = self._http.json(response)
            token = body.get("token") if isinstance(body, dict) else None
            if not isinstance(token, str) or not token:
                raise payload_error(self.name, self._http.shown_url(response), "no 'token' in the login answer")
            self._http.add_secret(token)
            self._token, self._token_at = Secret(token), now
            self.logins += 1
            return self._token

    def _get_json(self, path: str, params: dict[str, Any], region: str) -> tuple[dict[str, Any], str]:
        token = self._login(None)
        response = self._authed(path, params, token)
        if response.status_code == 401:
            # Expired or revoked token: log in again once, then give up rather than loop.
            token = self._login(token)
            response = self._authed(path, params, token)
        url = self._http.shown_url(response)
        self._raise_for_status(response, region, url)
        body = self._http.json(response)
        if not isinstance(body, dict):
            raise payload_error(self.name, url, "body is not a JSON object")
        return body, url

    def _authed(self, path: str, params: dict[str, Any], token: Secret) -> requests.Response:
        return self._http.get(path, params=params, headers={"Authorization": f"Bearer {token.reveal()}"})

    def _raise_for_status(self, response: requests.Response, region: str, url: str) -> None:
        status = response.status_code
        if status == 200:
            return
        detail = error_message(self._http, response)
        if status == 401:
            raise ProviderAuthError(
                f"watttime rejected a fresh token for {url} ({detail})",
                fix="check the WattTime account is active",
            )
        if status == 403:
            raise ProviderAuthError(
                f"watttime: the account's plan does not cover region {region!r} for signal "
                f"{self.signal_type!r} ({detail})",
                fix="WattTime forecasts need a subscription except CAISO_NORTH: use a covered region",
            )
        if status in (400, 404):
            raise InvalidInput(
                f"watttime refused region {region!r} ({detail})",
                fix="use a WattTime region like CAISO_NORTH, or find one with region-from-loc",
            )
        raise ProviderError(f"watttime failed on {url}: {detail}", fix="retry later or check the base URL")


def _points(entries: Any, meta: dict[str, Any]) -> list[ForecastPoint]:
    """Points from ``[{"point_time", "value"}]`` in the unit ``meta`` names, converted to g/kWh."""
    if not isinstance(entries, list):
        raise TypeError("data is not a list")
    units = meta.get("units") or "lbs_co2_per_mwh"  # co2_moer is documented in lbs/MWh
    if units not in _UNIT_FACTORS:
        raise ValueError(f"unknown units {units!r}")
    factor = _UNIT_FACTORS[units]
    step = timedelta(seconds=int(meta.get("data_point_period_seconds") or 300))
    points: list[ForecastPoint] = []
    for entry in sorted(entries, key=lambda e: parse_time(e["point_time"])):
        start = parse_time(entry["point_time"])
        if points and points[-1].start == start:
            continue
        # Checked before the unit conversion too, so the error shows the value as the API sent it.
        value = intensity_value(entry.get("value"), f"value for {start.isoformat()} ({units})")
        points.append(ForecastPoint(start=start, end=start + step, value=None if value is None else value * factor))
    return points


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
