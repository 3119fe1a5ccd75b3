"""Carbon-intensity forecasts: the model, the providers, the shared cache and the outage policy."""

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
