"""Carbon-intensity forecasts: the model, the providers and the shared cache."""

from greenflow.intensity.forecast import (
    LBS_PER_MWH_TO_G_PER_KWH,
    UNIT,
    EmissionFactor,
    Forecast,
    ForecastPoint,
    Signal,
)

__all__ = ["LBS_PER_MWH_TO_G_PER_KWH", "UNIT", "EmissionFactor", "Forecast", "ForecastPoint", "Signal"]
