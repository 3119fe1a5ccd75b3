"""The last resort: energy estimated from a power rating x utilisation, always labelled ``estimate``.

* GPU: the enforced power limit x mean GPU utilisation (the share of time a kernel ran), used only
  when NVML works but neither the energy counter nor power can be read. It over-charges light kernels
  and under-charges an idle-but-powered GPU; the label tells the reader so.
* CPU: the host's CPU TDP (all sockets, configured: ``cpu_tdp_watts`` or ``GREENFLOW_CPU_TDP_W``) x the
  share of the host's logical CPUs this process used. CPU time comes from :func:`os.times`, which counts
  this process's threads and the children it has already waited for (what ``greenflow run`` meters).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from greenflow.errors import InvalidInput
from greenflow.metering.measurement import JOULES_PER_KWH

ENV_CPU_TDP = "GREENFLOW_CPU_TDP_W"


@dataclass(frozen=True)
class CpuTimes:
    """CPU seconds used so far by this process and its waited-for children."""

    cpu_seconds: float

    @classmethod
    def now(cls) -> CpuTimes:
        """Read the process's CPU time now."""
        t = os.times()
        return cls(t.user + t.system + t.children_user + t.children_system)


@dataclass(frozen=True)
class CpuEstimate:
    """A CPU estimate and what it rests on."""

    kwh: float
    share: float  # of the host's logical CPUs, in [0, 1]
    tdp_watts: float


def cpu_tdp(explicit: float | None, environ: Mapping[str, str]) -> float | None:
    """The configured CPU TDP in watts (argument, else ``GREENFLOW_CPU_TDP_W``), or ``None``."""
    name = "cpu_tdp_watts" if explicit is not None else ENV_CPU_TDP
    raw: float | str | None = explicit if explicit is not None else environ.get(ENV_CPU_TDP)
    if raw is None or raw == "":
        return None
    try:
        watts = float(raw)
    except ValueError:
        raise InvalidInput(f"{name}={raw!r} is not a number", fix="give watts, e.g. 205") from None
    if not watts > 0:
        raise InvalidInput(f"{name}={raw!r} must be > 0", fix="give the CPUs' total TDP in watts, e.g. 205")
    return watts


def estimate_cpu(
    tdp_watts: float, cpu_seconds: float, duration_s: float, logical_cpus: int | None = None
) -> CpuEstimate:
    """TDP x (CPU seconds / (duration x logical CPUs)) x duration."""
    cpus = logical_cpus or os.cpu_count() or 1
    share = 0.0 if duration_s <= 0 else min(max(cpu_seconds / (duration_s * cpus), 0.0), 1.0)
    return CpuEstimate(tdp_watts * share * duration_s / JOULES_PER_KWH, share, tdp_watts)


def estimate_gpu_kwh(limit_watts: float, mean_utilization: float, duration_s: float) -> float:
    """Power limit x mean utilisation x duration, in kWh."""
    return limit_watts * min(max(mean_utilization, 0.0), 1.0) * duration_s / JOULES_PER_KWH
