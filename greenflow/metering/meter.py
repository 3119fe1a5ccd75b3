"""The meter: named windows over the GPU, CPU and DRAM energy of this host, in the spirit of Zeus's
``ZeusMonitor``.

::

    meter = Meter()                      # GPUs from CUDA_VISIBLE_DEVICES, RAPL, estimates as configured
    Meter(simulated_gpu=SimulatedPower(300, time_scale=3600))  # stand-in work: a declared draw, labelled
    with meter.window("train") as w:
        train()
    w.measurement.gpu.kwh, w.measurement.gpu.method

    meter.begin_window("epoch-1"); ...; m = meter.end_window("epoch-1")

    @meter.measure("predict")
    def predict(batch): ...

Windows may nest and overlap; each takes its own boundary readings, and one background thread samples
for all of them while at least one is open (none runs while the meter is idle). Backends are chosen
once, when the meter is built, and recorded per component in every :class:`Measurement`;
:attr:`Meter.setup` tells the plan before anything runs.
"""

from __future__ import annotations

import functools
import itertools
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import ParamSpec, TypeVar, cast

from greenflow.clock import utcnow
from greenflow.errors import InvalidInput
from greenflow.metering.estimate import ENV_CPU_TDP, CpuTimes, cpu_tdp, estimate_cpu
from greenflow.metering.gpu import Counters, GpuSet
from greenflow.metering.gpu_selection import GpuSelection, resolve_gpus, select_gpus
from greenflow.metering.measurement import (
    COMPONENTS,
    JOULES_PER_KWH,
    Component,
    ComponentEnergy,
    DeviceEnergy,
    IdleBaseline,
    Measurement,
    Method,
    PowerSample,
    PowerTrace,
)
from greenflow.metering.nvml import NvmlBackend, NvmlUnavailable, default_backend
from greenflow.metering.rapl import RaplCounter, RaplReader, RaplSetup, open_rapl
from greenflow.metering.rapl import rapl_root as resolve_rapl_root
from greenflow.metering.sampler import (
    DEFAULT_MAX_SAMPLES,
    Channel,
    CounterChannel,
    Sampler,
    Snapshot,
)
from greenflow.metering.simulated import SimulatedPower

P = ParamSpec("P")
R = TypeVar("R")

MIN_SAMPLE_INTERVAL = 0.01
MAX_SAMPLE_INTERVAL = 60.0


@dataclass(frozen=True)
class ComponentSetup:
    """How a component will be metered: the planned method, or ``None`` and the reason."""

    method: Method | None
    reason: str | None
    devices: tuple[str, ...] = ()


@dataclass(frozen=True)
class MeterSetup:
    """What the meter found on this host, before any window opens."""

    gpu: ComponentSetup
    cpu: ComponentSetup
    dram: ComponentSetup
    host: str
    gpu_selection: str
    sample_interval: float
    warnings: tuple[str, ...]


class Window:
    """Handle yielded by ``with meter.window(name) as w``; ``w.measurement`` is set when the block exits
    (also when it raised: a failed task still records what it used)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.measurement: Measurement | None = None


@dataclass(frozen=True)
class _OpenWindow:
    name: str
    first: Snapshot
    counters: Counters
    cpu: CpuTimes
    anchor_mono: float
    anchor_wall: datetime

    def wall(self, t: float) -> datetime:
        # Monotonic time mapped onto the wall clock at the window's own start: durations stay right
        # even if the system clock is stepped mid-run.
        return self.anchor_wall + timedelta(seconds=t - self.anchor_mono)


class Meter:
    """Measures the energy of named windows on this host's GPUs, CPU packages and DRAM.

    Args:
        gpu_indices: GPUs to meter as NVML indices or ``GPU-``/``MIG-`` ids; ``None`` reads
            ``CUDA_VISIBLE_DEVICES`` (unset: every GPU; empty: none).
        sample_interval: seconds between power samples on the background thread (default 0.1).
        rapl_root: powercap root; ``None`` uses ``GREENFLOW_RAPL_ROOT`` or ``/sys/class/powercap``.
        idle_baseline: idle power per component (an :class:`IdleBaseline`, or a mapping such as
            ``{"gpu": 55.0}`` in watts) to report active energy next to gross energy.
        nvml: the NVML seam; ``None`` uses the process-wide :func:`default_backend`.
        mig_fraction: this job's share of each MIG-partitioned GPU it uses, in (0, 1].
        cpu_tdp_watts: the host CPUs' total TDP for the CPU estimate when RAPL cannot be read;
            ``None`` reads ``GREENFLOW_CPU_TDP_W``; without either there is no CPU estimate.
        environ: environment to read (default ``os.environ``).
        max_samples: power samples kept per device for the carbon join (older ones are merged).
        rapl_reader: the RAPL file-reading seam (tests).
        simulated_gpu: a declared GPU draw for stand-in work (:class:`SimulatedPower`), in place of
            NVML: the GPU energy is labelled ``simulated`` and the window spans the represented time;
            ``None`` reads ``GREENFLOW_SIMULATED_GPU_W`` / ``GREENFLOW_SIMULATED_TIME_SCALE``.
    """

    def __init__(
        self,
        *,
        gpu_indices: Sequence[int | str] | None = None,
        sample_interval: float = 0.1,
        rapl_root: str | os.PathLike[str] | None = None,
        idle_baseline: IdleBaseline | Mapping[str, float] | None = None,
        nvml: NvmlBackend | None = None,
        mig_fraction: float | None = None,
        cpu_tdp_watts: float | None = None,
        environ: Mapping[str, str] | None = None,
        max_samples: int = DEFAULT_MAX_SAMPLES,
        rapl_reader: RaplReader | None = None,
        simulated_gpu: SimulatedPower | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self.sample_interval = _check_interval(sample_interval)
        self.mig_fraction = _check_fraction(mig_fraction)
        self.cpu_tdp_watts = cpu_tdp(cpu_tdp_watts, env)
        self.idle_baseline = _baseline(idle_baseline)
        self.host = socket.gethostname()
        self._lock = threading.RLock()
        self._windows: dict[str, _OpenWindow] = {}
        self._last: dict[str, Measurement] = {}
        self._keys = itertools.count()
        self._closed = False

        self._backend = nvml or default_backend()
        self._holds_nvml = False
        self.gpus: GpuSet | None = None
        self._gpu_reason: str | None = None
        selection = select_gpus(gpu_indices, env)
        self._gpu_selection = selection.source
        self._setup_warnings: list[str] = list(selection.warnings)
        self.simulated_gpu = simulated_gpu or SimulatedPower.from_env(env)
        if self.simulated_gpu is None:
            self._open_gpus(selection, env)
        else:  # the stand-in does not use the GPU: NVML is not read, so no real figure is mixed in
            self._gpu_reason = self.simulated_gpu.setup_reason
            self._setup_warnings.append(f"GPU energy is {self.simulated_gpu.setup_reason}")

        self.rapl: RaplSetup = open_rapl(resolve_rapl_root(rapl_root, env), rapl_reader)
        channels: list[Channel] = list(self.gpus.channels(max_samples)) if self.gpus else []
        poll = max(1.0, self.sample_interval)
        for counter in (*self.rapl.cpu, *self.rapl.dram):
            channels.append(
                CounterChannel(_rapl_key(counter), counter.read_joules, poll_interval=poll, max_samples=max_samples)
            )
        self._sampler = Sampler(channels, self.sample_interval, counter_poll_interval=poll)

    # -- setup -----------------------------------------------------------------------------------
    def _open_gpus(self, selection: GpuSelection, env: Mapping[str, str]) -> None:
        if selection.selectors == ():
            self._gpu_reason = f"no GPU selected ({selection.source})"
            return
        try:
            self._backend.acquire()
        except NvmlUnavailable as exc:
            self._gpu_reason = exc.reason
            return
        self._holds_nvml = True
        try:
            if self._backend.device_count() == 0:
                self._gpu_reason = "NVML reports no GPU on this host"
            else:
                gpus, warnings = resolve_gpus(selection, self._backend, env)
                self._setup_warnings.extend(warnings)
                if gpus:
                    self.gpus = GpuSet(self._backend, gpus, self.mig_fraction)
                    self._setup_warnings.extend(self.gpus.warnings)
                else:
                    why = f": {warnings[-1]}" if warnings else ""
                    self._gpu_reason = f"none of the GPUs in {selection.source} exists on this host{why}"
        except Exception as exc:
            if not self._backend.is_error(exc):
                raise
            self._gpu_reason = f"NVML failed while listing GPUs: {self._backend.describe(exc)}"
        if self.gpus is None:
            self._release_nvml()

    @property
    def setup(self) -> MeterSetup:
        """The plan per component (method or reason) and the devices found."""
        return MeterSetup(
            gpu=self._gpu_setup(),
            cpu=self._rapl_setup("cpu", self.rapl.cpu, self.rapl.cpu_reason),
            dram=self._rapl_setup("dram", self.rapl.dram, self.rapl.dram_reason),
            host=self.host,
            gpu_selection=self._gpu_selection,
            sample_interval=self.sample_interval,
            warnings=tuple(self._setup_warnings),
        )

    def _gpu_setup(self) -> ComponentSetup:
        if self.simulated_gpu is not None:
            return ComponentSetup("simulated", self.simulated_gpu.setup_reason, (self.simulated_gpu.device,))
        if self.gpus is None:
            return ComponentSetup(None, self._gpu_reason)
        probes = self.gpus.probes
        method: Method | None
        if all(p.counter for p in probes):
            method = "nvml_energy_counter"
        elif all(p.counter or p.power for p in probes):
            method = "nvml_power_sampling"
        elif all(p.counter or p.power or (p.utilization and p.limit_watts) for p in probes):
            method = "estimate"
        else:
            method = None
        reasons = [r for p in probes for r in (p.counter_reason, p.power_reason, p.estimate_reason) if r]
        return ComponentSetup(method, "; ".join(reasons) or None, self.gpus.uuids)

    def _rapl_setup(
        self, component: Component, counters: tuple[RaplCounter, ...], reason: str | None
    ) -> ComponentSetup:
        if counters:
            return ComponentSetup("rapl", None, tuple(c.domain.label for c in counters))
        if component == "cpu" and self.cpu_tdp_watts is not None:
            return ComponentSetup("estimate", reason)
        return ComponentSetup(None, reason)

    # -- windows ---------------------------------------------------------------------------------
    def begin_window(self, name: str) -> None:
        """Open the window ``name``; names of open windows must be unique."""
        self._begin(name, key=name)

    def end_window(self, name: str) -> Measurement:
        """Close the window ``name`` and return its :class:`Measurement`."""
        return self._end(name)

    @contextmanager
    def window(self, name: str) -> Iterator[Window]:
        """``with meter.window("train") as w: ...``; the result is at ``w.measurement`` afterwards."""
        handle = Window(name)
        self._begin(name, key=name)
        try:
            yield handle
        finally:
            handle.measurement = self._end(name)

    def measure(
        self, name: str | None = None, *, on_result: Callable[[Measurement], None] | None = None
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorator: every call of the function is a window (named ``name`` or the function's name).

        Each call's measurement goes to ``on_result`` and to :meth:`last_measurement`. Concurrent and
        recursive calls are separate windows.
        """

        def decorate(func: Callable[P, R]) -> Callable[P, R]:
            label = name or func.__qualname__

            @functools.wraps(func)
            def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
                key = f"{label}\x00{next(self._keys)}"
                self._begin(label, key=key)
                try:
                    return func(*args, **kwargs)
                finally:
                    measurement = self._end(key)
                    if on_result is not None:
                        on_result(measurement)

            return wrapper

        return decorate

    def last_measurement(self, name: str) -> Measurement | None:
        """The most recent measurement of a window called ``name``, or ``None``."""
        with self._lock:
            return self._last.get(name)

    @property
    def open_windows(self) -> tuple[str, ...]:
        """Names of the windows currently open."""
        with self._lock:
            return tuple(w.name for w in self._windows.values())

    def measure_idle(self, duration_s: float = 5.0) -> IdleBaseline:
        """Measure mean power per component over ``duration_s`` while nothing else runs.

        Returns an :class:`IdleBaseline` marked "measured"; pass it as ``idle_baseline`` (or assign
        :attr:`idle_baseline`) to get active energy. Only meaningful on an otherwise idle host.
        """
        if not duration_s > 0:
            raise InvalidInput(f"duration_s={duration_s!r} must be > 0", fix="measure idle for a few seconds, e.g. 5")
        key = f"idle-baseline\x00{next(self._keys)}"
        self._begin("idle-baseline", key=key)
        time.sleep(duration_s)
        m = self._end(key)
        watts = {
            c: (e.kwh * JOULES_PER_KWH / m.duration_s if e.kwh is not None else None) for c, e in m.components.items()
        }
        methods = ", ".join(f"{c}={e.method or 'none'}" for c, e in m.components.items())
        return IdleBaseline(
            gpu_watts=watts["gpu"],
            cpu_watts=watts["cpu"],
            dram_watts=watts["dram"],
            source="measured",
            detail=f"mean power over {m.duration_s:.1f} s on {self.host} before the run ({methods})",
            measured_at=m.start,
        )

    def close(self) -> None:
        """Stop sampling and release NVML. Windows still open are abandoned."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._windows.clear()
            self._sampler.stop()
            self._release_nvml()

    def __enter__(self) -> Meter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------------
    def _begin(self, name: str, *, key: str) -> None:
        if not isinstance(name, str) or not name:
            raise InvalidInput(f"window name {name!r} is not a non-empty string", fix="name the window, e.g. 'train'")
        with self._lock:
            if self._closed:
                raise InvalidInput("this meter is closed", fix="create a new Meter")
            if key in self._windows:
                raise InvalidInput(
                    f"window {name!r} is already open", fix="end it first or give the new window another name"
                )
            if not self._windows:
                self._sampler.start()
            first = self._sampler.snapshot()
            counters = self.gpus.read_counters() if self.gpus else {}
            self._windows[key] = _OpenWindow(name, first, counters, CpuTimes.now(), time.monotonic(), utcnow())

    def _end(self, key: str) -> Measurement:
        with self._lock:
            window = self._windows.pop(key, None)
            if window is None:
                open_names = ", ".join(repr(w.name) for w in self._windows.values()) or "none"
                raise InvalidInput(f"no open window {key!r} (open: {open_names})", fix="call begin_window(name) first")
            last = self._sampler.snapshot()
            counters = self.gpus.read_counters() if self.gpus else {}
            cpu = CpuTimes.now()
            traces = self._traces(window, last)
            if self._windows:
                self._sampler.discard_before(min(w.first.t for w in self._windows.values()))
            else:
                self._sampler.stop()
            measurement = self._measurement(window, last, counters, cpu, traces)
            self._last[window.name] = measurement
            return measurement

    def _measurement(
        self,
        window: _OpenWindow,
        last: Snapshot,
        counters: Counters,
        cpu_times: CpuTimes,
        traces: tuple[PowerTrace, ...],
    ) -> Measurement:
        warnings = list(self._setup_warnings)
        duration = last.t - window.first.t
        end = window.wall(last.t)
        if self.simulated_gpu is not None:
            gpu = self.simulated_gpu.component(duration)
            # The window spans the time the stand-in represents, so the carbon join charges those hours.
            end = window.wall(window.first.t) + timedelta(seconds=self.simulated_gpu.represented_s(duration))
        elif self.gpus is not None:
            gpu, gpu_warnings = self.gpus.settle(window.counters, counters, window.first, last)
            warnings.extend(gpu_warnings)
        else:
            gpu = ComponentEnergy.missing(self._gpu_reason or "no GPU")
        cpu = self._rapl_component("cpu", self.rapl.cpu, window.first, last, warnings)
        if cpu.kwh is None and self.cpu_tdp_watts is not None:
            used = cpu_times.cpu_seconds - window.cpu.cpu_seconds
            estimate = estimate_cpu(self.cpu_tdp_watts, used, duration)
            basis = f"estimate: CPU TDP {estimate.tdp_watts:.0f} W x {estimate.share:.1%} of the host's CPUs"
            cpu = ComponentEnergy(estimate.kwh, "estimate", f"{cpu.reason}; {basis}")
        elif cpu.kwh is None:
            cpu = ComponentEnergy.missing(f"{cpu.reason}; set cpu_tdp_watts or {ENV_CPU_TDP} for an estimate")
        dram = self._rapl_component("dram", self.rapl.dram, window.first, last, warnings)
        components: dict[Component, ComponentEnergy] = {"gpu": gpu, "cpu": cpu, "dram": dram}
        if self.idle_baseline is not None:
            components = {c: self._active(c, e, duration, warnings) for c, e in components.items()}
        return Measurement(
            name=window.name,
            start=window.wall(window.first.t),
            end=end,
            gpu=components["gpu"],
            cpu=components["cpu"],
            dram=components["dram"],
            host=self.host,
            gpu_uuids=self.gpus.uuids if self.gpus else (),
            traces=traces,
            warnings=tuple(dict.fromkeys(warnings)),
            idle_baseline=self.idle_baseline,
        )

    def _rapl_component(
        self,
        component: Component,
        counters: tuple[RaplCounter, ...],
        first: Snapshot,
        last: Snapshot,
        warnings: list[str],
    ) -> ComponentEnergy:
        if not counters:
            reason = self.rapl.cpu_reason if component == "cpu" else self.rapl.dram_reason
            return ComponentEnergy.missing(reason or f"no RAPL {component} domain")
        devices: list[DeviceEnergy] = []
        for counter in counters:
            key = _rapl_key(counter)
            a, b = first.channels[key], last.channels[key]
            if b.reads - a.reads < 1:
                devices.append(DeviceEnergy(counter.domain.label, None, None, f"RAPL read failed: {b.last_error}"))
                continue
            if b.failures > a.failures:
                warnings.append(f"{counter.domain.label}: {b.failures - a.failures} RAPL read(s) failed in the window")
            devices.append(DeviceEnergy(counter.domain.label, (b.integral - a.integral) / JOULES_PER_KWH, "rapl"))
        missing = [d for d in devices if d.kwh is None]
        if missing:
            return ComponentEnergy.missing("; ".join(f"{d.device}: {d.reason}" for d in missing), tuple(devices))
        return ComponentEnergy(sum(d.kwh for d in devices if d.kwh is not None), "rapl", None, tuple(devices))

    def _active(
        self, component: Component, energy: ComponentEnergy, duration: float, warnings: list[str]
    ) -> ComponentEnergy:
        assert self.idle_baseline is not None
        idle = self.idle_baseline.watts(component)
        if idle is None or energy.kwh is None:
            return energy
        active = energy.kwh - idle * duration / JOULES_PER_KWH
        if active < 0:
            mean = energy.kwh * JOULES_PER_KWH / duration if duration > 0 else 0.0
            warnings.append(
                f"idle baseline for {component} ({idle:.1f} W) exceeds its mean power in the window "
                f"({mean:.1f} W): active energy clamped to 0"
            )
            active = 0.0
        return ComponentEnergy(
            energy.kwh, energy.method, energy.reason, energy.devices, energy.apportioned, active, idle
        )

    def _traces(self, window: _OpenWindow, last: Snapshot) -> tuple[PowerTrace, ...]:
        traces: list[PowerTrace] = []
        for key, channel in self._sampler.channels.items():
            if not channel.keep_samples:
                continue
            component, _, device = key.partition(":")
            times, values = self._sampler.samples(key, window.first.t, last.t)
            samples = tuple(PowerSample(window.wall(t), w) for t, w in zip(times, values, strict=True))
            traces.append(PowerTrace(cast(Component, component), device, samples))
        return tuple(traces)

    def _release_nvml(self) -> None:
        if self._holds_nvml:
            self._holds_nvml = False
            self._backend.release()


def _rapl_key(counter: RaplCounter) -> str:
    return f"{counter.domain.component}:{counter.domain.label}"


def _check_interval(value: float) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (MIN_SAMPLE_INTERVAL <= value <= MAX_SAMPLE_INTERVAL)
    ):
        raise InvalidInput(
            f"sample_interval={value!r} is out of range",
            fix=f"give seconds between {MIN_SAMPLE_INTERVAL} and {MAX_SAMPLE_INTERVAL}, e.g. 0.1",
        )
    return float(value)


def _check_fraction(value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise InvalidInput(
            f"mig_fraction={value!r} is not in (0, 1]",
            fix="give this job's share of the GPU, e.g. 1/7 for a 1g slice",
        )
    return float(value)


def _baseline(value: IdleBaseline | Mapping[str, float] | None) -> IdleBaseline | None:
    if value is None or isinstance(value, IdleBaseline):
        return value
    unknown = set(value) - set(COMPONENTS)
    if unknown:
        raise InvalidInput(
            f"idle_baseline has unknown components {sorted(unknown)}",
            fix="use keys 'gpu', 'cpu' and 'dram' (watts)",
        )
    return IdleBaseline(
        gpu_watts=value.get("gpu"),
        cpu_watts=value.get("cpu"),
        dram_watts=value.get("dram"),
        source="declared",
    )
