"""Electricity Maps API v3 (``auth-token`` header; forecasts need a paid plan). Average signal.

A region is a zone code (``FR``, ``US-CAL-CISO``) or ``lat,lon``. Every request says
``shouldUseFallbackCallerLookup=false`` and every answer's zone is checked against the one asked for,
so a missing or unresolvable zone can never silently mean "wherever this worker happens to be".
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import requests

from greenflow.clock import parse_time, utcnow
from greenflow.errors import ConfigError, InvalidInput, ProviderError
from greenflow.intensity.forecast import EmissionFactor, Forecast, ForecastPoint, Signal
from greenflow.intensity.providers.base import (
    ProviderAuthError,
    env_option,
    forecast_window,
    history_window,
    payload_error,
    require_values,
)
from greenflow.intensity.providers.http import ProviderSession, RetrySettings, Secret, error_message

DEFAULT_URL = "https://api.electricitymaps.com/v3/"
ATTRIBUTION = "Electricity Maps"
_ZONE = re.compile(r"^[A-Z]{2,3}(-[A-Z0-9]{1,12})*$")
_LATLON = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*$")
_DEFAULT_STEP = timedelta(hours=1)


class ElectricityMapsProvider:
    """Forecasts, latest value and last-24-hour history from Electricity Maps, by zone or coordinates."""

    name = "electricitymaps"
    signal: Signal = "average"
    refresh_interval = timedelta(hours=1)

    def __init__(
        self,
        *,
        token: str | Secret | None = None,
        base_url: str | None = None,
        emission_factor: str = "lifecycle",
        disable_estimations: bool = False,
        retry: RetrySettings | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        if emission_factor not in ("lifecycle", "direct"):
            raise InvalidInput(
                f"emission_factor={emission_factor!r} is not 'lifecycle' or 'direct'",
                fix="use lifecycle (Electricity Maps' default) or direct",
            )
        raw = token.reveal() if isinstance(token, Secret) else env_option(token, "GREENFLOW_ELECTRICITYMAPS_TOKEN")
        self._token = Secret(raw or "")
        url = env_option(base_url, "GREENFLOW_ELECTRICITYMAPS_URL", DEFAULT_URL)
        assert url is not None  # a default is given
        self._http = ProviderSession(self.name, url, retry)
        self._http.add_secret(self._token)
        self.emission_factor: EmissionFactor = "lifecycle" if emission_factor == "lifecycle" else "direct"
        # Two emission-factor types are two different series: keep them apart in the cache.
        self.cache_scope = self.emission_factor
        self._disable_estimations = disable_estimations
        self._clock = clock

    def __repr__(self) -> str:
        return (
            f"ElectricityMapsProvider(base_url={self._http.base_url!r}, token={self._token!r}, "
            f"emission_factor={self.emission_factor!r})"
        )

    # -- interface -------------------------------------------------------------------------------
    def validate_region(self, region: str) -> str:
        """A zone code in upper case, or ``lat,lon`` with both in range."""
        raw = (region or "").strip()
        if not raw:
            raise InvalidInput(
                "electricitymaps needs a zone or lat,lon; an empty region would make the API use the caller's location",
                fix="give a zone code like FR or US-CAL-CISO, or coordinates like 48.85,2.35",
            )
        match = _LATLON.match(raw)
        if match:
            lat, lon = float(match.group(1)), float(match.group(2))
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                raise InvalidInput(
                    f"electricitymaps coordinates {raw!r} are out of range",
                    fix="latitude must be in [-90, 90] and longitude in [-180, 180], written lat,lon",
                )
            return f"{lat:g},{lon:g}"
        zone = raw.upper()
        if not _ZONE.match(zone):
            raise InvalidInput(
                f"electricitymaps zone {region!r} is not a zone code",
                fix="use a zone code like FR, DE or US-CAL-CISO, or coordinates like 48.85,2.35",
            )
        return zone

    def forecast(self, region: str, *, start: datetime | None = None, hours: float = 48) -> Forecast:
        """``/carbon-intensity/forecast`` (up to 72 h, hourly), trimmed to [start, start + hours)."""
        normalised = self.validate_region(region)
        begin, end = forecast_window(start, hours, self.name, self._clock)
        body, url = self._get("carbon-intensity/forecast", normalised)
        try:
            self._check_zone(body, normalised, url)
            entries = body["forecast"]
            points = _points(entries, estimated_key=None)
            generated = parse_time(body["updatedAt"]) if body.get("updatedAt") else self._clock()
        except (KeyError, TypeError, ValueError, IndexError, OverflowError) as exc:
            raise payload_error(self.name, url, exc) from None
        kept = [p for p in points if p.end > begin and p.start < end]
        return require_values(self._forecast(normalised, body, generated, kept), url, begin, end)

    def history(self, region: str, start: datetime, end: datetime) -> Forecast:
        """``/carbon-intensity/history``: the API serves the last 24 hours; the part inside [start, end)."""
        normalised = self.validate_region(region)
        start, end = history_window(start, end)
        body, url = self._get("carbon-intensity/history", normalised)
        try:
            self._check_zone(body, normalised, url)
            points = _points(body["history"], estimated_key="isEstimated")
        except (KeyError, TypeError, ValueError, IndexError, OverflowError) as exc:
            raise payload_error(self.name, url, exc) from None
        kept = [p for p in points if p.end > start and p.start < end]
        result = self._forecast(normalised, body, self._clock(), kept)
        result.meta["kind"] = "actual"
        return result

    def latest(self, region: str) -> ForecastPoint:
        """``/carbon-intensity/latest``: the current hour's value (``None`` if the API has none)."""
        normalised = self.validate_region(region)
        body, url = self._get("carbon-intensity/latest", normalised)
        try:
            self._check_zone(body, normalised, url)
            start = parse_time(body["datetime"])
            value = body.get("carbonIntensity")
            return ForecastPoint(
                start=start,
                end=start + _DEFAULT_STEP,
                value=value,  # checked by ForecastPoint
                estimated=bool(body.get("isEstimated", False)),
            )
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise payload_error(self.name, url, exc) from None

    # -- internals -------------------------------------------------------------------------------
    def _params(self, region: str) -> dict[str, str]:
        params = {"emissionFactorType": self.emission_factor, "shouldUseFallbackCallerLookup": "false"}
        match = _LATLON.match(region)
        if match:
            params.update(lat=match.group(1), lon=match.group(2))
        else:
            params["zone"] = region
        if self._disable_estimations:
            params["disableEstimations"] = "true"
        return params

    def _get(self, path: str, region: str) -> tuple[Any, str]:
        if not self._token:
            raise ConfigError(
                "no Electricity Maps token configured",
                fix="set GREENFLOW_ELECTRICITYMAPS_TOKEN or pass token=... (e.g. from a connection)",
            )
        response = self._http.get(path, params=self._params(region), headers={"auth-token": self._token.reveal()})
        url = self._http.shown_url(response)
        self._raise_for_status(response, region, url)
        body = self._http.json(response)
        if not isinstance(body, dict):
            raise payload_error(self.name, url, "body is not a JSON object")
        return body, url

    def _raise_for_status(self, response: requests.Response, region: str, url: str) -> None:
        status = response.status_code
        if status == 200:
            return
        detail = error_message(self._http, response)
        if status == 401:
            raise ProviderAuthError(
                f"electricitymaps rejected the token ({detail})",
                fix="check GREENFLOW_ELECTRICITYMAPS_TOKEN (the value is not shown here)",
            )
        if status == 403:
            raise ProviderAuthError(
                f"electricitymaps: the token's plan does not cover {url} for {region} ({detail})",
                fix="forecasts need a paid Electricity Maps plan; check the plan covers this zone",
            )
        if status == 404:
            raise InvalidInput(
                f"electricitymaps does not know zone {region!r} ({detail})",
                fix="use a zone code from Electricity Maps' zone list, e.g. FR, DE or US-CAL-CISO",
            )
        if status == 400:
            raise InvalidInput(
                f"electricitymaps refused the request for {region!r} ({detail})",
                fix="check the zone or coordinates",
            )
        raise ProviderError(f"electricitymaps failed on {url}: {detail}", fix="retry later or check the base URL")

    def _check_zone(self, body: dict[str, Any], region: str, url: str) -> None:
        answered = body.get("zone")
        if _LATLON.match(region):
            if not answered:
                raise ProviderError(
                    f"electricitymaps did not say which zone {region} is in ({url})",
                    fix="give a zone code instead of coordinates",
                )
            return
        if answered is not None and str(answered).upper() != region:
            # The API answered for another zone: exactly the silent fallback greenflow refuses.
            raise ProviderError(
                f"electricitymaps answered for zone {answered!r} when asked for {region!r} ({url})",
                fix="check the zone code; greenflow never uses a zone other than the one asked for",
            )

    def _forecast(
        self, region: str, body: dict[str, Any], generated: datetime, points: list[ForecastPoint]
    ) -> Forecast:
        factor = body.get("emissionFactorType") or self.emission_factor
        return Forecast(
            region=region,
            provider=self.name,
            signal=self.signal,
            generated_at=generated,
            points=tuple(points),
            emission_factor="direct" if factor == "direct" else "lifecycle",
            meta={"zone": body.get("zone"), "attribution": ATTRIBUTION},
        )


def _points(entries: Any, *, estimated_key: str | None) -> list[ForecastPoint]:
    """Points from ``[{"datetime", "carbonIntensity", ...}]``; each ends where the next starts (hourly)."""
    if not isinstance(entries, list):
        raise TypeError("series is not a list")
    rows = sorted(((parse_time(e["datetime"]), e) for e in entries), key=lambda item: item[0])
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(rows) if b[0] > a[0]]
    step = min(gaps) if gaps else _DEFAULT_STEP
    points: list[ForecastPoint] = []
    for moment, entry in rows:
        if points and points[-1].start == moment:
            continue  # a repeated timestamp would overlap; keep the first
        value = entry.get("carbonIntensity")
        points.append(
            ForecastPoint(
                start=moment,
                end=moment + step,
                value=value,  # checked by ForecastPoint: NaN, negative or absurd refuses the answer
                estimated=bool(entry.get(estimated_key)) if estimated_key else False,
            )
        )
    return points
