"""Carbon-intensity providers behind one interface; build them with :func:`get_provider`."""

from greenflow.intensity.providers.base import (
    PROVIDERS,
    IntensityProvider,
    ProviderAuthError,
    ProviderUnavailable,
    get_provider,
    is_retryable,
)

__all__ = [
    "PROVIDERS",
    "IntensityProvider",
    "ProviderAuthError",
    "ProviderUnavailable",
    "get_provider",
    "is_retryable",
]
