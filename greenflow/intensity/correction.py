"""Forecast correction: learn a forecast's recent errors and remove them before planning (opt-in).

The record is a series of past slots, each with the value the provider had *issued* for it before it
began and the *actual* intensity once it had passed (``error = actual - issued``). At a decision time
``now`` only slots that ended by then count. The correction (mode ``"bias+carry"``) is:

1. **Bias by slot of day**: the mean error at the same slot of day (UTC) over the previous ``days``
   days is added to each forecast slot.
2. **The latest error, carried forward**: errors persist (a forecast issued hours ago has not seen
   today's weather), so the error left after step 1 in the slot that has just ended, ``r``, is added as
   ``phi[k] * r`` to the slot ``k`` steps after it, where ``phi[k]`` is the least-squares slope (clamped
   to [-1, 1]) of the residual ``k`` slots later on the residual now, fitted over the previous ``days``
   days. A residual is the error minus the mean of the same slot of day's previous ``days`` errors.

A corrected value is never below zero. Nothing is fitted to the future: every number comes from slots
that ended by ``now``. This is the correction ``benchmarks/savings.py`` scores (it calls this module),
where it lifts the planner on the published GB forecasts from 60 % (plan-once) to 78 % of the
perfect-foresight oracle's reduction.

:class:`ErrorRecord` accumulates the pairs (incrementally: a replay adds one slot per tick), and
:meth:`ErrorRecord.correction` freezes what was learned into a :class:`Correction`, plain data that can
be applied to a :class:`~greenflow.intensity.forecast.Forecast` and stored in the ledger so an auditor
can recompute the corrected values from the raw forecast. :func:`correct` does it all for one forecast.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal

from greenflow.clock import parse_time, require_aware
from greenflow.errors import GreenflowError, InvalidInput
from greenflow.intensity.forecast import Forecast
from greenflow.intensity.providers.base import IntensityProvider, IssuedHistoryProvider

if TYPE_CHECKING:
    from greenflow.intensity.cache import ForecastCache

log = logging.getLogger(__name__)

CorrectionMode = Literal["bias+carry"]
BiasMode = Literal["always", "significant", "never"]
CORRECTION_MODES: Final[tuple[CorrectionMode, ...]] = ("bias+carry",)
"""The correction modes ``forecast_correction`` accepts (``True`` means the first)."""
AUTO: Final = "auto"
"""``forecast_correction``'s default: correct where the provider publishes the forecasts it issued for past
slots (ukgrid national, a trace of forecast snapshots), and say nothing where it cannot."""
CorrectionSetting = Literal["auto", "bias+carry"]
"""What a spec's ``forecast_correction`` holds when on: :data:`AUTO` or a mode."""
DEFAULT_DAYS: Final = 7
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_DAY: Final = timedelta(days=1)


def lookback(days: int, horizon: timedelta) -> timedelta:
    """How much history a correction at ``now`` needs for a forecast reaching ``horizon`` ahead.

    ``days`` for the bias window, the horizon for the slopes' longest lag, and twice ``days`` more for
    the earliest residuals' own baselines (each is taken against the same slot of day's previous ``days``
    errors, which reach further back where the record has gaps). With it, a decision on the shipped GB
    trace gets exactly the values ``benchmarks/savings.py`` replays with all of the history.
    """
    return 3 * timedelta(days=days) + horizon


@dataclass(frozen=True)
class Correction:
    """What an :class:`ErrorRecord` had learned by ``as_of``: enough to correct (and to recompute) a forecast.

    ``bias[c]`` is added to a slot whose slot of day (UTC) is ``c``; ``slopes[k - 1]`` is ``phi[k]`` (``None``
    where no pair of residuals ``k`` slots apart existed); ``carry_residual`` is the residual of the slot
    starting at ``carry_from`` (the one that ended at ``as_of``), ``None`` when that slot had no pair.
    """

    as_of: datetime
    step: timedelta
    days: int
    bias_mode: BiasMode
    pairs: int
    bias: tuple[float, ...]
    carry_from: datetime
    carry_residual: float | None
    slopes: tuple[float | None, ...]
    mode: CorrectionMode = "bias+carry"

    def __post_init__(self) -> None:
        object.__setattr__(self, "as_of", require_aware(self.as_of, "as_of"))
        object.__setattr__(self, "carry_from", require_aware(self.carry_from, "carry_from"))

    @property
    def per_day(self) -> int:
        """Slots per day."""
        return len(self.bias)

    def adjust(self, start: datetime, value: float) -> float:
        """The corrected value of a forecast slot starting at ``start`` whose raw value is ``value``."""
        slot = _slot(start, self.step)
        carried = 0.0
        if self.carry_residual is not None:
            lag = slot - _slot(self.carry_from, self.step)
            if 1 <= lag <= len(self.slopes):
                slope = self.slopes[lag - 1]
                if slope is not None:
                    carried = slope * self.carry_residual
        return max(0.0, value + self.bias[slot % self.per_day] + carried)

    def apply(self, forecast: Forecast) -> Forecast:
        """``forecast`` with every known value corrected (missing values stay missing)."""
        points = tuple(
            p if p.value is None else replace(p, value=self.adjust(p.start, p.value)) for p in forecast.points
        )
        return Forecast(
            region=forecast.region,
            provider=forecast.provider,
            signal=forecast.signal,
            generated_at=forecast.generated_at,
            points=points,
            emission_factor=forecast.emission_factor,
            unit=forecast.unit,
            meta={**forecast.meta, "corrected": self.describe()},
        )

    def describe(self) -> str:
        """One line for logs and the ledger's ``forecast_note``."""
        if any(self.bias):
            bias = f"bias {min(self.bias):+.1f} to {max(self.bias):+.1f} gCO2e/kWh by slot of day"
        else:
            bias = "no bias"
        if self.carry_residual is None:
            carry = f"nothing carried (no pair for the slot starting {_iso(self.carry_from)})"
        else:
            first = next((s for s in self.slopes if s is not None), None)
            slope = "no slope yet" if first is None else f"slope {first:.2f} at one slot ahead"
            carry = f"carried residual {self.carry_residual:+.1f} gCO2e/kWh from {_iso(self.carry_from)} ({slope})"
        return (
            f"corrected ({self.mode}): {bias} from {self.pairs} (forecast, actual) pairs over the last "
            f"{self.days} days; {carry}"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe parameters (the ledger's record): with the raw forecast they give the corrected one."""
        return {
            "mode": self.mode,
            "as_of": _iso(self.as_of),
            "step_s": self.step.total_seconds(),
            "days": self.days,
            "bias_mode": self.bias_mode,
            "pairs": self.pairs,
            "bias_by_slot_of_day": list(self.bias),
            "carry_from": _iso(self.carry_from),
            "carry_residual": self.carry_residual,
            "slopes_by_lag": list(self.slopes),
            "formula": "max(0, raw + bias_by_slot_of_day[slot of day (UTC)] "
            "+ slopes_by_lag[k - 1] * carry_residual), k = slots after carry_from",
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Correction:
        """Inverse of :meth:`to_dict`."""
        return cls(
            as_of=parse_time(data["as_of"], "as_of"),
            step=timedelta(seconds=float(data["step_s"])),
            days=int(data["days"]),
            bias_mode=data["bias_mode"],
            pairs=int(data["pairs"]),
            bias=tuple(float(b) for b in data["bias_by_slot_of_day"]),
            carry_from=parse_time(data["carry_from"], "carry_from"),
            carry_residual=data["carry_residual"],
            slopes=tuple(None if s is None else float(s) for s in data["slopes_by_lag"]),
            mode=data.get("mode", "bias+carry"),
        )


class ErrorRecord:
    """Past (issued, actual) pairs on a regular slot grid, and the running fit the correction needs.

    Add pairs in time order with :meth:`add` (slots may be skipped: a missing value stays missing);
    :meth:`correction` then gives what is known at a moment. ``max_lag`` is how many slots ahead of the
    latest finished slot the carry reaches (the forecast's length in slots, plus one). Moving forward
    in time costs ``O(max_lag)`` per slot, so a replay can ask at every tick.
    """

    def __init__(self, step: timedelta, *, max_lag: int, days: int = DEFAULT_DAYS, bias: BiasMode = "always") -> None:
        if step <= timedelta(0) or _DAY % step:
            raise InvalidInput(
                f"a forecast correction needs slots that divide a day; got {step}", fix="use 5, 15, 30 or 60 minutes"
            )
        if days < 1:
            raise InvalidInput(f"days={days} is not a positive number of days", fix="use e.g. 7")
        if bias not in ("always", "significant", "never"):
            raise InvalidInput(f"bias={bias!r} is unknown", fix="use always, significant or never")
        self.step = step
        self.days = days
        self.bias_mode: BiasMode = bias
        self.per_day = _DAY // step
        self.window = days * self.per_day
        self.max_lag = max(int(max_lag), 1)
        self._errors: dict[int, float] = {}
        self._residuals: dict[int, float] = {}
        # The last ``days`` errors per slot of day: the baseline a new slot's residual is taken against.
        self._history: list[deque[float]] = [deque(maxlen=days) for _ in range(self.per_day)]
        self._last: int | None = None
        # Rolling least-squares sums per lag over the window [at - window, at), advanced slot by slot.
        self._at: int | None = None
        self._since = 0  # the first slot the sums were started from
        self._cross = [0.0] * (self.max_lag + 1)
        self._square = [0.0] * (self.max_lag + 1)

    def add(self, start: datetime, issued: float | None, actual: float | None) -> None:
        """Record the slot starting at ``start``: the value issued for it, and what it turned out to be."""
        slot = _slot(require_aware(start, "start"), self.step)
        if self._last is not None and slot <= self._last:
            raise InvalidInput(
                f"pairs must be added in time order: {_iso(start)} is not after the last one",
                fix="add each slot once, oldest first",
            )
        if self._at is not None and slot < self._at:
            raise InvalidInput(
                f"the slot starting {_iso(start)} ended before the last correction asked for",
                fix="add every pair before asking for a correction at a later moment",
            )
        self._last = slot
        if issued is None or actual is None:
            return
        error = float(actual) - float(issued)
        past = self._history[slot % self.per_day]
        self._residuals[slot] = error - (sum(past) / len(past) if past else 0.0)
        self._errors[slot] = error
        past.append(error)

    def correction(self, now: datetime) -> Correction | None:
        """What is known at ``now`` from the slots that ended by then, or ``None`` with no pair to learn from.

        ``None`` means no slot in the last ``days`` days has both an issued and an actual value.
        """
        t = _slot(require_aware(now, "now"), self.step)  # the slot now is in; those before it have ended
        if self._last is not None and self._last >= t:
            raise InvalidInput(
                f"the record holds a slot that had not ended at {_iso(now)}",
                fix="add only the pairs of slots that ended by the decision time",
            )
        self._advance(t)
        sums, squares, counts = [0.0] * self.per_day, [0.0] * self.per_day, [0] * self.per_day
        errors = self._errors
        for h in range(t - self.window, t):
            error = errors.get(h)
            if error is not None:
                sums[h % self.per_day] += error
                counts[h % self.per_day] += 1
        pairs = sum(counts)
        if pairs == 0:
            return None
        bias = [sums[c] / counts[c] if counts[c] else 0.0 for c in range(self.per_day)]
        if self.bias_mode == "never":
            bias = [0.0] * self.per_day
        elif self.bias_mode == "significant":
            # Keep a slot of day's bias only where it is at least two standard errors from zero.
            for h in range(t - self.window, t):
                error = errors.get(h)
                if error is not None:
                    squares[h % self.per_day] += (error - bias[h % self.per_day]) ** 2
            for c in range(self.per_day):
                n = counts[c]
                if n < 3 or abs(bias[c]) < 2 * math.sqrt(squares[c] / (n - 1) / n):
                    bias[c] = 0.0
        slopes = tuple(
            max(-1.0, min(1.0, self._cross[k] / self._square[k])) if self._square[k] > 0 else None
            for k in range(1, self.max_lag + 1)
        )
        return Correction(
            as_of=_moment(t, self.step),
            step=self.step,
            days=self.days,
            bias_mode=self.bias_mode,
            pairs=pairs,
            bias=tuple(bias),
            carry_from=_moment(t - 1, self.step),
            carry_residual=self._residuals.get(t - 1),
            slopes=slopes,
        )

    def _pairs(self, h: int, sign: float) -> None:
        """Add (or remove) the pairs (residual[h - k], residual[h]) for every lag k."""
        now = self._residuals.get(h)
        if now is None:
            return
        for k in range(1, self.max_lag + 1):
            before = self._residuals.get(h - k)
            if before is not None:
                self._cross[k] += sign * now * before
                self._square[k] += sign * before * before

    def _advance(self, t: int) -> None:
        if self._at is None or t - self.window > self._at:
            # Everything held so far would leave the window: start the sums afresh at its start.
            self._at = self._since = t - self.window
            self._cross = [0.0] * (self.max_lag + 1)
            self._square = [0.0] * (self.max_lag + 1)
        while self._at < t:
            self._pairs(self._at, 1.0)  # slot _at has now ended
            if self._at - self.window >= self._since:  # only what the sums hold leaves them
                self._pairs(self._at - self.window, -1.0)
            self._at += 1


@dataclass(frozen=True)
class CorrectionResult:
    """The forecast to plan with, and what was done to it (``correction`` is ``None`` when not applied)."""

    forecast: Forecast
    correction: Correction | None
    reason: str
    cannot: bool = False
    """True when the provider does not keep past forecasts for the region (``"auto"`` then says nothing)."""

    @property
    def applied(self) -> bool:
        """True when the forecast was corrected."""
        return self.correction is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe record for the ledger: whether it was applied, why, and its parameters."""
        return {
            "applied": self.applied,
            "reason": self.reason,
            **({"parameters": self.correction.to_dict()} if self.correction else {}),
        }


def correct_from_provider(
    provider: IntensityProvider, cache: ForecastCache, region: str, forecast: Forecast, now: datetime
) -> CorrectionResult:
    """``forecast`` corrected with the provider's past (issued forecast, actual) pairs, or why not.

    Both past series are read through ``cache`` over :func:`lookback` of :data:`DEFAULT_DAYS` and the
    forecast's horizon, so tasks planning in the same hour fetch them once. The lifecycle and
    ``greenflow plan`` both correct this way. A correction only refines a plan: a provider that keeps no
    past forecasts, or a failed fetch, leaves the forecast as it is, with the reason.
    """
    if not isinstance(provider, IssuedHistoryProvider):
        result = not_applied(
            forecast, f"provider {provider.name!r} does not publish the forecasts it issued for past slots"
        )
        return replace(result, cannot=True)
    if not forecast.points:
        return not_applied(forecast, f"no forecast for {region} to correct")
    start = now - lookback(DEFAULT_DAYS, max((forecast.end or now) - now, timedelta(0)))
    try:
        issued = cache.issued_history(provider, region, start, now)
        actual = cache.history(provider, region, start, now)
    except Exception as error:  # no failure here is a reason not to plan
        detail = error.one_line() if isinstance(error, GreenflowError) else f"{type(error).__name__}: {error}"
        log.info("greenflow: no past forecasts and actuals for %s: %s", region, detail)
        result = not_applied(forecast, f"no past forecasts and actuals for {region}: {detail}")
        # Bad input here is the provider saying it keeps no past forecasts for this region (not an outage).
        return replace(result, cannot=isinstance(error, InvalidInput))
    return correct(forecast, issued, actual, now=now)


def correction_for(
    setting: CorrectionSetting,
    provider: IntensityProvider,
    cache: ForecastCache,
    region: str,
    forecast: Forecast,
    now: datetime,
) -> CorrectionResult | None:
    """:func:`correct_from_provider` under a spec's ``forecast_correction`` setting; ``None``: nothing to say.

    A mode (``"bias+carry"``) always answers, with the reason when no correction could be made. ``"auto"``
    answers only where the provider can publish its past forecasts for ``region``: a provider without them,
    or one that refuses them for this region (ukgrid's regions, a trace that serves its actuals as the
    forecast), gives ``None`` and the entry carries no correction note. A provider that can but failed this
    time still says why.
    """
    if setting == AUTO:
        if not isinstance(provider, IssuedHistoryProvider):
            return None
        result = correct_from_provider(provider, cache, region, forecast, now)
        return None if result.cannot else result
    return correct_from_provider(provider, cache, region, forecast, now)


def not_applied(forecast: Forecast, reason: str) -> CorrectionResult:
    """The raw forecast, with the reason no correction was made."""
    return CorrectionResult(forecast, None, f"forecast correction not applied: {reason}")


def correct(
    forecast: Forecast,
    issued: Forecast,
    actual: Forecast,
    *,
    now: datetime,
    days: int = DEFAULT_DAYS,
    bias: BiasMode = "always",
) -> CorrectionResult:
    """``forecast`` corrected with the errors of the slots that ended by ``now``.

    ``issued`` holds the values the provider had issued for past slots, ``actual`` what those slots
    turned out to be; a pair is a slot present in both with the same start and end. Actuals marked
    ``estimated`` are left out (a provider may fill an unsettled actual with its forecast, which would
    read as a perfect forecast). Without any pair in the last ``days`` days the forecast is returned as
    it was, with the reason.
    """
    now = require_aware(now, "now")
    settled = [p for p in actual.points if p.value is not None and not p.estimated and p.end <= now]
    if not settled:
        return not_applied(
            forecast, f"no settled actuals from {actual.provider} for {actual.region} before {_iso(now)}"
        )
    durations = [p.end - p.start for p in settled]  # once: a point's duration is computed on each read
    step = Counter(durations).most_common(1)[0][0]
    if _DAY % step:
        return not_applied(forecast, f"the actuals' slots ({step}) do not divide a day")
    by_start = {p.start: p.value for p in issued.points if p.value is not None and p.end - p.start == step}
    pairs = tuple(
        (p.start, by_start[p.start], p.value)
        for p, duration in zip(settled, durations, strict=True)
        if duration == step and p.start in by_start
    )
    if not pairs:
        return not_applied(
            forecast, f"no past slot of {actual.region} has both the forecast {issued.provider} issued and its actual"
        )
    # The carry reaches from the slot that just ended to the forecast's last slot.
    reach = (forecast.end or now) - _moment(_slot(now, step) - 1, step)
    correction = _LEARNED.correction(step, days, bias, now, max(math.ceil(reach / step), 1), pairs)
    if correction is None:
        return not_applied(forecast, f"no (forecast, actual) pair in the {days} days before {_iso(now)}")
    return CorrectionResult(correction.apply(forecast), correction, correction.describe())


_Pairs = tuple[tuple[datetime, float | None, float | None], ...]


class _Learned:
    """What the correction learned, kept per inputs: tasks planning in the same slot fit once.

    Fitting an :class:`ErrorRecord` over the look-back (three weeks of half-hours, slopes for every lead)
    costs ~40 times a plan; every task of a provider and region planning in the same slot hands it the same
    (issued, actual) pairs, so the fit is kept, keyed by the pairs themselves (a late actual, or another
    provider's data, is another key: a hit is always the same inputs), the slot, and the settings. A fit for
    a longer forecast serves a shorter one: the slope at each lead does not depend on how many are fitted.
    """

    def __init__(self, size: int = 32) -> None:
        self._size = size
        self._fits: OrderedDict[tuple[object, ...], Correction | None] = OrderedDict()
        self._guard = threading.Lock()
        self.fits = 0
        """Fits made (how a test sees that tasks share one)."""

    def correction(
        self, step: timedelta, days: int, bias: BiasMode, now: datetime, lags: int, pairs: _Pairs
    ) -> Correction | None:
        key = (step, days, bias, _slot(now, step), pairs)
        with self._guard:
            known = key in self._fits
            learned = self._fits.get(key)
            if known:
                self._fits.move_to_end(key)
        if known and (learned is None or len(learned.slopes) >= lags):
            return None if learned is None else replace(learned, slopes=learned.slopes[:lags])
        record = ErrorRecord(step, max_lag=lags, days=days, bias=bias)
        for start, issued, actual in pairs:
            record.add(start, issued, actual)
        learned = record.correction(now)
        with self._guard:
            self.fits += 1
            self._fits[key] = learned
            self._fits.move_to_end(key)
            while len(self._fits) > self._size:
                self._fits.popitem(last=False)
        return learned


_LEARNED: Final = _Learned()


def _slot(moment: datetime, step: timedelta) -> int:
    """The index of the slot holding ``moment`` on the grid of ``step`` slots from midnight UTC, 1970."""
    return (moment - _EPOCH) // step


def _moment(slot: int, step: timedelta) -> datetime:
    return _EPOCH + slot * step


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


__all__ = [
    "AUTO",
    "CORRECTION_MODES",
    "BiasMode",
    "Correction",
    "CorrectionMode",
    "CorrectionResult",
    "CorrectionSetting",
    "ErrorRecord",
    "correct",
    "correction_for",
    "lookback",
    "not_applied",
]
