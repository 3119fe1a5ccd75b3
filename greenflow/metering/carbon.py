"""Energy x carbon intensity, joined over time.

The run's energy is binned into the intensity series' slots, so a run that spans a green and a dirty
hour is charged for each at its own rate. Within the run each component's energy is spread by its own
power trace when the meter kept one (more energy lands where the GPU drew more), and evenly over time
otherwise; the measured total stays authoritative (the trace only gives the shape). The account's
intensity is therefore weighted by energy, not by time.

Energy in a slot the series does not cover (a gap, or a ``None`` value) is charged at the mean intensity
of the covered energy and marked ``filled``; when no slot covers any of the run there is no number,
only a reason. PUE (facility overhead) is applied here, never in the meter, and recorded separately.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from greenflow.errors import InvalidInput
from greenflow.intensity.forecast import UNIT, Forecast, ForecastPoint
from greenflow.metering.measurement import COMPONENTS, Component, Measurement, PowerTrace
from greenflow.metering.sampler import integrate_between

Distribution = Literal["power_samples", "even", "mixed"]


@dataclass(frozen=True)
class SlotCharge:
    """The part of the run inside one slot of the series (or one gap between slots).

    ``intensity_g_per_kwh`` is what was charged: the slot's value, or the run's mean when ``filled``
    (the series had no value there). ``estimated`` is the series' own flag (forecast, not actual).
    """

    start: datetime
    end: datetime
    energy_kwh: float
    intensity_g_per_kwh: float | None
    emissions_g: float | None
    estimated: bool = False
    filled: bool = False


@dataclass(frozen=True)
class CarbonAccount:
    """Operational emissions of one measurement under one intensity series.

    ``energy_kwh`` is the metered (IT) energy of the included components; ``facility_energy_kwh`` is it
    x ``pue`` (``pue`` ``None``: not applied). ``intensity_g_per_kwh`` is weighted by energy over the
    run; ``coverage`` is the share of the energy that fell in slots with a value. ``operational_g`` is
    facility energy x intensity. Numbers that cannot be computed are ``None`` and ``reason`` says why.
    """

    energy_kwh: float | None
    intensity_g_per_kwh: float | None
    operational_g: float | None
    pue: float | None
    facility_energy_kwh: float | None
    coverage: float | None
    slots: tuple[SlotCharge, ...]
    distribution: Distribution | None
    components: tuple[Component, ...]
    region: str
    provider: str
    signal: str
    reason: str | None = None
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict for the ledger."""
        return {
            "energy_kwh": self.energy_kwh,
            "intensity_g_per_kwh": self.intensity_g_per_kwh,
            "operational_g": self.operational_g,
            "pue": self.pue,
            "facility_energy_kwh": self.facility_energy_kwh,
            "coverage": self.coverage,
            "distribution": self.distribution,
            "components": list(self.components),
            "region": self.region,
            "provider": self.provider,
            "signal": self.signal,
            "reason": self.reason,
            "warnings": list(self.warnings),
            "slots": [
                {
                    "start": _iso(s.start),
                    "end": _iso(s.end),
                    "energy_kwh": s.energy_kwh,
                    "intensity_g_per_kwh": s.intensity_g_per_kwh,
                    "emissions_g": s.emissions_g,
                    "estimated": s.estimated,
                    "filled": s.filled,
                }
                for s in self.slots
            ],
        }


def emissions(
    measurement: Measurement,
    forecast: Forecast,
    *,
    pue: float | None = None,
    components: Sequence[Component] = COMPONENTS,
) -> CarbonAccount:
    """Charge ``measurement``'s energy at the intensity in force during each part of the run.

    ``components`` limits the account (e.g. ``("gpu",)``); components without a number are left out
    with a warning, never counted as 0. ``pue`` (>= 1) scales energy to the facility's.
    """
    factor = _check_pue(pue)
    if forecast.unit != UNIT:
        raise InvalidInput(f"intensity series is in {forecast.unit}", fix=f"convert it to {UNIT} at the provider")
    unknown = [c for c in components if c not in COMPONENTS]
    if unknown:
        raise InvalidInput(f"unknown components {unknown}", fix=f"choose from {list(COMPONENTS)}")
    energies = {c: measurement.components[c] for c in components}
    measured = {c: e.kwh for c, e in energies.items() if e.kwh is not None}
    warnings = [f"{c} not measured ({e.reason}): left out of the account" for c, e in energies.items() if e.kwh is None]

    def account(**numbers: Any) -> CarbonAccount:
        return CarbonAccount(
            pue=pue,
            components=tuple(measured),
            region=forecast.region,
            provider=forecast.provider,
            signal=forecast.signal,
            warnings=tuple(warnings),
            **numbers,
        )

    if not measured:
        return account(
            energy_kwh=None,
            intensity_g_per_kwh=None,
            operational_g=None,
            facility_energy_kwh=None,
            coverage=None,
            slots=(),
            distribution=None,
            reason="no energy measured: " + "; ".join(f"{c}: {e.reason}" for c, e in energies.items()),
        )

    segments = _segments(measurement.start, measurement.end, forecast.points)
    per_segment = [0.0] * len(segments)
    shapes: set[Distribution] = set()
    for component, kwh in measured.items():
        traces = [t for t in measurement.traces if t.component == component and t.samples]
        weights, shape = _weights(segments, measurement.start, traces)
        shapes.add(shape)
        total = sum(weights)
        for i, weight in enumerate(weights):
            per_segment[i] += kwh * weight / total
    energy = sum(measured.values())
    distribution: Distribution = "mixed" if len(shapes) > 1 else next(iter(shapes))
    points = [_point_at(forecast.points, a, b) for a, b in segments]
    values = [None if p is None else p.value for p in points]
    covered = sum(e for e, v in zip(per_segment, values, strict=True) if v is not None)

    if energy == 0:
        # Measured as zero (e.g. an idle process's CPU estimate): zero grams, at the run's time-weighted
        # intensity where the series covers it; a number measured as 0 is 0, not "unknown".
        mean, time_coverage = forecast.mean_intensity(measurement.start, max(measurement.end, measurement.start))
        if mean is not None:
            return account(
                energy_kwh=0.0,
                intensity_g_per_kwh=mean,
                operational_g=0.0,
                facility_energy_kwh=0.0,
                coverage=time_coverage,
                distribution=distribution,
                slots=tuple(
                    SlotCharge(a, b, 0.0, v, None if v is None else 0.0)
                    for (a, b), v in zip(segments, values, strict=True)
                ),
            )

    if covered <= 0:
        span = f"{_iso(forecast.start)}-{_iso(forecast.end)}" if forecast.points else "nothing"
        return account(
            energy_kwh=energy,
            intensity_g_per_kwh=None,
            operational_g=None,
            facility_energy_kwh=energy * factor,
            coverage=0.0,
            distribution=distribution,
            slots=tuple(SlotCharge(a, b, e, None, None) for (a, b), e in zip(segments, per_segment, strict=True)),
            reason=(
                f"no intensity covers the run ({_iso(measurement.start)}-{_iso(measurement.end)}); "
                f"the {forecast.provider} series for {forecast.region} covers {span}"
            ),
        )

    mean = sum(e * v for e, v in zip(per_segment, values, strict=True) if v is not None) / covered
    coverage = covered / energy if energy > 0 else 1.0
    if coverage < 1.0 - 1e-9:
        warnings.append(
            f"{1 - coverage:.1%} of the energy fell where the series has no value: charged at the run's "
            f"mean intensity {mean:.1f} {UNIT}"
        )
    slots = tuple(
        SlotCharge(
            start=a,
            end=b,
            energy_kwh=e,
            intensity_g_per_kwh=mean if v is None else v,
            emissions_g=e * factor * (mean if v is None else v),
            estimated=bool(p and p.estimated),
            filled=v is None,
        )
        for (a, b), e, p, v in zip(segments, per_segment, points, values, strict=True)
    )
    return account(
        energy_kwh=energy,
        intensity_g_per_kwh=mean,
        operational_g=energy * factor * mean,
        facility_energy_kwh=energy * factor,
        coverage=coverage,
        slots=slots,
        distribution=distribution,
    )


def _segments(start: datetime, end: datetime, points: Sequence[ForecastPoint]) -> list[tuple[datetime, datetime]]:
    """The run cut at every slot edge inside it; a zero-length run is one zero-length segment."""
    if end <= start:
        return [(start, start)]
    edges = {start, end}
    for point in points:
        for edge in (point.start, point.end):
            if start < edge < end:
                edges.add(edge)
    ordered = sorted(edges)
    return list(itertools.pairwise(ordered))


def _weights(
    segments: list[tuple[datetime, datetime]], origin: datetime, traces: list[PowerTrace]
) -> tuple[list[float], Distribution]:
    """How one component's energy divides over the segments: by its power traces, else by time."""
    durations = [(b - a).total_seconds() for a, b in segments]
    if traces:
        curves = [([(s.at - origin).total_seconds() for s in t.samples], [s.watts for s in t.samples]) for t in traces]
        weights = []
        for a, b in segments:
            lo, hi = (a - origin).total_seconds(), (b - origin).total_seconds()
            weights.append(sum(integrate_between(times, watts, lo, hi) for times, watts in curves))
        if sum(weights) > 0 and all(math.isfinite(w) and w >= 0 for w in weights):
            return weights, "power_samples"
    if sum(durations) > 0:
        return durations, "even"
    return [1.0] + [0.0] * (len(segments) - 1), "even"


def _point_at(points: Sequence[ForecastPoint], a: datetime, b: datetime) -> ForecastPoint | None:
    """The slot containing the segment [a, b) (segments never straddle a slot edge)."""
    probe = a + (b - a) / 2 if b > a else a
    for point in points:
        if point.start <= probe < point.end:
            return point
    return None


def _check_pue(pue: float | None) -> float:
    if pue is None:
        return 1.0
    if isinstance(pue, bool) or not isinstance(pue, int | float) or not math.isfinite(pue) or pue < 1.0:
        raise InvalidInput(f"pue={pue!r} is not a PUE", fix="give facility energy / IT energy, >= 1.0, e.g. 1.2")
    return float(pue)


def _iso(moment: datetime | None) -> str:
    return "?" if moment is None else moment.isoformat().replace("+00:00", "Z")
