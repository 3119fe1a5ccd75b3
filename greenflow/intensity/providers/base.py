"""The one interface every carbon-intensity provider implements, its errors, and the registry.

Provider modules are imported lazily by :func:`get_provider` so that importing greenflow (for example
while Airflow parses a DAG) does not pull in ``requests`` or read trace files.
"""

from __future__ import annotations

import importlib
import inspect
import math
import os
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from greenflow.clock import require_aware
from greenflow.errors import InvalidInput, ProviderError
from greenflow.intensity.forecast import Forecast, Signal

# name -> "module:Class"; the order is the order users see in errors and help texts.
_REGISTRY: dict[str, str] = {
    "ukgrid": "greenflow.intensity.providers.ukgrid:UKGridProvider",
    "electricitymaps": "greenflow.intensity.providers.electricitymaps:ElectricityMapsProvider",
    "watttime": "greenflow.intensity.providers.watttime:WattTimeProvider",
    "carbon-aware-sdk": "greenflow.intensity.providers.carbon_aware_sdk:CarbonAwareSDKProvider",
    "trace": "greenflow.intensity.providers.trace:TraceProvider",
}
PROVIDERS: list[str] = list(_REGISTRY)
"""Names accepted by :func:`get_provider`."""


@runtime_checkable
class IntensityProvider(Protocol):
    """A source of carbon-intensity forecasts (and actuals where the API has them), in gCO2e/kWh."""

    name: str
    signal: Signal
    refresh_interval: timedelta
    """How often the provider publishes a new forecast; the cache uses it as the TTL (0: never cache)."""

    def forecast(self, region: str, *, start: datetime | None = None, hours: float = 48) -> Forecast:
        """The forecast for ``region`` covering [start, start + hours) (start defaults to now).

        Providers return what their API has inside that span; a shorter horizon shows as an earlier
        :attr:`Forecast.end`, never as invented values.
        """
        ...

    def history(self, region: str, start: datetime, end: datetime) -> Forecast:
        """Actual (settled) intensity over [start, end) where the API has it."""
        ...

    def validate_region(self, region: str) -> str:
        """The normalised region, or :class:`InvalidInput` naming it and the fix. Never uses the network."""
        ...


@runtime_checkable
class IssuedHistoryProvider(Protocol):
    """A provider that also serves the forecasts it issued for past slots (not every API keeps them).

    With these next to :meth:`IntensityProvider.history`'s actuals, a forecast correction
    (:mod:`greenflow.intensity.correction`) learns the forecast's recent errors.
    """

    def issued_history(self, region: str, start: datetime, end: datetime) -> Forecast:
        """For each past slot in [start, end), the value the provider had forecast for it before it began."""
        ...


class ProviderUnavailable(ProviderError):
    """The provider could not be reached or kept failing (network, timeouts, 429, 5xx) within the budget.

    Transient by nature: the outage policy may wait and retry.
    """

    retryable = True


class ProviderAuthError(ProviderError):
    """The provider refused the credentials, or the account's plan does not cover the region or signal.

    Retrying will not help until someone changes the configuration.
    """

    retryable = False


class ProviderDataError(ProviderError):
    """The provider answered, but with malformed data: a payload off the documented shape, an intensity
    that is NaN, infinite, negative or absurd, unreadable times, or no value at all for the window asked.

    Nothing of such an answer is planned on, cached or recorded; the outage policy decides what runs.
    Retryable: the provider's next publication may be sound again.
    """

    retryable = True


class ProviderRedirectRefused(ProviderError):
    """The provider redirected a request to another host, where its credentials must not go.

    Not retryable: the configured base URL needs changing (or the provider is misbehaving).
    """

    retryable = False


def is_retryable(error: ProviderError) -> bool:
    """Whether waiting and asking again can plausibly fix ``error`` (auth and plan errors cannot)."""
    return bool(getattr(error, "retryable", True))


def get_provider(name: str, **options: Any) -> IntensityProvider:
    """Build the provider called ``name`` with ``options`` (tokens, base URL, retry settings, ...).

    Options not given fall back to the provider's environment variables (``GREENFLOW_<PROVIDER>_...``).
    Raises :class:`InvalidInput` for an unknown name or option, listing the accepted ones.
    """
    key = (name or "").strip().lower()
    if key not in _REGISTRY:
        raise InvalidInput(f"unknown intensity provider {name!r}", fix=f"use one of: {', '.join(PROVIDERS)}")
    module_name, class_name = _REGISTRY[key].split(":")
    cls: type[Any] = getattr(importlib.import_module(module_name), class_name)
    accepted = [
        p.name
        for p in inspect.signature(cls).parameters.values()
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise InvalidInput(
            f"provider {key!r} has no option {', '.join(repr(u) for u in unknown)}",
            fix=f"its options are: {', '.join(accepted)}",
        )
    provider: IntensityProvider = cls(**options)
    return provider


# -- helpers the provider modules share --------------------------------------------------------------
def env_option(value: str | None, env_name: str, default: str | None = None) -> str | None:
    """An explicit option wins, then the environment variable, then the default (blank counts as unset)."""
    if value is not None and value.strip():
        return value.strip()
    from_env = os.environ.get(env_name, "").strip()
    return from_env or default


def check_hours(hours: float, provider: str) -> float:
    """Reject a non-positive or non-finite horizon early, naming the value."""
    if isinstance(hours, bool) or not isinstance(hours, (int, float)) or not math.isfinite(hours) or hours <= 0:
        raise InvalidInput(f"hours={hours!r} for {provider} is not a positive number", fix="give e.g. 24 or 48")
    return float(hours)


def forecast_window(
    start: datetime | None, hours: float, provider: str, clock: Callable[[], datetime]
) -> tuple[datetime, datetime]:
    """[from, to) for a forecast request: ``start`` (aware) or now, plus ``hours``."""
    hours = check_hours(hours, provider)
    begin = clock() if start is None else require_aware(start, "start")
    return begin, begin + timedelta(hours=hours)


def history_window(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """Validated [start, end) for a history request."""
    start, end = require_aware(start, "start"), require_aware(end, "end")
    if end <= start:
        raise InvalidInput(
            f"history end {end.isoformat()} is not after start {start.isoformat()}",
            fix="give an end later than the start",
        )
    return start, end


def payload_error(provider: str, url: str, detail: object) -> ProviderDataError:
    """The error for a response that is not sound data: off the documented shape, or a bad value in it.

    ``detail`` is the parsing error (an :class:`InvalidInput` from the slot check names the bad value).
    """
    if isinstance(detail, InvalidInput):
        detail = detail.message
    return ProviderDataError(
        f"{provider} returned malformed data from {url}: {detail}",
        fix="nothing of this answer is used; if it persists, check the base URL points at the provider's API",
    )


def require_values(forecast: Forecast, url: str, start: datetime, end: datetime) -> Forecast:
    """``forecast`` if it has at least one value inside [start, end), else :class:`ProviderDataError`.

    An empty answer (``{"data": []}``), one whose slots all lie outside the window, or one whose values
    are all missing gives nothing to plan on: that is the provider failing, and the outage policy (not
    the planner) decides what happens.
    """
    if any(p.value is not None and p.end > start and p.start < end for p in forecast.points):
        return forecast
    held = "no slots" if not forecast.points else f"{len(forecast.points)} slots, none with a value"
    raise ProviderDataError(
        f"{forecast.provider} returned malformed data from {url}: no intensity for {forecast.region} "
        f"between {start.isoformat()} and {end.isoformat()} ({held})",
        fix="the provider has no forecast for this window; check the region, or retry later",
    )
