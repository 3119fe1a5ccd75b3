"""Energy metering: NVML energy counters and sampled power on GPUs, RAPL on CPUs and DRAM, labelled
estimates where neither can be read, a declared draw for stand-in work (labelled ``simulated``), and the
time-weighted join of energy with carbon intensity.

Start with :class:`Meter` (windows → :class:`Measurement`) and :func:`emissions`
(:class:`Measurement` x :class:`~greenflow.intensity.forecast.Forecast` → :class:`CarbonAccount`).
"""

# The names below are imported on first use (PEP 562): importing one submodule (as `greenflow run` does
# on its fast path) must not import every other one.
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from greenflow.metering.carbon import CarbonAccount, SlotCharge, emissions
    from greenflow.metering.measurement import (
        COMPONENTS,
        Component,
        ComponentEnergy,
        DeviceEnergy,
        IdleBaseline,
        Measurement,
        Method,
        PowerSample,
        PowerTrace,
    )
    from greenflow.metering.meter import ComponentSetup, Meter, MeterSetup, Window
    from greenflow.metering.nvml import NvmlBackend, NvmlUnavailable, default_backend
    from greenflow.metering.simulated import SIMULATED, SimulatedPower

_WHERE: dict[str, str] = {
    "CarbonAccount": "greenflow.metering.carbon",
    "SlotCharge": "greenflow.metering.carbon",
    "emissions": "greenflow.metering.carbon",
    "COMPONENTS": "greenflow.metering.measurement",
    "Component": "greenflow.metering.measurement",
    "ComponentEnergy": "greenflow.metering.measurement",
    "DeviceEnergy": "greenflow.metering.measurement",
    "IdleBaseline": "greenflow.metering.measurement",
    "Measurement": "greenflow.metering.measurement",
    "Method": "greenflow.metering.measurement",
    "PowerSample": "greenflow.metering.measurement",
    "PowerTrace": "greenflow.metering.measurement",
    "ComponentSetup": "greenflow.metering.meter",
    "Meter": "greenflow.metering.meter",
    "MeterSetup": "greenflow.metering.meter",
    "Window": "greenflow.metering.meter",
    "NvmlBackend": "greenflow.metering.nvml",
    "NvmlUnavailable": "greenflow.metering.nvml",
    "default_backend": "greenflow.metering.nvml",
    "SIMULATED": "greenflow.metering.simulated",
    "SimulatedPower": "greenflow.metering.simulated",
}

__all__ = [
    "COMPONENTS",
    "SIMULATED",
    "CarbonAccount",
    "Component",
    "ComponentEnergy",
    "ComponentSetup",
    "DeviceEnergy",
    "IdleBaseline",
    "Measurement",
    "Meter",
    "MeterSetup",
    "Method",
    "NvmlBackend",
    "NvmlUnavailable",
    "PowerSample",
    "PowerTrace",
    "SimulatedPower",
    "SlotCharge",
    "Window",
    "default_backend",
    "emissions",
]


def __getattr__(name: str) -> Any:
    """Import an exported name's module when the name is first used."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
