"""What a report holds: figures (a number, or ``None`` with the reason) and the tables behind them.

``Report.to_dict()`` is the JSON document, schema ``greenflow.report/1`` (docs/reports.md). A new key
may be added within version 1; a key changing meaning or disappearing bumps the version.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from greenflow.report.period import ReportPeriod

SCHEMA = "greenflow.report/1"


@dataclass(frozen=True)
class Figure:
    """One reported number with its unit, how sure it is and, when there is no number, why not."""

    value: float | None
    unit: str
    uncertainty: str
    reason: str | None = None
    coverage: float | None = None
    """Share (0-1) of the relevant energy the figure covers, where that is meaningful."""

    def __post_init__(self) -> None:
        if self.value is None and not self.reason:
            raise ValueError("a figure without a value needs the reason")
        if self.value is not None and not math.isfinite(self.value):
            raise ValueError(f"figure value {self.value!r} is not finite")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "value": self.value,
            "unit": self.unit,
            "reason": self.reason,
            "coverage": self.coverage,
            "uncertainty": self.uncertainty,
        }


@dataclass(frozen=True)
class BreakdownLine:
    """Totals of one team / workflow / region / month / day. ``None``: no entry of the line had a number."""

    dimension: str
    key: str
    entries: int
    refused: int
    unmeasured: int
    energy_kwh: float | None
    facility_energy_kwh: float | None
    estimated_kwh: float | None
    location_based_g: float | None
    embodied_g: float | None
    saved_g: float | None
    attempts: int = 0
    """Attempts of the line: an interruptible attempt (one entry per segment) counts once, at its first segment."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class SciLine:
    """SCI = (E·I + M) / R for one declared functional unit (location-based operational emissions)."""

    functional_unit: str
    entries: int
    """Runs counted: attempts (an interruptible attempt's segment entries are one run)."""
    units: float
    energy_kwh: float
    """Facility energy (E) of the counted entries."""
    operational_g: float
    embodied_g: float | None
    sci_g_per_unit: float
    excluded: int
    """Entries declaring this unit left out because their emissions are unknown."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class Report:
    """A report over one period and scope. Build it with :func:`greenflow.report.build_report`."""

    period: ReportPeriod
    scope: str
    generated_at: datetime
    ledger: str
    counts: dict[str, int]
    figures: dict[str, Figure]
    energy_by_method: dict[str, float]
    energy_by_component: dict[str, float]
    savings_by_decision: dict[str, float]
    sci: tuple[SciLine, ...]
    breakdowns: dict[str, tuple[BreakdownLine, ...]]
    budgets: tuple[dict[str, Any], ...]
    evidence: dict[str, Any]
    market_based: dict[str, Any] = field(default_factory=dict)
    charts: dict[str, Any] = field(default_factory=dict)
    """Series the charts are drawn from (daily emissions and savings; intensity at each run)."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (schema ``greenflow.report/1``)."""
        return {
            "schema": SCHEMA,
            "generated_at": self.generated_at.isoformat(),
            "period": self.period.to_dict(),
            "scope": self.scope,
            "ledger": self.ledger,
            "counts": dict(self.counts),
            "figures": {name: figure.to_dict() for name, figure in self.figures.items()},
            "energy_by_method_kwh": dict(self.energy_by_method),
            "energy_by_component_kwh": dict(self.energy_by_component),
            "savings_by_decision_g": dict(self.savings_by_decision),
            "sci": [line.to_dict() for line in self.sci],
            "breakdowns": {name: [line.to_dict() for line in lines] for name, lines in self.breakdowns.items()},
            "budgets": [dict(b) for b in self.budgets],
            "market_based": dict(self.market_based),
            "evidence": dict(self.evidence),
            "charts": dict(self.charts),
        }
