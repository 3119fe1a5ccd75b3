"""The Green Software Foundation Carbon Aware SDK Web API, for users who already run it (self-hosted).

Values arrive in g/kWh. Which signal they are depends on the data source the SDK is configured with
(WattTime: marginal, Electricity Maps: average), so the signal is an option, marginal by default.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from greenflow.clock import parse_duration, parse_time, utcnow
from greenflow.errors import ConfigError, InvalidInput, ProviderError
from greenflow.intensity.forecast import Forecast, ForecastPoint, Signal
from greenflow.intensity.providers.base import (
    env_option,
    forecast_window,
    history_window,
    payload_error,
    require_values,
)
from greenflow.intensity.providers.http import ProviderSession, RetrySettings, error_message

_LOCATION = re.compile(r"^[A-Za-z0-9_.-]+$")
# .NET TimeSpan as the SDK serialises durations: [d.]hh:mm:ss[.fffffff]
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})(?:\.\d+)?$")


class CarbonAwareSDKProvider:
    """Forecasts (``/emissions/forecasts/current``) and history (``/emissions/bylocation``) from the SDK."""

    name = "carbon-aware-sdk"
    refresh_interval = timedelta(minutes=5)

    def __init__(
        self,
        *,
        base_url: str | None = None,
        signal: str = "marginal",
        window_minutes: int = 30,
        retry: RetrySettings | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        url = env_option(base_url, "GREENFLOW_CARBON_AWARE_SDK_URL")
        if not url:
            raise ConfigError(
                "the Carbon Aware SDK is self-hosted and no URL is configured",
                fix="set GREENFLOW_CARBON_AWARE_SDK_URL (e.g. http://localhost:8080) or pass base_url=...",
            )
        if signal not in ("marginal", "average"):
            raise InvalidInput(
                f"signal={signal!r} is not 'marginal' or 'average'",
                fix="say what the SDK's data source gives: marginal (WattTime) or average (Electricity Maps)",
            )
        self.signal: Signal = "marginal" if signal == "marginal" else "average"
        self.cache_scope = self.signal
        self._window_minutes = window_minutes
        self._http = ProviderSession(self.name, url, retry)
        self._clock = clock

    def __repr__(self) -> str:
        return f"CarbonAwareSDKProvider(base_url={self._http.base_url!r}, signal={self.signal!r})"

    # -- interface -------------------------------------------------------------------------------
    def validate_region(self, region: str) -> str:
        """A location name as the SDK knows it (``eastus``, ``westeurope``...)."""
        raw = (region or "").strip()
        if raw and _LOCATION.match(raw):
            return raw
        raise InvalidInput(
            f"carbon-aware-sdk location {region!r} is not a location name",
            fix="use a location configured in the SDK, e.g. eastus or westeurope",
        )

    def forecast(self, region: str, *, start: datetime | None = None, hours: float = 48) -> Forecast:
        """``/emissions/forecasts/current`` for [start, start + hours) (falls back to all it has on a 400)."""
        location = self.validate_region(region)
        begin, end = forecast_window(start, hours, self.name, self._clock)
        params = {
            "location": location,
            "dataStartAt": _iso(begin),
            "dataEndAt": _iso(end),
            "windowSize": self._window_minutes,
        }
        response = self._http.get("emissions/forecasts/current", params=params)
        if response.status_code == 400:
            # The SDK answers 400 when [start, end) reaches past its data (e.g. a 24 h source asked for
            # 48 h). Ask for the whole current forecast instead and keep the part inside the window.
            response = self._http.get(
                "emissions/forecasts/current",
                params={"location": location, "windowSize": self._window_minutes},
            )
        body, url = self._checked_json(response, location)
        try:
            if not isinstance(body, list) or not body:
                raise ValueError("expected a non-empty list of forecasts")
            item = next((f for f in body if str(f.get("location", "")).lower() == location.lower()), body[0])
            points = _points(item["forecastData"], time_key="timestamp", value_key="value")
            generated = parse_time(item["generatedAt"]) if item.get("generatedAt") else self._clock()
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise payload_error(self.name, url, exc) from None
        forecast = Forecast(
            region=location,
            provider=self.name,
            signal=self.signal,
            generated_at=generated,
            points=tuple(p for p in points if p.end > begin and p.start < end),
            meta={"source": "carbon-aware-sdk"},
        )
        return require_values(forecast, url, begin, end)

    def history(self, region: str, start: datetime, end: datetime) -> Forecast:
        """``/emissions/bylocation?time=&toTime=`` (not ``startTime``/``endTime``, which the SDK ignores)."""
        location = self.validate_region(region)
        start, end = history_window(start, end)
        params = {"location": location, "time": _iso(start), "toTime": _iso(end)}
        body, url = self._get_json("emissions/bylocation", params, location)
        try:
            if not isinstance(body, list):
                raise ValueError("expected a list of emissions data")
            points = _points(body, time_key="time", value_key="rating")
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise payload_error(self.name, url, exc) from None
        return Forecast(
            region=location,
            provider=self.name,
            signal=self.signal,
            generated_at=self._clock(),
            points=tuple(p for p in points if p.end > start and p.start < end),
            meta={"source": "carbon-aware-sdk", "kind": "actual"},
        )

    # -- internals -------------------------------------------------------------------------------
    def _get_json(self, path: str, params: dict[str, Any], location: str) -> tuple[Any, str]:
        return self._checked_json(self._http.get(path, params=params), location)

    def _checked_json(self, response: requests.Response, location: str) -> tuple[Any, str]:
        url = self._http.shown_url(response)
        self._raise_for_status(response, location, url)
        return self._http.json(response), url

    def _raise_for_status(self, response: requests.Response, location: str, url: str) -> None:
        status = response.status_code
        if status == 200:
            return
        detail = error_message(self._http, response)
        if status == 400:
            raise InvalidInput(
                f"carbon-aware-sdk refused {url} ({detail})",
                fix="ask for a time range inside the SDK's forecast and a location it is configured for",
            )
        if status == 404:
            raise InvalidInput(
                f"carbon-aware-sdk does not know location {location!r} ({detail})",
                fix="use a location configured in the SDK, e.g. eastus",
            )
        raise ProviderError(f"carbon-aware-sdk failed on {url}: {detail}", fix="check the SDK service is healthy")


def _points(entries: list[Any], *, time_key: str, value_key: str) -> list[ForecastPoint]:
    points: list[ForecastPoint] = []
    for entry in sorted(entries, key=lambda e: parse_time(e[time_key])):
        start = parse_time(entry[time_key])
        if points and points[-1].start == start:
            continue
        value = entry.get(value_key)
        points.append(
            ForecastPoint(
                start=start,
                end=start + _duration(entry.get("duration")),
                value=value,  # checked by ForecastPoint: NaN, negative or absurd refuses the answer
            )
        )
    return points


def _duration(raw: Any) -> timedelta:
    """A point's length: minutes as a number (forecasts), or a TimeSpan / ISO 8601 string (bylocation)."""
    if isinstance(raw, (int, float)) and not isinstance(raw, bool) and raw > 0:
        return timedelta(minutes=raw)
    if isinstance(raw, str):
        match = _TIMESPAN.match(raw.strip())
        if match:
            days, h, m, s = (int(g) if g else 0 for g in match.groups())
            span = timedelta(days=days, hours=h, minutes=m, seconds=s)
        else:
            span = parse_duration(raw, "duration")
        if span > timedelta(0):
            return span
    raise ValueError(f"point duration {raw!r} is not a positive length")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
