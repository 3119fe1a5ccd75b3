"""Spatial shifting in Airflow: route work to the downstream task of the greenest (region, start).

``GreenGateOperator(regions={"GB": "train_gb", "ES": "train_es"}, ...)`` maps each region to the downstream
task bound to that region's workers (its queue or pool). The core planner chooses the region and start
over all of them (the first region is home: savings are counted against starting there at once); the
operator waits for the start as a deferral and branches to the chosen region's task. This module holds
the Airflow-free part: the mapping, checked when the DAG is parsed, and what the routing entry records.
"""

from __future__ import annotations

import statistics
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from greenflow.errors import InvalidInput
from greenflow.ledger import Ledger
from greenflow.lifecycle import Decision
from greenflow.units import parse_quantity

# How many past measured attempts of a region's task make the energy estimate of a route.
_HISTORY = 5


@dataclass(frozen=True)
class RegionRoutes:
    """Region -> downstream task id, in the order given (the first region is home)."""

    routes: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, regions: Any) -> RegionRoutes:
        """Validate the DAG's mapping; a bad one raises :class:`InvalidInput` naming it and the fix."""
        if not isinstance(regions, Mapping) or not regions:
            raise InvalidInput(
                f"regions={regions!r} is not a mapping of region to task id",
                fix="give e.g. regions={'GB': 'train_gb', 'NO': 'train_no'} (the first region is home)",
            )
        seen: dict[str, str] = {}
        for region, task_id in regions.items():
            if not isinstance(region, str) or not region.strip():
                raise InvalidInput(f"region {region!r} in regions is not a region name", fix="use e.g. 'GB'")
            if not isinstance(task_id, str) or not task_id.strip():
                raise InvalidInput(
                    f"regions[{region!r}]={task_id!r} is not a task id",
                    fix="map each region to the id of the downstream task that runs there",
                )
            if task_id in seen:
                raise InvalidInput(
                    f"regions {seen[task_id]!r} and {region!r} both route to task {task_id!r}",
                    fix="give each region its own task (bound to that region's queue or pool)",
                )
            seen[task_id] = region
        return cls(tuple((str(region), str(task_id)) for region, task_id in regions.items()))

    @property
    def home(self) -> str:
        """The first region: where the work runs without greenflow, the baseline of the savings."""
        return self.routes[0][0]

    @property
    def regions(self) -> tuple[str, ...]:
        """Every region, home first."""
        return tuple(region for region, _ in self.routes)

    @property
    def task_ids(self) -> tuple[str, ...]:
        """Every routed task id, in the regions' order."""
        return tuple(task_id for _, task_id in self.routes)

    def task_for(self, region: str | None) -> str:
        """The task of ``region``; home's when the plan names no routed region (no forecast anywhere)."""
        return dict(self.routes).get(region or "", self.routes[0][1])

    def check_downstream(self, downstream: Collection[str], task_id: str) -> None:
        """Raise :class:`InvalidInput` unless every routed task is directly downstream of ``task_id``."""
        missing = [t for t in self.task_ids if t not in downstream]
        if missing:
            raise InvalidInput(
                f"{task_id}: regions route to {missing}, which are not directly downstream of it "
                f"(downstream: {sorted(downstream) or 'none'})",
                fix=f"set {task_id} >> [{', '.join(self.task_ids)}] or fix the task ids in regions",
            )

    def to_dict(self) -> dict[str, str]:
        """JSON-safe."""
        return dict(self.routes)


@dataclass(frozen=True)
class RouteEnergy:
    """The energy the routed work is expected to use, and where the figure comes from (``None``: unknown)."""

    kwh: float | None
    source: str

    @classmethod
    def declared(cls, text: str | None) -> RouteEnergy | None:
        """``expected_energy="3kWh"`` from the DAG (checked at parse time), or ``None`` when not given."""
        if text is None:
            return None
        quantity = parse_quantity(text, name="expected_energy")
        if quantity.unit != "kWh" or quantity.value <= 0:
            raise InvalidInput(
                f"expected_energy={text!r} is not a positive energy",
                fix="give the routed task's energy, e.g. 3kWh (emissions then follow from each region's intensity)",
            )
        return cls(quantity.value, f"declared expected_energy {text}")

    @classmethod
    def from_history(cls, ledger: Ledger, workflow_id: str, routes: RegionRoutes) -> RouteEnergy:
        """The median measured energy of the routed tasks' last attempts; unknown when none was measured."""
        measured = [
            entry.energy_kwh
            for task_id in routes.task_ids
            for entry in ledger.history(workflow_id, task_id, limit=_HISTORY)
            if entry.energy_kwh is not None
        ]
        if not measured:
            return cls(None, "unknown: no expected_energy given and no measured attempt of the routed tasks yet")
        return cls(statistics.median(measured), f"median of {len(measured)} measured attempts of the routed tasks")


def route_record(
    routes: RegionRoutes,
    decision: Decision,
    energy: RouteEnergy,
    *,
    pue: float | None,
    resumed: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ledger's ``extra["route"]``: the choice and every region's expected intensity and emissions.

    Expected emissions are the expected energy (times ``pue``) at each region's expected mean intensity;
    ``None`` when either is unknown (the reason is in ``energy_source`` or the plan's reason).
    """
    region = decision.region if decision.region in routes.regions else routes.home
    factor = pue or 1.0
    alternatives: list[dict[str, Any]] = []
    for option in (decision.plan or {}).get("alternatives") or []:
        expected, now = option.get("expected_gco2_per_kwh"), option.get("now_gco2_per_kwh")
        alternatives.append(
            {
                **option,
                "task_id": routes.task_for(option.get("region")),
                "expected_g": _grams(energy.kwh, factor, expected),
                "now_g": _grams(energy.kwh, factor, now),
            }
        )
    record: dict[str, Any] = {
        "home": routes.home,
        "region": region,
        "task_id": routes.task_for(region),
        "start_at": decision.start_at.isoformat(),
        "routes": routes.to_dict(),
        "expected_energy_kwh": energy.kwh,
        "energy_source": energy.source,
        "alternatives": alternatives,
    }
    if not alternatives:
        record["alternatives_note"] = f"no plan across regions: {decision.reason}"
    if resumed is not None:
        record["resumed"] = dict(resumed)
    return record


def _grams(kwh: float | None, factor: float, intensity: Any) -> float | None:
    if kwh is None or intensity is None:
        return None
    return kwh * factor * float(intensity)
