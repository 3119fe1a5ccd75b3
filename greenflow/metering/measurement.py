"""What a metered window returns: energy per component and per device, how it was obtained, and why not.

Energy is in kWh. A number that could not be measured is ``None`` with a ``reason``; it is never 0,
because 0 would read as "used no energy". Every dataclass here is frozen and survives a JSON round trip
(:meth:`Measurement.to_dict` / :meth:`Measurement.from_dict`), which is how the ledger stores it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast, get_args

from greenflow.clock import parse_time, require_aware
from greenflow.errors import InvalidInput

Component = Literal["gpu", "cpu", "dram"]
# "simulated": a declared draw for stand-in work (greenflow.metering.simulated), never a measurement.
Method = Literal["nvml_energy_counter", "nvml_power_sampling", "rapl", "estimate", "simulated"]
BaselineSource = Literal["declared", "measured"]

COMPONENTS: tuple[Component, ...] = get_args(Component)
METHODS: tuple[Method, ...] = get_args(Method)
# From most to least trustworthy: a component whose devices disagree reports the weakest one.
METHOD_RANK: dict[Method, int] = {
    "nvml_energy_counter": 0,
    "rapl": 0,
    "nvml_power_sampling": 1,
    "estimate": 2,
    "simulated": 3,
}
JOULES_PER_KWH = 3.6e6


@dataclass(frozen=True)
class PowerSample:
    """One power reading: ``watts`` at the aware-UTC instant ``at``."""

    at: datetime
    watts: float


@dataclass(frozen=True)
class PowerTrace:
    """The power of one device over a window, kept for the time-weighted carbon join.

    For long windows older samples are merged pairwise (mean time, mean power), so the trace keeps the
    shape of the run with bounded memory; the window's energy never comes from this trace when a
    counter was available.
    """

    component: Component
    device: str
    samples: tuple[PowerSample, ...]


@dataclass(frozen=True)
class DeviceEnergy:
    """Energy of one device (a GPU, a MIG slice's parent GPU, a RAPL package or DRAM domain).

    ``kwh`` is what is charged to the window: for a MIG instance it is ``whole_device_kwh`` x ``fraction``.
    """

    device: str
    kwh: float | None
    method: Method | None
    reason: str | None = None
    name: str | None = None
    index: int | None = None
    fraction: float | None = None
    whole_device_kwh: float | None = None

    def __post_init__(self) -> None:
        _check_energy(self.kwh, self.reason, f"device {self.device}")


@dataclass(frozen=True)
class ComponentEnergy:
    """Energy of one component ("gpu", "cpu" or "dram") over a window.

    ``kwh`` is ``None`` when it was not measured, and then ``reason`` says why. ``reason`` may also be set
    next to a number, to say what the number rests on (e.g. which backend could not be used and why an
    estimate was taken instead). ``apportioned`` is true when a share of a shared device was charged
    (MIG). ``active_kwh`` is gross minus ``idle_watts`` x duration, when an idle baseline was given.
    """

    kwh: float | None
    method: Method | None
    reason: str | None
    devices: tuple[DeviceEnergy, ...] = ()
    apportioned: bool = False
    active_kwh: float | None = None
    idle_watts: float | None = None

    def __post_init__(self) -> None:
        _check_energy(self.kwh, self.reason, "component")
        if self.kwh is not None and self.method is None:
            raise InvalidInput("a measured component needs a method", fix="say how the energy was obtained")

    @classmethod
    def missing(cls, reason: str, devices: tuple[DeviceEnergy, ...] = ()) -> ComponentEnergy:
        """A component that was not measured, and why."""
        return cls(kwh=None, method=None, reason=reason, devices=devices)


@dataclass(frozen=True)
class IdleBaseline:
    """Idle power per component, used to report active energy next to gross energy.

    ``source`` is "declared" (given by the user) or "measured" (:meth:`Meter.measure_idle`); ``detail``
    says how it was obtained so an auditor can judge it.
    """

    gpu_watts: float | None = None
    cpu_watts: float | None = None
    dram_watts: float | None = None
    source: BaselineSource = "declared"
    detail: str = "declared by the user"
    measured_at: datetime | None = None

    def __post_init__(self) -> None:
        for component in COMPONENTS:
            watts = self.watts(component)
            if watts is not None and watts < 0:
                raise InvalidInput(
                    f"idle baseline {component}={watts} W is negative", fix="give idle power in watts, >= 0"
                )
        if self.measured_at is not None:
            object.__setattr__(self, "measured_at", require_aware(self.measured_at, "measured_at"))

    def watts(self, component: Component) -> float | None:
        """Idle power of ``component`` in watts, or ``None`` when the baseline does not cover it."""
        return cast(float | None, getattr(self, f"{component}_watts"))


@dataclass(frozen=True)
class Measurement:
    """The result of one metered window.

    ``start``/``end`` are aware UTC; ``gpu``, ``cpu`` and ``dram`` say how much energy each component used
    and how that was obtained. ``gpu_uuids`` names the GPUs (MIG UUIDs when a MIG slice was selected),
    ``host`` the machine; ``traces`` keep power over time for the carbon join; ``warnings`` are the things
    an auditor should know about this number.
    """

    name: str
    start: datetime
    end: datetime
    gpu: ComponentEnergy
    cpu: ComponentEnergy
    dram: ComponentEnergy
    host: str
    gpu_uuids: tuple[str, ...] = ()
    traces: tuple[PowerTrace, ...] = ()
    warnings: tuple[str, ...] = ()
    idle_baseline: IdleBaseline | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", require_aware(self.start, "measurement start"))
        object.__setattr__(self, "end", require_aware(self.end, "measurement end"))
        if self.end < self.start:
            raise InvalidInput(f"measurement {self.name!r} ends before it starts", fix="end must be at or after start")

    @property
    def duration_s(self) -> float:
        """Length of the window in seconds."""
        return (self.end - self.start).total_seconds()

    @property
    def components(self) -> dict[Component, ComponentEnergy]:
        """The three components by name."""
        return {"gpu": self.gpu, "cpu": self.cpu, "dram": self.dram}

    @property
    def total_kwh(self) -> float | None:
        """Sum of the measured components, or ``None`` when none was measured (see :attr:`missing`)."""
        measured = [c.kwh for c in self.components.values() if c.kwh is not None]
        return sum(measured) if measured else None

    @property
    def missing(self) -> tuple[Component, ...]:
        """Components without a number: :attr:`total_kwh` does not include them."""
        return tuple(name for name, c in self.components.items() if c.kwh is None)

    @property
    def active_kwh(self) -> float | None:
        """Sum of active energy over the components that have it, or ``None`` when none has."""
        active = [c.active_kwh for c in self.components.values() if c.active_kwh is not None]
        return sum(active) if active else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (what the ledger stores); :meth:`from_dict` reverses it."""
        return {
            "name": self.name,
            "start": _iso(self.start),
            "end": _iso(self.end),
            "host": self.host,
            "gpu_uuids": list(self.gpu_uuids),
            "components": {name: _component_to_dict(c) for name, c in self.components.items()},
            "traces": [
                {
                    "component": t.component,
                    "device": t.device,
                    "samples": [[_iso(s.at), s.watts] for s in t.samples],
                }
                for t in self.traces
            ],
            "warnings": list(self.warnings),
            "idle_baseline": None if self.idle_baseline is None else _baseline_to_dict(self.idle_baseline),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        """Inverse of :meth:`to_dict`."""
        components = data["components"]
        baseline = data.get("idle_baseline")
        return cls(
            name=data["name"],
            start=parse_time(data["start"], "start"),
            end=parse_time(data["end"], "end"),
            gpu=_component_from_dict(components["gpu"]),
            cpu=_component_from_dict(components["cpu"]),
            dram=_component_from_dict(components["dram"]),
            host=data["host"],
            gpu_uuids=tuple(data.get("gpu_uuids", ())),
            traces=tuple(
                PowerTrace(
                    component=t["component"],
                    device=t["device"],
                    samples=tuple(PowerSample(parse_time(at), float(w)) for at, w in t["samples"]),
                )
                for t in data.get("traces", ())
            ),
            warnings=tuple(data.get("warnings", ())),
            idle_baseline=None if baseline is None else _baseline_from_dict(baseline),
        )


def _check_energy(kwh: float | None, reason: str | None, what: str) -> None:
    # The "never 0 for not measured" rule is enforced here, where every number is born.
    if kwh is None and not reason:
        raise InvalidInput(f"{what} has no energy and no reason", fix="say why it was not measured")
    if kwh is not None and kwh < 0:
        raise InvalidInput(f"{what} energy {kwh} kWh is negative", fix="energy is >= 0")


def _component_to_dict(c: ComponentEnergy) -> dict[str, Any]:
    return {
        "kwh": c.kwh,
        "method": c.method,
        "reason": c.reason,
        "apportioned": c.apportioned,
        "active_kwh": c.active_kwh,
        "idle_watts": c.idle_watts,
        "devices": [
            {
                "device": d.device,
                "kwh": d.kwh,
                "method": d.method,
                "reason": d.reason,
                "name": d.name,
                "index": d.index,
                "fraction": d.fraction,
                "whole_device_kwh": d.whole_device_kwh,
            }
            for d in c.devices
        ],
    }


def _component_from_dict(data: dict[str, Any]) -> ComponentEnergy:
    return ComponentEnergy(
        kwh=data["kwh"],
        method=data["method"],
        reason=data["reason"],
        apportioned=bool(data.get("apportioned", False)),
        active_kwh=data.get("active_kwh"),
        idle_watts=data.get("idle_watts"),
        devices=tuple(DeviceEnergy(**d) for d in data.get("devices", ())),
    )


def _baseline_to_dict(b: IdleBaseline) -> dict[str, Any]:
    return {
        "gpu_watts": b.gpu_watts,
        "cpu_watts": b.cpu_watts,
        "dram_watts": b.dram_watts,
        "source": b.source,
        "detail": b.detail,
        "measured_at": None if b.measured_at is None else _iso(b.measured_at),
    }


def _baseline_from_dict(data: dict[str, Any]) -> IdleBaseline:
    measured_at = data.get("measured_at")
    return IdleBaseline(
        gpu_watts=data.get("gpu_watts"),
        cpu_watts=data.get("cpu_watts"),
        dram_watts=data.get("dram_watts"),
        source=data.get("source", "declared"),
        detail=data.get("detail", ""),
        measured_at=None if measured_at is None else parse_time(measured_at, "measured_at"),
    )


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
