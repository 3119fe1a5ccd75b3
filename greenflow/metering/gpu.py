"""GPU energy per physical GPU: the energy counter first, then sampled power, then an estimate.

Each GPU is probed once when the meter is built, so a window knows which readings to take:

1. ``nvmlDeviceGetTotalEnergyConsumption`` (mJ since driver load, Volta and newer), read at the window's
   start and end. A counter that went backwards (driver reload, GPU reset) or could not be read at the
   end invalidates the reading and the window falls back to step 2, with a warning.
2. Instant power sampled by the background thread and integrated (trapezoid). It runs even when the
   counter works: a counter reset cannot be foreseen, and the trace gives the carbon join its shape.
3. Enforced power limit x mean utilisation, labelled ``estimate``, when NVML works but neither energy
   nor power can be read. Otherwise ``None`` with the reasons of all three.

MIG slices are metered as the whole parent GPU's energy x a declared ``mig_fraction`` (NVML has no
per-slice energy), and flagged ``apportioned``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, TypeVar

from greenflow.metering.estimate import estimate_gpu_kwh
from greenflow.metering.gpu_selection import SelectedGpu
from greenflow.metering.measurement import (
    JOULES_PER_KWH,
    METHOD_RANK,
    ComponentEnergy,
    DeviceEnergy,
    Method,
)
from greenflow.metering.nvml import NvmlBackend
from greenflow.metering.sampler import DEFAULT_MAX_SAMPLES, RateChannel, Snapshot

COUNTER_UPDATE_PERIOD_S = 0.1
COUNTER_BACKWARDS = "energy counter went backwards (driver reload?): fell back to power sampling"
_FALLBACK_WORDS: dict[Method | None, str] = {"nvml_power_sampling": "power sampling", "estimate": "an estimate"}
SHORT_WINDOW = "window shorter than counter update period (~100 ms)"

T = TypeVar("T")
Counters = Mapping[str, int | str]  # GPU UUID -> mJ, or the error text when the read failed


@dataclass(frozen=True)
class GpuProbe:
    """What one GPU supports, learnt once when the meter is built."""

    gpu: SelectedGpu
    counter: bool
    counter_reason: str | None
    power: Literal["instant", "average"] | None
    power_reason: str | None
    limit_watts: float | None
    utilization: bool
    estimate_reason: str | None
    mig_mode: bool

    @property
    def power_key(self) -> str:
        """Sampler channel of this GPU's power."""
        return f"gpu:{self.gpu.uuid}"

    @property
    def util_key(self) -> str:
        """Sampler channel of this GPU's utilisation (only sampled when power cannot be read)."""
        return f"gpu-util:{self.gpu.uuid}"


class GpuSet:
    """The job's physical GPUs, how each one is read, and the energy of a window on them."""

    def __init__(self, backend: NvmlBackend, gpus: tuple[SelectedGpu, ...], mig_fraction: float | None) -> None:
        self.backend = backend
        self.mig_fraction = mig_fraction
        self.probes = tuple(self._probe(gpu) for gpu in gpus)
        self.warnings: tuple[str, ...] = tuple(self._setup_warnings())

    @property
    def uuids(self) -> tuple[str, ...]:
        """Identities to record: MIG UUIDs where slices were selected, else the GPU's UUID."""
        return tuple(uuid for p in self.probes for uuid in (p.gpu.mig_uuids or (p.gpu.uuid,)))

    def channels(self, max_samples: int = DEFAULT_MAX_SAMPLES) -> list[RateChannel]:
        """Sampler channels: power for every GPU that has it, utilisation for those that do not."""
        channels: list[RateChannel] = []
        for probe in self.probes:
            handle = probe.gpu.handle
            if probe.power == "instant":
                reader = _PowerReader(self.backend, handle, instant=True)
                channels.append(RateChannel(probe.power_key, reader, max_samples=max_samples))
            elif probe.power == "average":
                reader = _PowerReader(self.backend, handle, instant=False)
                channels.append(RateChannel(probe.power_key, reader, max_samples=max_samples))
            elif probe.utilization:
                read_util = functools.partial(self.backend.utilization, handle)
                channels.append(RateChannel(probe.util_key, read_util, keep_samples=False))
        return channels

    def read_counters(self) -> dict[str, int | str]:
        """Energy counters (mJ) of the GPUs that have one; the error text where a read failed."""
        readings: dict[str, int | str] = {}
        for probe in self.probes:
            if not probe.counter:
                continue
            try:
                readings[probe.gpu.uuid] = self.backend.total_energy_mj(probe.gpu.handle)
            except Exception as exc:
                if not self.backend.is_error(exc):
                    raise
                readings[probe.gpu.uuid] = self.backend.describe(exc)
        return readings

    def settle(
        self, begin: Counters, end: Counters, first: Snapshot, last: Snapshot
    ) -> tuple[ComponentEnergy, list[str]]:
        """The GPU component of a window from its boundary counters and sampler snapshots."""
        warnings: list[str] = []
        devices = [self._device(p, begin, end, first, last, warnings) for p in self.probes]
        duration = last.t - first.t
        if duration < COUNTER_UPDATE_PERIOD_S and any(d.method == "nvml_energy_counter" for d in devices):
            warnings.append(SHORT_WINDOW)
        unmeasured = [d for d in devices if d.kwh is None]
        if unmeasured:
            reason = "; ".join(f"{d.device}: {d.reason}" for d in unmeasured)
            if len(unmeasured) < len(devices):
                reason = f"{len(unmeasured)} of {len(devices)} GPUs not measured ({reason})"
            return ComponentEnergy.missing(reason, tuple(devices)), warnings
        methods = {d.method for d in devices if d.method is not None}
        method: Method = max(methods, key=METHOD_RANK.__getitem__)
        reasons = [f"{d.device}: {d.reason}" for d in devices if d.reason]
        return (
            ComponentEnergy(
                kwh=sum(d.kwh for d in devices if d.kwh is not None),
                method=method,
                reason="; ".join(reasons) or None,
                devices=tuple(devices),
                apportioned=any(d.fraction is not None for d in devices),
            ),
            warnings,
        )

    # -- one device ------------------------------------------------------------------------------
    def _device(
        self,
        probe: GpuProbe,
        begin: Counters,
        end: Counters,
        first: Snapshot,
        last: Snapshot,
        warnings: list[str],
    ) -> DeviceEnergy:
        uuid = probe.gpu.uuid
        if probe.counter:
            start_mj, end_mj = begin.get(uuid), end.get(uuid)
            if isinstance(start_mj, int) and isinstance(end_mj, int) and end_mj >= start_mj:
                return self._apportion(probe, (end_mj - start_mj) / 1000.0, "nvml_energy_counter", None)
            if isinstance(start_mj, int) and isinstance(end_mj, int):
                problem = "energy counter went backwards (driver reload?)"
            else:
                problem = f"energy counter unreadable ({start_mj if isinstance(start_mj, str) else end_mj})"
        joules, method, reason = self._fallback(probe, first, last, warnings)
        if probe.counter:
            warnings.append(f"{uuid}: {problem}: fell back to {_FALLBACK_WORDS.get(method, 'nothing')}")
        return self._apportion(probe, joules, method, reason)

    def _fallback(
        self, probe: GpuProbe, first: Snapshot, last: Snapshot, warnings: list[str]
    ) -> tuple[float | None, Method | None, str | None]:
        uuid = probe.gpu.uuid
        duration = last.t - first.t
        why_not = [r for r in (probe.counter_reason, probe.power_reason) if r]
        if probe.power is not None:
            delta = _delta(first, last, probe.power_key)
            if delta is not None:
                joules, failures = delta
                if failures:
                    warnings.append(f"{uuid}: {failures} power read(s) failed; integrated across the gaps")
                return joules, "nvml_power_sampling", "; ".join(why_not) or None
            why_not.append(f"no power reading succeeded in the window ({_last_error(last, probe.power_key)})")
        if probe.utilization and probe.limit_watts is not None:
            delta = _delta(first, last, probe.util_key)
            if delta is not None and duration > 0:
                mean_util = delta[0] / duration
                kwh = estimate_gpu_kwh(probe.limit_watts, mean_util, duration)
                basis = f"estimate: power limit {probe.limit_watts:.0f} W x mean utilisation {mean_util:.0%}"
                return kwh * JOULES_PER_KWH, "estimate", "; ".join([*why_not, basis])
        if probe.estimate_reason:
            why_not.append(probe.estimate_reason)
        return None, None, "; ".join(why_not) or "no GPU reading available"

    def _apportion(
        self, probe: GpuProbe, joules: float | None, method: Method | None, reason: str | None
    ) -> DeviceEnergy:
        gpu = probe.gpu
        whole = None if joules is None else joules / JOULES_PER_KWH
        if not gpu.mig_uuids:
            return DeviceEnergy(gpu.uuid, whole, method, reason, gpu.name, gpu.index)
        device = ",".join(gpu.mig_uuids)
        if self.mig_fraction is None:
            missing = (
                "MIG slice selected but no mig_fraction declared (this job's share of the GPU, e.g. 1/7 "
                "for a 1g slice of 7): NVML only reads the whole GPU"
            )
            return DeviceEnergy(device, None, None, missing, gpu.name, gpu.index, None, whole)
        kwh = None if whole is None else whole * self.mig_fraction
        return DeviceEnergy(device, kwh, method, reason, gpu.name, gpu.index, self.mig_fraction, whole)

    # -- probing ---------------------------------------------------------------------------------
    def _probe(self, gpu: SelectedGpu) -> GpuProbe:
        handle = gpu.handle
        _, counter_error = self._attempt(lambda: self.backend.total_energy_mj(handle))
        power: Literal["instant", "average"] | None = None
        power_reason = None
        _, instant_error = self._attempt(lambda: self.backend.instant_power_mw(handle))
        if instant_error is None:
            power = "instant"
        else:
            _, average_error = self._attempt(lambda: self.backend.average_power_mw(handle))
            if average_error is None:
                power = "average"
            else:
                power_reason = f"power unreadable ({average_error})"
        limit_mw: float | None = None
        utilization = False
        estimate_reason = None
        if power is None:
            # Only worth asking when the estimate may be needed.
            limit_mw, limit_error = self._attempt(lambda: self.backend.power_limit_mw(handle))
            _, util_error = self._attempt(lambda: self.backend.utilization(handle))
            utilization = util_error is None
            problems = [f"power limit ({limit_error})"] if limit_error else []
            problems += [f"utilisation ({util_error})"] if util_error else []
            if problems:
                estimate_reason = f"no estimate: {', '.join(problems)} unreadable"
        mig_mode, _ = self._attempt(lambda: self.backend.mig_enabled(handle))
        return GpuProbe(
            gpu=gpu,
            counter=counter_error is None,
            counter_reason=None if counter_error is None else f"energy counter unavailable ({counter_error})",
            power=power,
            power_reason=power_reason,
            limit_watts=None if limit_mw is None else limit_mw / 1000.0,
            utilization=utilization,
            estimate_reason=estimate_reason,
            mig_mode=bool(mig_mode),
        )

    def _attempt(self, call: Callable[[], T]) -> tuple[T | None, str | None]:
        """The call's result and ``None``, or ``None`` and the NVML error text."""
        try:
            return call(), None
        except Exception as exc:
            if not self.backend.is_error(exc):
                raise
            return None, self.backend.describe(exc)

    def _setup_warnings(self) -> list[str]:
        warnings = []
        for probe in self.probes:
            if probe.mig_mode and not probe.gpu.mig_uuids:
                warnings.append(
                    f"{probe.gpu.uuid} is in MIG mode but selected whole: its energy includes other tenants' "
                    "slices; select the MIG device in CUDA_VISIBLE_DEVICES and declare mig_fraction"
                )
        if self.mig_fraction is not None and not any(p.gpu.mig_uuids for p in self.probes):
            warnings.append("mig_fraction given but no MIG device selected: not applied")
        return warnings


class _PowerReader:
    """A zero-argument callable reading one GPU's power in watts (what a sampler channel calls)."""

    __slots__ = ("backend", "handle", "instant")

    def __init__(self, backend: NvmlBackend, handle: object, instant: bool) -> None:
        self.backend = backend
        self.handle = handle
        self.instant = instant

    def __call__(self) -> float:
        if self.instant:
            return self.backend.instant_power_mw(self.handle) / 1000.0
        return self.backend.average_power_mw(self.handle) / 1000.0


def _delta(first: Snapshot, last: Snapshot, key: str) -> tuple[float, int] | None:
    """Integral over the window and failed reads in it; ``None`` when no read succeeded in the window."""
    a, b = first.channels.get(key), last.channels.get(key)
    if a is None or b is None or b.reads - a.reads < 1:
        return None
    return b.integral - a.integral, b.failures - a.failures


def _last_error(snapshot: Snapshot, key: str) -> str:
    state = snapshot.channels.get(key)
    return state.last_error if state and state.last_error else "no reading"
