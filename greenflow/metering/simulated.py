"""Simulated GPU power: a declared wattage over the time a stand-in job represents, never a measurement.

A demo, a rehearsal or a test runs stand-ins for GPU work that last a second; metered honestly they
use milliwatt-hours, and what deferring them saves rounds to 0 g. :class:`SimulatedPower` gives such a
stand-in the energy of the job it stands for: ``watts`` x the represented duration, which is either a
fixed ``duration`` or the window's real duration x ``time_scale`` (a replayed trace at 3600x: each real
second of the stand-in stands for one trace hour, so the replay clock and the energy agree).

It is a backend of :class:`~greenflow.metering.meter.Meter` (``Meter(simulated_gpu=SimulatedPower(300))``,
or from the environment: ``GREENFLOW_SIMULATED_GPU_W=300`` and ``GREENFLOW_SIMULATED_TIME_SCALE=3600``),
so it reaches every entry point through the same seam as NVML and RAPL. It replaces the GPU reading
(the stand-in does not use the GPU); CPU and DRAM are metered as the host allows. The GPU component's
method is ``simulated``, its reason and the measurement's warnings say what the number rests on, and the
measurement spans the represented duration (the carbon join then charges the hours the job would have
run). Nothing labelled ``simulated`` is ever a measured figure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from greenflow.errors import InvalidInput
from greenflow.metering.measurement import JOULES_PER_KWH, ComponentEnergy, DeviceEnergy, Method

SIMULATED: Method = "simulated"
"""The method of a component whose energy was simulated (``method_gpu`` in the ledger)."""
ENV_SIMULATED_GPU_W = "GREENFLOW_SIMULATED_GPU_W"
ENV_SIMULATED_TIME_SCALE = "GREENFLOW_SIMULATED_TIME_SCALE"
# A node of the largest GPUs draws ~10 kW; more than 100 kW for one job is a typo, not a simulation.
MAX_WATTS = 100_000.0
MAX_TIME_SCALE = 1e6


@dataclass(frozen=True)
class SimulatedPower:
    """A declared GPU power draw for stand-in work: energy = ``watts`` x the represented duration.

    Args:
        watts: the draw of the GPU(s) the stand-in represents (e.g. 300 for one A100 under load).
        duration: the represented duration of every window, whatever its real length; ``None``:
            the window's real duration x ``time_scale``.
        time_scale: represented seconds per real second (the replay speed in a replayed demo).
        device: the name the ledger shows for the simulated device.
    """

    watts: float
    duration: timedelta | None = None
    time_scale: float = 1.0
    device: str = "simulated-gpu"

    def __post_init__(self) -> None:
        _check_number(self.watts, "watts", MAX_WATTS, "give the GPU's draw in watts, e.g. 300")
        _check_number(
            self.time_scale, "time_scale", MAX_TIME_SCALE, "give represented seconds per real second, e.g. 3600"
        )
        if self.duration is not None and not self.duration > timedelta(0):
            raise InvalidInput(f"duration={self.duration!r} must be > 0", fix="give the represented duration, e.g. 2h")
        object.__setattr__(self, "watts", float(self.watts))
        object.__setattr__(self, "time_scale", float(self.time_scale))

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> SimulatedPower | None:
        """``GREENFLOW_SIMULATED_GPU_W`` (and ``GREENFLOW_SIMULATED_TIME_SCALE``, default 1), or ``None``."""
        raw = environ.get(ENV_SIMULATED_GPU_W, "").strip()
        if not raw:
            return None
        scale = environ.get(ENV_SIMULATED_TIME_SCALE, "").strip() or "1"
        return cls(
            watts=_env_number(ENV_SIMULATED_GPU_W, raw, "give the simulated GPU's draw in watts, e.g. 300"),
            time_scale=_env_number(
                ENV_SIMULATED_TIME_SCALE, scale, "give represented seconds per real second, e.g. 3600"
            ),
        )

    def represented_s(self, real_s: float) -> float:
        """Seconds of GPU work a window of ``real_s`` real seconds stands for."""
        if self.duration is not None:
            return self.duration.total_seconds()
        return max(real_s, 0.0) * self.time_scale

    def kwh(self, real_s: float) -> float:
        """The simulated energy of a window of ``real_s`` real seconds: watts x represented duration."""
        return self.watts * self.represented_s(real_s) / JOULES_PER_KWH

    def describe(self, real_s: float) -> str:
        """What the number rests on, for the entry's measurement notes."""
        represented = _span(self.represented_s(real_s))
        if self.duration is not None:
            basis = f"a declared duration ({real_s:.2f} s of stand-in work)"
        else:
            basis = f"{real_s:.2f} s of stand-in work x {self.time_scale:g}"
        return (
            f"simulated, not measured: a declared {self.watts:g} W x {represented} represented ({basis}); "
            "the energy a real GPU at that draw would have used"
        )

    @property
    def setup_reason(self) -> str:
        """The plan before anything runs (``Meter.setup``)."""
        span = (
            _span(self.duration.total_seconds())
            if self.duration is not None
            else f"each real second x {self.time_scale:g}"
        )
        return f"simulated, not measured: a declared {self.watts:g} W over {span}"

    def component(self, real_s: float) -> ComponentEnergy:
        """The GPU component of a window of ``real_s`` real seconds, labelled ``simulated``."""
        kwh = self.kwh(real_s)
        reason = self.describe(real_s)
        device = DeviceEnergy(self.device, kwh, SIMULATED, reason, name=f"simulated {self.watts:g} W GPU")
        return ComponentEnergy(kwh, SIMULATED, reason, (device,))


def _span(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def _check_number(value: object, name: str, high: float, fix: str) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 < value <= high
    ):
        raise InvalidInput(f"{name}={value!r} is not a number in (0, {high:g}]", fix=fix)


def _env_number(name: str, raw: str, fix: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise InvalidInput(f"{name}={raw!r} is not a number", fix=fix) from None
