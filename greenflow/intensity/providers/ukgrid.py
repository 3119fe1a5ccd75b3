"""GB: the National Energy System Operator Carbon Intensity API (free, no key, data CC BY 4.0).

Regions are written ``national`` (GB), ``region:<1..17>`` or ``postcode:<outward code>``; region names
(``London``) and bare ids or outward codes are accepted and normalised.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from greenflow.clock import parse_time, utcnow
from greenflow.errors import InvalidInput, ProviderError
from greenflow.intensity.forecast import Forecast, ForecastPoint, Signal
from greenflow.intensity.providers.base import (
    env_option,
    forecast_window,
    history_window,
    payload_error,
    require_values,
)
from greenflow.intensity.providers.http import ProviderSession, RetrySettings, error_message

DEFAULT_URL = "https://api.carbonintensity.org.uk"
ATTRIBUTION = "Contains data from the National Energy System Operator Carbon Intensity API."
MAX_HOURS = 48
# The API serves at most 14 days per /intensity/{from}/{to} request.
HISTORY_CHUNK = timedelta(days=14)

REGION_NAMES: dict[int, str] = {
    1: "North Scotland",
    2: "South Scotland",
    3: "North West England",
    4: "North East England",
    5: "Yorkshire",
    6: "North Wales & Merseyside",
    7: "South Wales",
    8: "West Midlands",
    9: "East Midlands",
    10: "East England",
    11: "South West England",
    12: "South England",
    13: "London",
    14: "South East England",
    15: "England",
    16: "Scotland",
    17: "Wales",
}
_BY_NAME = {name.lower(): rid for rid, name in REGION_NAMES.items()}
_OUTWARD = re.compile(r"^[A-Z]{1,2}[0-9][A-Z0-9]?$")
_NATIONAL = {"", "national", "gb", "uk", "great britain"}


def _api_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


class UKGridProvider:
    """GB grid intensity: national and regional 48-hour forecasts, national settled actuals."""

    name = "ukgrid"
    signal: Signal = "average"
    refresh_interval = timedelta(minutes=30)

    def __init__(
        self,
        *,
        base_url: str | None = None,
        retry: RetrySettings | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        url = env_option(base_url, "GREENFLOW_UKGRID_URL", DEFAULT_URL)
        assert url is not None  # a default is given
        self._http = ProviderSession(self.name, url, retry)
        self._clock = clock

    def __repr__(self) -> str:
        return f"UKGridProvider(base_url={self._http.base_url!r})"

    # -- interface -------------------------------------------------------------------------------
    def validate_region(self, region: str) -> str:
        """``national``, ``region:<id>`` or ``postcode:<OUTWARD>``; InvalidInput for anything else."""
        raw = (region or "").strip()
        lowered = raw.lower()
        if lowered in _NATIONAL:
            return "national"
        for prefix in ("regionid:", "region:", "postcode:"):
            if lowered.startswith(prefix):
                raw = raw[len(prefix) :].strip()
                lowered = raw.lower()
                if prefix == "postcode:":
                    return self._postcode(raw, region)
                break
        if lowered.isdigit():
            rid = int(lowered)
            if rid in REGION_NAMES:
                return f"region:{rid}"
            raise InvalidInput(
                f"ukgrid region id {region!r} is not between 1 and 17",
                fix="use 1..17 (e.g. 13 for London), 'national', or an outward postcode like RG10",
            )
        if lowered in _BY_NAME:
            return f"region:{_BY_NAME[lowered]}"
        return self._postcode(raw, region)

    def forecast(self, region: str, *, start: datetime | None = None, hours: float = 48) -> Forecast:
        """The national or regional 48-hour forecast (``fw48h``) from ``start``, trimmed to ``hours``."""
        normalised = self.validate_region(region)
        begin, end = forecast_window(start, hours, self.name, self._clock)
        path = f"intensity/{_api_time(begin)}/fw48h"
        if normalised.startswith("region:"):
            path = f"regional/{path}/regionid/{normalised.split(':', 1)[1]}"
        elif normalised.startswith("postcode:"):
            path = f"regional/{path}/postcode/{normalised.split(':', 1)[1]}"
        payload, url = self._get(path, normalised)
        meta: dict[str, Any] = {"source": url, "attribution": ATTRIBUTION, "horizon_hours": MAX_HOURS}
        try:
            if normalised == "national":
                entries = payload["data"]
            else:
                entries, region_meta = _regional_entries(payload["data"])
                meta.update(region_meta)
            points = _points(entries, use_actual=False)
        except (KeyError, TypeError, ValueError, IndexError, OverflowError) as exc:
            raise payload_error(self.name, url, exc) from None
        forecast = Forecast(
            region=normalised,
            provider=self.name,
            signal=self.signal,
            generated_at=self._clock(),
            points=tuple(p for p in points if p.end > begin and p.start < end),
            meta=meta,
        )
        return require_values(forecast, url, begin, end)

    def history(self, region: str, start: datetime, end: datetime) -> Forecast:
        """National settled actuals over [start, end), fetched in 14-day requests.

        A period whose actual is not settled yet carries the forecast instead, marked ``estimated``;
        a period with neither stays ``None``. Regional entries have forecasts only, so regions are refused.
        """
        return self._past(region, start, end, use_actual=True)

    def issued_history(self, region: str, start: datetime, end: datetime) -> Forecast:
        """The national forecast the API had published for each past period over [start, end).

        The same ``/intensity/{from}/{to}`` periods as :meth:`history`, their ``forecast`` field instead
        of ``actual``: with it a forecast correction learns the forecast's recent errors. Only the
        national series has actuals to compare against, so regions are refused.
        """
        return self._past(region, start, end, use_actual=False)

    # -- internals -------------------------------------------------------------------------------
    def _past(self, region: str, start: datetime, end: datetime, *, use_actual: bool) -> Forecast:
        normalised = self.validate_region(region)
        if normalised != "national":
            raise InvalidInput(
                f"ukgrid has no actuals for {normalised}: regional entries carry forecasts only",
                fix="ask for history of region 'national'",
            )
        start, end = history_window(start, end)
        by_start: dict[datetime, ForecastPoint] = {}
        cursor = start
        while cursor < end:
            chunk_end = min(cursor + HISTORY_CHUNK, end)
            payload, url = self._get(f"intensity/{_api_time(cursor)}/{_api_time(chunk_end)}", normalised)
            try:
                for point in _points(payload["data"], use_actual=use_actual):
                    by_start.setdefault(point.start, point)  # chunk edges may repeat a period
            except (KeyError, TypeError, ValueError, IndexError, OverflowError) as exc:
                raise payload_error(self.name, url, exc) from None
            cursor = chunk_end
        return Forecast(
            region=normalised,
            provider=self.name,
            signal=self.signal,
            generated_at=self._clock(),
            points=tuple(p for p in by_start.values() if p.end > start and p.start < end),
            meta={"attribution": ATTRIBUTION, "kind": "actual" if use_actual else "issued forecast"},
        )

    def _postcode(self, raw: str, original: str) -> str:
        outward = raw.upper().replace(" ", "")
        if _OUTWARD.match(outward):
            return f"postcode:{outward}"
        raise InvalidInput(
            f"ukgrid region {original!r} is not 'national', a region id 1..17, a region name or an outward postcode",
            fix="use e.g. 'national', 13, 'London' or 'RG10' (the outward part of a postcode only)",
        )

    def _get(self, path: str, region: str) -> tuple[Any, str]:
        response = self._http.get(path)
        url = self._http.shown_url(response)
        if response.status_code != 200:
            raise ProviderError(
                f"ukgrid refused {url}: {error_message(self._http, response)}",
                fix="check the region or postcode and the time range (at most 14 days per request)",
            )
        if not response.content.strip():
            # The API answers some unknown postcodes with an empty body instead of an error.
            raise ProviderError(
                f"ukgrid returned an empty body for {region} from {url}",
                fix="the API does this for postcodes it does not know: check the outward code",
            )
        return self._http.json(response), url


def _regional_entries(data: Any) -> tuple[list[Any], dict[str, Any]]:
    """The slots of a regional response: the real API nests an object (``data.data``), docs show a list."""
    block = data[0] if isinstance(data, list) else data
    meta = {k: block[k] for k in ("regionid", "dnoregion", "shortname", "postcode") if k in block}
    entries = block["data"]
    if not isinstance(entries, list):
        raise TypeError("data.data is not a list")
    return entries, meta


def _points(entries: Any, *, use_actual: bool) -> list[ForecastPoint]:
    if not isinstance(entries, list):
        raise TypeError("data is not a list")
    points = []
    for entry in entries:
        intensity = entry["intensity"]
        forecast = intensity.get("forecast")
        value, estimated = forecast, False
        if use_actual:
            actual = intensity.get("actual")
            value, estimated = (actual, False) if actual is not None else (forecast, forecast is not None)
        points.append(
            ForecastPoint(
                start=parse_time(entry["from"], "from"),
                end=parse_time(entry["to"], "to"),
                value=value,  # checked by ForecastPoint: NaN, negative or absurd refuses the answer
                estimated=estimated,
            )
        )
    return points
