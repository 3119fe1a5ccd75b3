"""Carbon-intensity forecasts: the model, the providers, the shared cache and the outage policy."""

# The names below are imported on first use (PEP 562): importing one submodule (as `greenflow run` does
# on its fast path) must not import every other one.
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from greenflow.intensity.cache import (
        CachedForecast,
        ForecastCache,
        InMemorySharedStore,
        SharedForecastStore,
    )
    from greenflow.intensity.forecast import (
        LBS_PER_MWH_TO_G_PER_KWH,
        UNIT,
        EmissionFactor,
        Forecast,
        ForecastPoint,
        Signal,
    )
    from greenflow.intensity.policy import Decision, OutagePolicy, RetryUntil, RunNow, UseForecast
    from greenflow.intensity.providers.base import (
        PROVIDERS,
        IntensityProvider,
        ProviderAuthError,
        ProviderUnavailable,
        get_provider,
    )

_WHERE: dict[str, str] = {
    "CachedForecast": "greenflow.intensity.cache",
    "ForecastCache": "greenflow.intensity.cache",
    "InMemorySharedStore": "greenflow.intensity.cache",
    "SharedForecastStore": "greenflow.intensity.cache",
    "LBS_PER_MWH_TO_G_PER_KWH": "greenflow.intensity.forecast",
    "UNIT": "greenflow.intensity.forecast",
    "EmissionFactor": "greenflow.intensity.forecast",
    "Forecast": "greenflow.intensity.forecast",
    "ForecastPoint": "greenflow.intensity.forecast",
    "Signal": "greenflow.intensity.forecast",
    "Decision": "greenflow.intensity.policy",
    "OutagePolicy": "greenflow.intensity.policy",
    "RetryUntil": "greenflow.intensity.policy",
    "RunNow": "greenflow.intensity.policy",
    "UseForecast": "greenflow.intensity.policy",
    "PROVIDERS": "greenflow.intensity.providers.base",
    "IntensityProvider": "greenflow.intensity.providers.base",
    "ProviderAuthError": "greenflow.intensity.providers.base",
    "ProviderUnavailable": "greenflow.intensity.providers.base",
    "get_provider": "greenflow.intensity.providers.base",
}

__all__ = [
    "LBS_PER_MWH_TO_G_PER_KWH",
    "PROVIDERS",
    "UNIT",
    "CachedForecast",
    "Decision",
    "EmissionFactor",
    "Forecast",
    "ForecastCache",
    "ForecastPoint",
    "InMemorySharedStore",
    "IntensityProvider",
    "OutagePolicy",
    "ProviderAuthError",
    "ProviderUnavailable",
    "RetryUntil",
    "RunNow",
    "SharedForecastStore",
    "Signal",
    "UseForecast",
    "get_provider",
]


def __getattr__(name: str) -> Any:
    """Import an exported name's module when the name is first used."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
