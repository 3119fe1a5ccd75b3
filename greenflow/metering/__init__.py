"""Energy metering: NVML energy counters and sampled power on GPUs, RAPL on CPUs and DRAM, labelled
estimates where neither can be read, a declared draw for stand-in work (labelled ``simulated``), and the
time-weighted join of energy with carbon intensity.

Start with :class:`Meter` (windows → :class:`Measurement`) and :func:`emissions`
(:class:`Measurement` x :class:`~greenflow.intensity.forecast.Forecast` → :class:`CarbonAccount`).
"""

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
