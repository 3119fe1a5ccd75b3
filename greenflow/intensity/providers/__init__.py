"""Carbon-intensity providers behind one interface; build them with :func:`get_provider`."""

from greenflow.intensity.providers.base import (
    PROVIDERS,
    IntensityProvider,
    ProviderAuthError,
    ProviderDataError,
    ProviderRedirectRefused,
    ProviderUnavailable,
    get_provider,
    is_retryable,
)

__all__ = [
    "PROVIDERS",
    "IntensityProvider",
    "ProviderAuthError",
    "ProviderDataError",
    "ProviderRedirectRefused",
    "ProviderUnavailable",
    "get_provider",
    "is_retryable",
]
