"""The green-window planner: when (and where) a job of known duration should start.

:func:`plan` takes one or more ``(region, forecast)`` candidates, the job's duration and its time limits,
and returns a :class:`Plan`: the start and region whose window ``[start, start + duration)`` has the
lowest expected carbon intensity, the intensity of starting right away, and a sentence for the ledger.

Rules, in the order they are applied:

* **Feasible starts.** The job may start from the *earliest start* (``earliest``, or ``now`` when not
  given; an ``earliest`` in the past is moved up to ``now``, since nothing can start in the past) up to
  the *latest start*: ``deadline - duration`` (the deadline is the latest *finish*), or
  ``earliest + max_delay`` (``max_delay`` bounds the *start*). Exactly one of ``deadline`` and
  ``max_delay`` is given. The deadline is never exceeded.
* **Coverage.** Time a forecast does not cover, and slots whose value is missing (``None``) or not a
  number, are *not* assumed green, nor guessed at: a window is a candidate only if every instant of it
  has a known value. When no window in any region is fully covered, the plan runs now in the first
  listed region and its reason says why (``expected_intensity`` is then ``None``).
* **Best window.** Among every feasible start (not only slot-aligned ones) the planner picks the
  lowest exact time-weighted mean over ``[start, start + duration)``, partial slots included. That
  mean is piecewise linear in the start, so its minimum lies where the window's start or end meets a
  slot boundary, or at an end of the feasible range; the planner evaluates exactly those points in one
  sweep (linear in the number of points). Ties (within a relative 1e-9) go to the earliest start, then
  to the first-listed region.
* **Threshold.** With ``threshold`` the plan instead takes the *earliest* start whose window mean is at
  or below the threshold ("at or below": a mean that slides continuously down through the threshold
  equals it at the first instant it qualifies, so strictly "below" would have no earliest instant). If
  no window reaches it, the best window is taken as usual.
* **Baseline.** "Now" is the window starting at the earliest start in the *first-listed* region (the
  region the job would use without greenflow), so ``now_intensity`` and ``savings_pct`` compare the
  chosen window with not planning at all.
* **Minimum saving.** Waiting must be worth it against the best start *now* in any allowed region: when
  the chosen window starts later and saves less than ``min_savings_pct`` over the greenest run-now
  window of all regions, the plan runs now in that region instead (moving region now costs no delay, so
  it needs no minimum). Regions whose forecast does not fully cover their run-now window are not
  counted; when none does, the rule cannot be applied and the plan keeps the best fully known window
  rather than run in unknown time.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import accumulate
from operator import attrgetter
from typing import Any, Literal, cast

from greenflow.clock import require_aware, utcnow
from greenflow.errors import InvalidInput
from greenflow.intensity.forecast import Forecast

Decision = Literal["run_now", "defer"]

# Two window means closer than this (relative) are a tie: float sums of equal windows can differ in the
# last bits, and a tie must go to the earliest start, not to whichever rounding came out lower.
_TIE_RELATIVE = 1e-9
_MICROSECOND = timedelta(microseconds=1)
_SLACK = 1e-6  # seconds: float noise allowed where window edges meet run edges
_START, _END = attrgetter("start"), attrgetter("end")

__all__ = ["Candidate", "Decision", "Plan", "RegionOption", "plan"]


@dataclass(frozen=True)
class _Run:
    """A stretch of contiguous known values of one forecast, as numbers for the sweep.

    ``times`` are the k+1 slot boundaries in seconds after the candidate's origin, ``values`` the k
    slot values plus a 0.0 sentinel (so a window ending exactly at the run's end reads ``prefix[k]``),
    ``prefix[i]`` the integral of intensity x seconds from ``times[0]`` to ``times[i]``. ``step`` is the
    common slot length when every slot has the same one (most providers' case), else ``None``.
    """

    times: tuple[float, ...]
    values: tuple[float, ...]
    prefix: tuple[float, ...]
    step: float | None

    @classmethod
    def of(cls, times: list[float], values: list[float]) -> _Run:
        """Build a run from its boundaries and slot values."""
        prefix = [0.0]
        prefix += accumulate([value * (b - a) for value, a, b in zip(values, times, times[1:], strict=False)])
        width = times[1] - times[0]
        # Exact float equality: a grid that only nearly matches takes the general sweep instead.
        uniform = times == [times[0] + index * width for index in range(len(times))]
        return cls(tuple(times), (*values, 0.0), tuple(prefix), width if uniform else None)

    def integral_to(self, moment: float) -> float:
        """Integral from the run's start to ``moment`` (within the run)."""
        index = min(bisect_right(self.times, moment) - 1, len(self.times) - 2)
        return self.prefix[index] + self.values[index] * (moment - self.times[index])

    def covers(self, start: float, end: float) -> bool:
        """Whether [start, end] lies inside the run (to a microsecond: ``start + span`` in floats may
        land a hair past a boundary the datetimes meet exactly)."""
        return self.times[0] - _SLACK <= start and end <= self.times[-1] + _SLACK


def _prepare(forecast: Forecast) -> tuple[datetime | None, tuple[_Run, ...]]:
    """Reduce a forecast to its origin (first point's start) and maximal runs of known values."""
    points = forecast.points
    if not points:
        return None, ()
    origin = points[0].start
    values = [point.value for point in points]
    # Fast path for the usual forecast: contiguous, every value known and finite (a NaN or inf
    # anywhere makes the sum non-finite and sends it down the careful path).
    if None not in values:
        known = cast("list[float]", values)
        starts, ends = list(map(_START, points)), list(map(_END, points))
        if math.isfinite(sum(known)) and ends[:-1] == starts[1:]:
            times = [0.0]
            times += [(end - origin).total_seconds() for end in ends]
            return origin, (_Run.of(times, known),)

    runs: list[_Run] = []
    run_times: list[float] = []
    run_values: list[float] = []
    previous_end: datetime | None = None
    for point in points:
        value = point.value
        if value is None or not math.isfinite(value):  # a gap: the run so far ends here
            previous_end = None
            continue
        if previous_end is None or point.start != previous_end:
            if run_values:
                runs.append(_Run.of(run_times, run_values))
            run_times, run_values = [(point.start - origin).total_seconds()], []
        run_times.append((point.end - origin).total_seconds())
        run_values.append(value)
        previous_end = point.end
    if run_values:
        runs.append(_Run.of(run_times, run_values))
    return origin, tuple(runs)


@dataclass(frozen=True)
class Candidate:
    """One place the job could run: a region label and its intensity forecast.

    The forecast is reduced to numbers once, when the candidate is made, so re-planning the same
    forecast with other limits (as a waiting trigger does) costs only the search.
    """

    region: str
    forecast: Forecast
    _origin: datetime | None = field(init=False, repr=False, compare=False)
    _runs: tuple[_Run, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.region, str) or not self.region.strip():
            raise InvalidInput(f"region={self.region!r} is not a region name", fix="give a non-empty region")
        if not isinstance(self.forecast, Forecast):
            raise InvalidInput(
                f"forecast for region {self.region!r} is a {type(self.forecast).__name__}, not a Forecast",
                fix="pass the Forecast a provider returned",
            )
        origin, runs = _prepare(self.forecast)
        object.__setattr__(self, "_origin", origin)
        object.__setattr__(self, "_runs", runs)

    def _seconds(self, moment: datetime) -> float:
        assert self._origin is not None
        return (moment - self._origin).total_seconds()

    def _moment(self, seconds: float, *, round_up: bool = False) -> datetime:
        """Seconds after the origin as a datetime, at the nearest microsecond or, with ``round_up``,
        the next one up (a threshold crossing is the first instant a condition holds: never before it)."""
        assert self._origin is not None
        moment = self._origin + timedelta(seconds=seconds)
        if round_up and self._seconds(moment) < seconds:
            moment += _MICROSECOND
        return moment

    def _mean(self, start: float, span: float) -> float | None:
        """Exact mean over [start, start + span) when one run covers it all, else ``None``."""
        end = start + span
        for run in self._runs:
            if run.covers(start, end):
                return (run.integral_to(end) - run.integral_to(start)) / span
        return None


@dataclass(frozen=True)
class RegionOption:
    """What one candidate region offers: its own best start and the intensity of starting right away.

    ``start`` is the region's pick under the same rules as the plan (threshold first, else lowest mean);
    it is the earliest start, with ``expected_intensity`` ``None``, when no window there is fully known.
    """

    region: str
    start: datetime
    expected_intensity: float | None
    now_intensity: float | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict."""
        return {
            "region": self.region,
            "start": _iso(self.start),
            "expected_gco2_per_kwh": self.expected_intensity,
            "now_gco2_per_kwh": self.now_intensity,
        }


@dataclass(frozen=True)
class Plan:
    """The planner's answer: where and when to start, what it is expected to save, and why.

    * ``decision`` is ``"run_now"`` when ``start`` is the earliest allowed start (in any region), else
      ``"defer"``.
    * ``expected_intensity`` is the exact time-weighted mean over ``[start, end)`` (gCO2e/kWh), ``None``
      when no forecast covers it.
    * ``now_intensity`` is the same mean for starting at the earliest start in the **first-listed**
      region (the job's home), ``None`` when that window is not fully covered.
    * ``savings_pct`` is ``100 * (now - expected) / now``; ``None`` when either is unknown or ``now`` is
      not positive.
    * ``deferred_seconds`` is ``start - earliest start``.
    * ``latest_start`` (``deadline - duration``) is when a waiting trigger must fire whatever happens.
    * ``alternatives`` lists every candidate region, in the order given.
    """

    decision: Decision
    region: str
    start: datetime
    end: datetime
    expected_intensity: float | None
    now_intensity: float | None
    savings_pct: float | None
    deferred_seconds: float
    latest_start: datetime
    provider: str
    reason: str
    alternatives: tuple[RegionOption, ...]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (times as ISO 8601 UTC with ``Z``), with the CLI's ``--json`` key names."""
        return {
            "decision": self.decision,
            "region": self.region,
            "start": _iso(self.start),
            "end": _iso(self.end),
            "expected_gco2_per_kwh": self.expected_intensity,
            "now_gco2_per_kwh": self.now_intensity,
            "savings_pct": self.savings_pct,
            "deferred_seconds": self.deferred_seconds,
            "latest_start": _iso(self.latest_start),
            "provider": self.provider,
            "reason": self.reason,
            "alternatives": [option.to_dict() for option in self.alternatives],
        }


@dataclass(frozen=True)
class _Pick:
    """A region's start and the exact mean of its window."""

    start: datetime
    mean: float


def plan(
    candidates: Sequence[Candidate],
    *,
    duration: timedelta,
    earliest: datetime | None = None,
    deadline: datetime | None = None,
    max_delay: timedelta | None = None,
    min_savings_pct: float = 0.0,
    threshold: float | None = None,
    now: datetime | None = None,
) -> Plan:
    """Plan the greenest start for a job of ``duration`` among ``candidates`` (see the module doc).

    Raises :class:`~greenflow.errors.InvalidInput` for no candidates, a non-positive duration, naive
    datetimes, both or neither of ``deadline``/``max_delay``, a negative ``max_delay`` or
    ``min_savings_pct``, a non-finite ``threshold``, or a deadline that leaves no room for the job.
    """
    candidates = _check_candidates(candidates)
    duration = _check_duration(duration)
    now = utcnow() if now is None else require_aware(now, "now")
    requested = now if earliest is None else require_aware(earliest, "earliest")
    first = max(requested, now)  # nothing starts in the past
    latest = _latest_start(requested, first, duration, deadline, max_delay)
    if (
        isinstance(min_savings_pct, bool)
        or not isinstance(min_savings_pct, (int, float))
        or not (0 <= min_savings_pct < math.inf)
    ):
        raise InvalidInput(
            f"min_savings_pct={min_savings_pct!r} is not a percentage of zero or more",
            fix="give e.g. 10 for 10 %",
        )
    if threshold is not None and (
        isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold)
    ):
        raise InvalidInput(f"threshold={threshold!r} is not a number", fix="give gCO2e/kWh, e.g. 150")

    span = duration.total_seconds()
    bests: list[_Pick | None] = []
    earlies: list[_Pick | None] = []
    options: list[RegionOption] = []
    for candidate in candidates:
        best, early, now_mean = _search(candidate, first, latest, span, threshold)
        bests.append(best)
        earlies.append(early)
        own = early or best
        options.append(
            RegionOption(
                region=candidate.region,
                start=first if own is None else own.start,
                expected_intensity=None if own is None else own.mean,
                now_intensity=now_mean,
            )
        )

    home = candidates[0]
    baseline = options[0].now_intensity
    common: dict[str, Any] = {
        "first": first,
        "latest": latest,
        "duration": duration,
        "baseline": baseline,
        "options": options,
    }
    chosen_index = _earliest(earlies)
    by_threshold = chosen_index is not None
    if chosen_index is None:
        chosen_index = _lowest(bests)
    if chosen_index is None:
        return _make(
            home,
            first,
            None,
            **common,
            reason=(
                f"Running now in {home.region}: no forecast covers a whole {_span(duration)} window "
                f"with known values between {_iso(first)} and {_iso(latest + duration)}, and uncovered "
                "time is not assumed green."
            ),
        )

    chosen = (earlies if by_threshold else bests)[chosen_index]
    assert chosen is not None  # the index helpers only return the index of a real pick
    candidate = candidates[chosen_index]
    start, expected = chosen.start, chosen.mean
    saving = _saving(baseline, expected)

    # Waiting must be worth it against the best start *now* in any allowed region, not only at home: a
    # window 2 % greener than starting now elsewhere is not worth hours of delay.
    immediate = [(o.now_intensity, i) for i, o in enumerate(options) if o.now_intensity is not None]
    if start != first and immediate:
        now_value, now_index = min(immediate)
        over_now = _saving(now_value, expected)
        if over_now is not None and over_now < min_savings_pct:
            here = candidates[now_index]
            versus = _versus(baseline, _saving(baseline, now_value), home.region)
            return _make(
                here,
                first,
                now_value,
                **common,
                reason=(
                    f"Running now in {here.region} ({now_value:.1f} gCO2e/kWh{versus}): "
                    f"the best window ({candidate.region} at {_iso(start)}, {expected:.1f} gCO2e/kWh) would save only "
                    f"{over_now:.1f} % over starting now in {here.region}, below the {min_savings_pct:g} % minimum "
                    "worth waiting for."
                ),
            )

    if by_threshold:
        why = f"the first window whose mean is at or below the threshold of {threshold:g} gCO2e/kWh"
    elif threshold is not None:
        why = f"no window reaches the threshold of {threshold:g} gCO2e/kWh, so the lowest-carbon window"
    else:
        why = f"the lowest-carbon {_span(duration)} window finishing by {_iso(latest + duration)}"
    versus = _versus(baseline, saving, home.region)
    if start == first:
        text = f"Running now in {candidate.region} ({expected:.1f} gCO2e/kWh{versus}): {why}."
    else:
        text = (
            f"Deferring {_span(start - first)} to {_iso(start)} in {candidate.region} "
            f"({expected:.1f} gCO2e/kWh{versus}): {why}."
        )
    if baseline is None:
        text += (
            f" The intensity of starting now in {home.region} is unknown (its forecast does not cover "
            f"{_iso(first)} to {_iso(first + duration)} with known values), so no saving is stated."
        )
    return _make(candidate, start, expected, **common, reason=text)


# -- validation ------------------------------------------------------------------------------------


def _check_candidates(candidates: Sequence[Candidate]) -> Sequence[Candidate]:
    if isinstance(candidates, Candidate):
        return (candidates,)
    if not candidates:
        raise InvalidInput("no candidate regions to plan over", fix="give at least one (region, forecast)")
    for candidate in candidates:
        if not isinstance(candidate, Candidate):
            raise InvalidInput(
                f"candidate {candidate!r} is not a Candidate",
                fix="wrap each forecast in Candidate(region, forecast)",
            )
    return candidates


def _check_duration(duration: timedelta) -> timedelta:
    if not isinstance(duration, timedelta):
        raise InvalidInput(f"duration={duration!r} is not a timedelta", fix="pass e.g. timedelta(hours=2)")
    if duration <= timedelta(0):
        raise InvalidInput(f"duration={duration} is not positive", fix="give the job's expected run time, e.g. 2h")
    return duration


def _latest_start(
    requested: datetime,
    first: datetime,
    duration: timedelta,
    deadline: datetime | None,
    max_delay: timedelta | None,
) -> datetime:
    """The latest start the limits allow; raises when it is before the earliest possible start."""
    if (deadline is None) == (max_delay is None):
        raise InvalidInput(
            "give exactly one of deadline and max_delay"
            + (" (both were given)" if deadline is not None else " (neither was given)"),
            fix="a deadline is the latest finish; max_delay bounds how late the job may start",
        )
    if deadline is not None:
        deadline = require_aware(deadline, "deadline")
        latest = deadline - duration
        if latest < first:
            raise InvalidInput(
                f"deadline={_iso(deadline)} is before earliest start {_iso(first)} + duration "
                f"{_span(duration)} = {_iso(first + duration)}",
                fix=f"move the deadline to {_iso(first + duration)} or later, or shorten the duration",
            )
        return latest
    assert max_delay is not None
    if not isinstance(max_delay, timedelta) or max_delay < timedelta(0):
        raise InvalidInput(f"max_delay={max_delay!r} is not a duration of zero or more", fix="give e.g. 12h")
    latest = requested + max_delay
    if latest < first:
        raise InvalidInput(
            f"max_delay={_span(max_delay)} after earliest {_iso(requested)} ended at {_iso(latest)}, "
            f"before now ({_iso(first)})",
            fix="give a later earliest start or a longer max_delay",
        )
    return latest


# -- the search -----------------------------------------------------------------------------------

# Window starts of one run in time order with their window integrals (intensity x seconds).
_Windows = tuple[Sequence[float], Sequence[float]]


def _search(
    candidate: Candidate, first: datetime, latest: datetime, span: float, threshold: float | None
) -> tuple[_Pick | None, _Pick | None, float | None]:
    """One region's best fully covered start, its earliest start at or below the threshold (if one is
    given), and its mean for starting at ``first``."""
    if candidate._origin is None:
        return None, None, None
    lo, hi = candidate._seconds(first), candidate._seconds(latest)
    target = None if threshold is None else threshold * span
    groups: list[_Windows] = []
    crossing: float | None = None
    for run in candidate._runs:
        start_lo, start_hi = max(lo, run.times[0]), min(hi, run.times[-1] - span)
        if start_lo > start_hi + _SLACK:
            continue
        start_hi = max(start_hi, start_lo)
        if target is None and run.step is not None:
            groups.extend(_uniform_windows(run, start_lo, start_hi, span))
        else:
            starts, integrals, crossed = _sweep(run, start_lo, start_hi, span, target)
            groups.append((starts, integrals))
            if crossed is not None:
                crossing, target = crossed, None  # runs come in time order: the first crossing is it
    best_pick = early_pick = None
    best = _lowest_earliest(groups, span)
    if best is not None:
        start = candidate._moment(best[0])
        mean = candidate._mean(candidate._seconds(start), span)
        best_pick = _Pick(start, best[1] / span if mean is None else mean)
    if crossing is not None and threshold is not None:
        start = candidate._moment(crossing, round_up=True)
        mean = candidate._mean(candidate._seconds(start), span)
        early_pick = _Pick(start, threshold if mean is None else mean)
    return best_pick, early_pick, candidate._mean(lo, span)


def _lowest_earliest(groups: Sequence[_Windows], span: float) -> tuple[float, float] | None:
    """The earliest start whose window integral is within the tie tolerance of the lowest one, and
    that integral."""
    lowest = min((min(integrals) for _, integrals in groups if integrals), default=None)
    if lowest is None:
        return None
    limit = lowest + _TIE_RELATIVE * max(span, abs(lowest))
    earliest = (math.inf, lowest)
    for starts, integrals in groups:
        index = next((k for k, integral in enumerate(integrals) if integral <= limit), None)
        if index is not None and starts[index] < earliest[0]:
            earliest = (starts[index], integrals[index])
    return earliest


def _uniform_windows(run: _Run, lo: float, hi: float, span: float) -> list[_Windows]:
    """Every candidate start in [lo, hi] of a run of equal slots, as three sorted families.

    With slots of length ``step`` and ``span = m * step + r`` (0 <= r < step): a window starting on
    boundary i ends ``r`` into slot i + m; a window ending on boundary j starts ``step - r`` into slot
    j - m - 1. Both families are prefix differences over shifted slices (C-speed list work), which is
    what makes a 72-hour 5-minute forecast plan in a fraction of a millisecond.
    """
    times, values, prefix = run.times, run.values, run.prefix
    step = run.step
    assert step is not None
    ends = [lo] if hi == lo else [lo, hi]
    groups: list[_Windows] = [(ends, [run.integral_to(s + span) - run.integral_to(s) for s in ends])]
    m = int(span // step)
    r = span - m * step
    if r >= step * (1 - 1e-12):  # span is a whole number of slots, up to float noise
        m, r = m + 1, 0.0
    elif r <= step * 1e-12:
        r = 0.0
    # Starts on a boundary strictly inside (lo, hi); their ends stay inside the run since start < hi.
    a, b = bisect_right(times, lo), bisect_left(times, hi)
    b = min(b, len(times) - m - (0 if r == 0.0 else 1))  # guard against float noise at the run's end
    if a < b:
        if r == 0.0:
            integrals = [p - q for p, q in zip(prefix[a + m : b + m], prefix[a:b], strict=True)]
        else:
            integrals = [
                p + v * r - q for p, v, q in zip(prefix[a + m : b + m], values[a + m : b + m], prefix[a:b], strict=True)
            ]
        groups.append((times[a:b], integrals))
    # Ends on a boundary (starts strictly inside (lo, hi)); the same starts as above when r == 0.
    if r > 0.0:
        a, b = max(bisect_right(times, lo + span), m + 1), bisect_left(times, hi + span)
        if a < b:
            into = step - r
            q = a - m - 1
            integrals = [
                p - s - v * into
                for p, s, v in zip(prefix[a:b], prefix[q : q + b - a], values[q : q + b - a], strict=True)
            ]
            groups.append(([t - span for t in times[a:b]], integrals))
    return groups


def _sweep(
    run: _Run, lo: float, hi: float, span: float, target: float | None
) -> tuple[list[float], list[float], float | None]:
    """Slide the window over one run from ``lo`` to ``hi``, stopping wherever either edge meets a slot
    boundary: between two such stops the window's integral is linear, so these stops hold its minimum
    and bracket the first start whose integral reaches ``target`` (threshold x span), if given.
    Returns the stops, their integrals and that first start.
    """
    times, values, prefix = run.times, run.values, run.prefix
    last = len(times) - 1
    i = min(bisect_right(times, lo) - 1, last - 1)  # slot holding the start: times[i] <= start
    j = min(bisect_right(times, lo + span) - 1, last - 1)  # slot holding the end
    next_end = times[j + 1] - span
    starts: list[float] = []
    integrals: list[float] = []
    crossing: float | None = None
    start = lo
    while True:
        # values[j] is the 0.0 sentinel once the end reaches the run's last boundary.
        integral = prefix[j] + values[j] * (start + span - times[j]) - prefix[i] - values[i] * (start - times[i])
        # A mean equal to the threshold qualifies even when float sums land a hair above it.
        if target is not None and integral <= target + _TIE_RELATIVE * max(span, abs(target)):
            crossing = start
            if integrals and integral < target:  # it fell through between the previous stop and this one
                before, before_integral = starts[-1], integrals[-1]
                crossing = before + (before_integral - target) / (before_integral - integral) * (start - before)
            target = None  # only the first qualifying start matters
        starts.append(start)
        integrals.append(integral)
        if start >= hi:
            return starts, integrals, crossing
        # Each pass moves the start or the end on by one boundary (or reaches hi): linear in slots.
        next_start = times[i + 1]
        step = next_start if next_start < next_end else next_end
        if step > hi:
            step = hi
        if step == next_start:
            i += 1
        if step == next_end:
            j += 1
            next_end = times[j + 1] - span if j < last else math.inf
        start = step


def _earliest(picks: Sequence[_Pick | None]) -> int | None:
    """Index of the earliest pick; equal starts go to the first-listed region."""
    winner: int | None = None
    for index, pick in enumerate(picks):
        if pick is not None:
            held = None if winner is None else picks[winner]
            if held is None or pick.start < held.start:
                winner = index
    return winner


def _lowest(picks: Sequence[_Pick | None]) -> int | None:
    """Index of the lowest mean; ties (within tolerance) go to the earliest start, then first-listed."""
    known = [pick.mean for pick in picks if pick is not None]
    if not known:
        return None
    lowest = min(known)
    limit = lowest + _TIE_RELATIVE * max(1.0, abs(lowest))
    return _earliest([pick if pick is not None and pick.mean <= limit else None for pick in picks])


# -- building the answer --------------------------------------------------------------------------


def _make(
    candidate: Candidate,
    start: datetime,
    expected: float | None,
    *,
    first: datetime,
    latest: datetime,
    duration: timedelta,
    baseline: float | None,
    options: Sequence[RegionOption],
    reason: str,
) -> Plan:
    return Plan(
        decision="run_now" if start == first else "defer",
        region=candidate.region,
        start=start,
        end=start + duration,
        expected_intensity=expected,
        now_intensity=baseline,
        savings_pct=_saving(baseline, expected),
        deferred_seconds=(start - first).total_seconds(),
        latest_start=latest,
        provider=candidate.forecast.provider,
        reason=reason,
        alternatives=tuple(options),
    )


def _saving(baseline: float | None, expected: float | None) -> float | None:
    if baseline is None or expected is None or baseline <= 0:
        return None
    return 100.0 * (baseline - expected) / baseline


def _versus(baseline: float | None, saving: float | None, home: str) -> str:
    if baseline is None or saving is None:
        return ""
    return f" vs {baseline:.1f} starting now in {home}, {saving:.1f} % lower"


def _span(value: timedelta) -> str:
    """A short human duration: ``2h``, ``1h30m``, ``45m``, ``20s``."""
    total = round(value.total_seconds())
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{seconds}s" if seconds else ""]
    return "".join(parts) or "0s"


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
