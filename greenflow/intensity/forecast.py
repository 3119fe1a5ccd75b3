"""The one forecast model every provider returns and the planner, the carbon join and the ledger read.

Values are always gCO2e/kWh (converted at the provider's edge). A missing value stays ``None``: it is
never written as 0 or -1, because 0 would read as "perfectly green".
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from greenflow.clock import parse_time, require_aware
from greenflow.errors import InvalidInput

Signal = Literal["average", "marginal"]
EmissionFactor = Literal["lifecycle", "direct", "unknown"]
UNIT = "gCO2e/kWh"
# lbs/MWh -> g/kWh: 453.59237 g per lb / 1000 kWh per MWh.
LBS_PER_MWH_TO_G_PER_KWH = 0.45359237
MAX_INTENSITY = 5000.0
"""The highest intensity (gCO2e/kWh) taken as real. No generator emits more than about 1,500 g/kWh even
counted over its life cycle (lignite); a value above this is a unit mistake or garbage, never a dirty hour."""


def intensity_value(raw: object, what: str = "intensity") -> float | None:
    """``raw`` as a checked intensity in gCO2e/kWh: ``None`` stays ``None`` (missing), anything else must be
    a finite number in [0, :data:`MAX_INTENSITY`].

    Raises :class:`InvalidInput` naming the value otherwise (NaN, infinity, negative, absurdly large, a
    string or a boolean): every value entering a :class:`ForecastPoint` passes here, so no planner, carbon
    join or ledger column ever sees one. Providers turn the error into their malformed-data error.
    """
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, numbers.Real):
        raise InvalidInput(f"{what} is not a number ({raw!r})", fix="intensities are numbers in gCO2e/kWh")
    value = float(raw)
    if math.isnan(value):
        raise InvalidInput(f"{what} is NaN", fix="a missing value is null, never NaN")
    if math.isinf(value):
        raise InvalidInput(f"{what} is infinite ({value})", fix="intensities are finite")
    if value < 0:
        raise InvalidInput(f"{what} is negative ({value} gCO2e/kWh)", fix="intensities are 0 or more")
    if value > MAX_INTENSITY:
        raise InvalidInput(
            f"{what} is {value} gCO2e/kWh, above {MAX_INTENSITY:g}: more than any generator emits",
            fix="check the unit (gCO2e/kWh expected)",
        )
    return value


@dataclass(frozen=True)
class ForecastPoint:
    """One slot of a forecast: [start, end) with a value in gCO2e/kWh, or ``None`` when missing.

    The value is checked by :func:`intensity_value` (finite, 0 to :data:`MAX_INTENSITY`): a slot with
    garbage cannot be built, whatever source it comes from.
    """

    start: datetime
    end: datetime
    value: float | None
    estimated: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", require_aware(self.start, "point start"))
        object.__setattr__(self, "end", require_aware(self.end, "point end"))
        if self.end <= self.start:
            raise InvalidInput(
                f"forecast point ends ({self.end.isoformat()}) before it starts ({self.start.isoformat()})",
                fix="each point needs end > start",
            )
        what = f"intensity for the slot starting {_iso(self.start)}"
        object.__setattr__(self, "value", intensity_value(self.value, what))

    @property
    def duration(self) -> timedelta:
        """Length of the slot."""
        return self.end - self.start


@dataclass(frozen=True)
class Forecast:
    """A carbon-intensity series for one region from one provider.

    ``points`` are sorted by start and do not overlap; gaps between them are allowed (uncovered time).
    """

    region: str
    provider: str
    signal: Signal
    generated_at: datetime
    points: tuple[ForecastPoint, ...]
    emission_factor: EmissionFactor = "unknown"
    unit: str = UNIT
    # Free-form provenance an auditor may want (e.g. the provider's model version, replay clock).
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "generated_at", require_aware(self.generated_at, "generated_at"))
        # meta copies bits of a provider's payload (a model version, a region block): a NaN there would
        # make the forecast unstorable (PostgreSQL's JSON refuses it), so non-finite numbers become None.
        object.__setattr__(self, "meta", _finite_json(self.meta))
        points = tuple(sorted(self.points, key=lambda p: p.start))
        for before, after in itertools.pairwise(points):
            if after.start < before.end:
                raise InvalidInput(
                    f"forecast points overlap at {after.start.isoformat()}",
                    fix="give non-overlapping slots",
                )
        object.__setattr__(self, "points", points)

    # -- views -----------------------------------------------------------------------------------
    @property
    def start(self) -> datetime | None:
        """Start of the first point, or ``None`` for an empty forecast."""
        return self.points[0].start if self.points else None

    @property
    def end(self) -> datetime | None:
        """End of the last point, or ``None`` for an empty forecast."""
        return self.points[-1].end if self.points else None

    def known_points(self) -> list[ForecastPoint]:
        """The points that have a value."""
        return [p for p in self.points if p.value is not None]

    def after(self, moment: datetime) -> Forecast:
        """The forecast restricted to points that end after ``moment`` (the first may be partial)."""
        moment = require_aware(moment, "moment")
        return self._replace_points(p for p in self.points if p.end > moment)

    def between(self, start: datetime, end: datetime) -> Forecast:
        """The points that overlap [start, end)."""
        start, end = require_aware(start, "start"), require_aware(end, "end")
        return self._replace_points(p for p in self.points if p.end > start and p.start < end)

    def mean_intensity(self, start: datetime, end: datetime) -> tuple[float | None, float]:
        """Time-weighted mean intensity over [start, end) and the share of that span with a value.

        Returns ``(mean, coverage)``; ``mean`` is over the covered part only and ``None`` when no part
        of the span has a value. ``coverage`` is in [0, 1].
        """
        start, end = require_aware(start, "start"), require_aware(end, "end")
        span = (end - start).total_seconds()
        if span <= 0:
            return None, 0.0
        weighted = covered = 0.0
        for point in self.points:
            if point.value is None or point.end <= start or point.start >= end:
                continue
            seconds = (min(point.end, end) - max(point.start, start)).total_seconds()
            weighted += point.value * seconds
            covered += seconds
        if covered == 0:
            return None, 0.0
        return weighted / covered, covered / span

    # -- provenance ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (the stored copy in the ledger and the CLI's ``--json`` shape)."""
        return {
            "provider": self.provider,
            "region": self.region,
            "signal": self.signal,
            "emission_factor": self.emission_factor,
            "unit": self.unit,
            "generated_at": _iso(self.generated_at),
            "points": [
                {"start": _iso(p.start), "end": _iso(p.end), "value": p.value, "estimated": p.estimated}
                for p in self.points
            ],
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Forecast:
        """Inverse of :meth:`to_dict`."""
        return cls(
            region=data["region"],
            provider=data["provider"],
            signal=data["signal"],
            emission_factor=data.get("emission_factor", "unknown"),
            unit=data.get("unit", UNIT),
            generated_at=parse_time(data["generated_at"], "generated_at"),
            points=tuple(
                ForecastPoint(
                    start=parse_time(p["start"]),
                    end=parse_time(p["end"]),
                    value=p["value"],
                    estimated=bool(p.get("estimated", False)),
                )
                for p in data["points"]
            ),
            meta=dict(data.get("meta") or {}),
        )

    def content_hash(self) -> str:
        """SHA-256 over the canonical JSON of the forecast (lets an auditor check the stored copy)."""
        # Computed once per forecast: a shared cached forecast is hashed by every task planning on it
        # (1000 deferred tasks re-planning each refresh). The hashed fields are immutable; meta is excluded.
        cached: str | None = self.__dict__.get("_content_hash")
        if cached is None:
            payload = self.to_dict()
            payload.pop("meta", None)
            cached = hashlib.sha256(canonical_json(payload).encode()).hexdigest()
            object.__setattr__(self, "_content_hash", cached)
        return cached

    def _replace_points(self, points: Iterable[ForecastPoint]) -> Forecast:
        return Forecast(
            region=self.region,
            provider=self.provider,
            signal=self.signal,
            generated_at=self.generated_at,
            points=tuple(points),
            emission_factor=self.emission_factor,
            unit=self.unit,
            meta=self.meta,
        )


def points_from_series(
    starts: Sequence[datetime], values: Sequence[float | None], step: timedelta, *, estimated: bool = False
) -> tuple[ForecastPoint, ...]:
    """Build equal-length slots from start times and values (convenience for providers and tests)."""
    return tuple(
        ForecastPoint(start=s, end=s + step, value=v, estimated=estimated) for s, v in zip(starts, values, strict=True)
    )


def _finite_json(value: Any) -> Any:
    """``value`` with every NaN or infinite float inside dicts and lists replaced by ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        cleaned = {key: _finite_json(item) for key, item in value.items()}
        return value if all(cleaned[key] is value[key] for key in value) else cleaned
    if isinstance(value, (list, tuple)):
        items = [_finite_json(item) for item in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    return value


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, UTF-8 kept (used for hashes)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
