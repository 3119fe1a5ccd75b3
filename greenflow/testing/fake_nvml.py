"""A programmable stand-in for ``pynvml``, for tests, benchmarks and demos on machines without a GPU.

Every function is ``unittest.mock.create_autospec`` of the *real* ``nvidia-ml-py`` function (so a call
with the wrong arguments fails as it would on a GPU host), errors are the real ``NVMLError_*`` classes,
and constants and ctypes structures are the real ones. Behaviour is programmed per GPU: a power trace
(watts as a function of time), an energy counter (derived from the trace, a function, or a scripted
sequence of readings, e.g. one that goes backwards), unsupported calls, MIG slices. ``call_cost_s``
makes every device call spin for that long, to stand in for what a real NVML call costs;
``autospec=False`` drops the mock layer (and :meth:`FakeNvml.calls`) for benchmarks.

Requires ``nvidia-ml-py``; nothing in greenflow outside tests imports this module.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any
from unittest.mock import create_autospec

import pynvml

from greenflow.metering.nvml import NvmlBackend

Trace = float | Callable[[float], float]

# Functions the meter calls; each becomes an autospec of the real one with a programmed side effect.
_FUNCTIONS = (
    "nvmlInit",
    "nvmlShutdown",
    "nvmlDeviceGetCount",
    "nvmlDeviceGetHandleByIndex",
    "nvmlDeviceGetHandleByUUID",
    "nvmlDeviceGetUUID",
    "nvmlDeviceGetName",
    "nvmlDeviceGetDeviceHandleFromMigDeviceHandle",
    "nvmlDeviceGetMigMode",
    "nvmlDeviceGetTotalEnergyConsumption",
    "nvmlDeviceGetFieldValues",
    "nvmlDeviceGetPowerUsage",
    "nvmlDeviceGetEnforcedPowerLimit",
    "nvmlDeviceGetUtilizationRates",
)


@dataclass
class FakeGpu:
    """One programmable GPU.

    ``power_w`` is watts, constant or a function of seconds since the fake was created. ``energy_mj``
    is the counter: ``None`` integrates ``power_w`` (exactly for a constant, numerically otherwise), a
    function of time, or a sequence of readings returned in turn (the last one repeats). ``unsupported``
    names pynvml functions that raise ``NVMLError_NotSupported`` on this GPU; ``errors`` maps a function
    name to any NVMLError class to raise instead. ``instant_field=False`` makes the instant-power field
    come back NOT_SUPPORTED, as on GPUs without it. ``mig_mode`` ``None`` means the GPU has no MIG.
    """

    uuid: str
    name: str = "NVIDIA A100-SXM4-40GB"
    power_w: Trace = 100.0
    energy_mj: Callable[[float], float] | Sequence[int] | None = None
    energy_offset_mj: int = 5_000_000_000
    instant_field: bool = True
    limit_w: float = 400.0
    utilization: Trace = 0.5
    unsupported: frozenset[str] = frozenset()
    errors: dict[str, type[pynvml.NVMLError]] = field(default_factory=dict)
    mig_mode: bool | None = None
    mig_uuids: tuple[str, ...] = ()
    power_reads: list[tuple[float, float]] = field(default_factory=list, repr=False)
    _scripted: list[int] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.energy_mj, Sequence):
            self._scripted = list(self.energy_mj)

    def watts(self, t: float) -> float:
        """The programmed power at ``t`` seconds."""
        return float(self.power_w(t) if callable(self.power_w) else self.power_w)

    def counter_mj(self, t: float) -> int:
        """The programmed energy counter at ``t`` seconds."""
        if self._scripted:
            return self._scripted.pop(0) if len(self._scripted) > 1 else self._scripted[0]
        if callable(self.energy_mj):
            return int(self.energy_mj(t))
        if not callable(self.power_w):
            return self.energy_offset_mj + int(self.power_w * t * 1000)
        steps = max(int(t / 0.001), 1)
        dt = t / steps
        joules = sum((self.watts(i * dt) + self.watts((i + 1) * dt)) / 2 * dt for i in range(steps))
        return self.energy_offset_mj + int(joules * 1000)


@dataclass(frozen=True)
class _Handle:
    gpu: int
    mig: str | None = None


class FakeNvml:
    """A pynvml-shaped namespace (``.module``) over :class:`FakeGpu` objects; see the module docstring."""

    def __init__(
        self,
        gpus: Iterable[FakeGpu] = (),
        *,
        init_error: type[pynvml.NVMLError] | None = None,
        call_cost_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        autospec: bool = True,
    ) -> None:
        self.gpus = list(gpus)
        self.init_error = init_error
        self.call_cost_s = call_cost_s
        self.initialised = 0
        self._clock = clock
        self._t0 = clock()
        self._lock = threading.Lock()
        module = SimpleNamespace()
        for name in dir(pynvml):
            value = getattr(pynvml, name)
            # Real constants, real error classes and real ctypes structures; functions come next.
            if name.startswith(("NVML", "c_nvml")) or (isinstance(value, type) and issubclass(value, Exception)):
                setattr(module, name, value)
        for name in _FUNCTIONS:
            function = getattr(self, f"_{name}")
            # Benchmarks pass autospec=False: a mock's own call overhead (~10 us) would be billed to
            # the sampler; tests keep the autospec so a wrong call fails as it would on a GPU host.
            setattr(
                module, name, create_autospec(getattr(pynvml, name), side_effect=function) if autospec else function
            )
        self.module: Any = module

    def backend(self) -> NvmlBackend:
        """A fresh :class:`NvmlBackend` over this fake."""
        return NvmlBackend(self.module)

    def now(self) -> float:
        """Seconds since the fake was created (the time axis of the programmed traces)."""
        return self._clock() - self._t0

    def calls(self, name: str) -> int:
        """How many times the pynvml function ``name`` was called."""
        return int(getattr(self.module, name).call_count)

    # -- plumbing --------------------------------------------------------------------------------
    def _device(self, handle: _Handle, function: str) -> FakeGpu:
        if not self.initialised:
            raise pynvml.NVMLError_Uninitialized()
        if self.call_cost_s:
            end = time.perf_counter() + self.call_cost_s
            while time.perf_counter() < end:
                pass
        gpu = self.gpus[handle.gpu]
        if function in gpu.errors:
            raise gpu.errors[function]()
        if function in gpu.unsupported:
            raise pynvml.NVMLError_NotSupported()
        return gpu

    # -- the functions ---------------------------------------------------------------------------
    def _nvmlInit(self) -> None:
        if self.init_error is not None:
            raise self.init_error()
        with self._lock:
            self.initialised += 1

    def _nvmlShutdown(self) -> None:
        with self._lock:
            if not self.initialised:
                raise pynvml.NVMLError_Uninitialized()
            self.initialised -= 1

    def _nvmlDeviceGetCount(self) -> int:
        if not self.initialised:
            raise pynvml.NVMLError_Uninitialized()
        return len(self.gpus)

    def _nvmlDeviceGetHandleByIndex(self, index: int) -> _Handle:
        if not 0 <= index < len(self.gpus):
            raise pynvml.NVMLError_InvalidArgument()
        return _Handle(index)

    def _nvmlDeviceGetHandleByUUID(self, uuid: str) -> _Handle:
        for i, gpu in enumerate(self.gpus):
            if gpu.uuid == uuid:
                return _Handle(i)
            if uuid in gpu.mig_uuids:
                return _Handle(i, uuid)
        raise pynvml.NVMLError_NotFound()

    def _nvmlDeviceGetUUID(self, handle: _Handle) -> str:
        return handle.mig or self._device(handle, "nvmlDeviceGetUUID").uuid

    def _nvmlDeviceGetName(self, handle: _Handle) -> str:
        return self._device(handle, "nvmlDeviceGetName").name

    def _nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, handle: _Handle) -> _Handle:
        if handle.mig is None:
            raise pynvml.NVMLError_InvalidArgument()
        return _Handle(handle.gpu)

    def _nvmlDeviceGetMigMode(self, handle: _Handle) -> list[int]:
        gpu = self._device(handle, "nvmlDeviceGetMigMode")
        if gpu.mig_mode is None:
            raise pynvml.NVMLError_NotSupported()
        mode = pynvml.NVML_DEVICE_MIG_ENABLE if gpu.mig_mode else pynvml.NVML_DEVICE_MIG_DISABLE
        return [mode, mode]

    def _nvmlDeviceGetTotalEnergyConsumption(self, handle: _Handle) -> int:
        gpu = self._device(handle, "nvmlDeviceGetTotalEnergyConsumption")
        with self._lock:
            return gpu.counter_mj(self.now())

    def _nvmlDeviceGetFieldValues(self, handle: _Handle, field_ids: list[int]) -> Any:
        gpu = self._device(handle, "nvmlDeviceGetFieldValues")
        values = (pynvml.c_nvmlFieldValue_t * len(field_ids))()
        for i, field_id in enumerate(field_ids):
            values[i].fieldId = field_id
            if field_id == pynvml.NVML_FI_DEV_POWER_INSTANT and gpu.instant_field:
                values[i].nvmlReturn = pynvml.NVML_SUCCESS
                values[i].valueType = pynvml.NVML_VALUE_TYPE_UNSIGNED_INT
                values[i].value.uiVal = self._power_mw(gpu)
            else:
                values[i].nvmlReturn = pynvml.NVML_ERROR_NOT_SUPPORTED
        return values

    def _nvmlDeviceGetPowerUsage(self, handle: _Handle) -> int:
        return self._power_mw(self._device(handle, "nvmlDeviceGetPowerUsage"))

    def _nvmlDeviceGetEnforcedPowerLimit(self, handle: _Handle) -> int:
        return int(self._device(handle, "nvmlDeviceGetEnforcedPowerLimit").limit_w * 1000)

    def _nvmlDeviceGetUtilizationRates(self, handle: _Handle) -> Any:
        gpu = self._device(handle, "nvmlDeviceGetUtilizationRates")
        share = gpu.utilization(self.now()) if callable(gpu.utilization) else gpu.utilization
        return pynvml.c_nvmlUtilization_t(gpu=round(share * 100), memory=0)

    def _power_mw(self, gpu: FakeGpu) -> int:
        t = self.now()
        watts = gpu.watts(t)
        gpu.power_reads.append((t, watts))
        return round(watts * 1000)
