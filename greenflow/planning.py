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
* **Baseline and minimum saving.** "Now" is the window starting at the earliest start in the
  *first-listed* region (the region the job would use without greenflow), so ``now_intensity`` and
  ``savings_pct`` compare the chosen window with not planning at all. If that saving is below
  ``min_savings_pct``, the plan runs now in the first-listed region. When the first-listed region's
  forecast does not fully cover the run-now window, the saving is unknown (``None``) and the rule cannot
  be applied: the plan keeps the best fully known window rather than run in unknown time.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from greenflow.clock import require_aware, utcnow
from greenflow.errors import InvalidInput
from greenflow.intensity.forecast import Forecast

Decision = Literal["run_now", "defer"]

# Two window means closer than this (relative) are a tie: float sums of equal windows can differ in the
# last bits, and a tie must go to the earliest start, not to whichever rounding came out lower.
_TIE_RELATIVE = 1e-9
_MICROSECOND = timedelta(microseconds=1)

__all__ = ["Candidate", "Decision", "Plan", "RegionOption", "plan"]


@dataclass(frozen=True)
class _Run:
    """A stretch of contiguous known values of one forecast, as numbers for the sweep.

    ``times`` are the k+1 slot boundaries (POSIX seconds), ``values`` the k slot values plus a 0.0
    sentinel (so a window ending exactly at the run's end reads ``prefix[k]``), ``prefix[i]`` the
    integral of intensity x seconds from ``times[0]`` to ``times[i]``.
    """

    times: tuple[float, ...]
    values: tuple[float, ...]
    prefix: tuple[float, ...]

    def integral_to(self, moment: float, index: int) -> float:
        """Integral from the run's start to ``moment``, which lies in slot ``index``."""
        return self.prefix[index] + self.values[index] * (moment - self.times[index])

    def slot_of(self, moment: float) -> int:
        """Index of the slot holding ``moment`` (the last slot for the run's end)."""
        return min(bisect_right(self.times, moment) - 1, len(self.times) - 2)


def _known_runs(forecast: Forecast) -> tuple[_Run, ...]:
    """Split a forecast into maximal runs of contiguous points with a finite value."""
    runs: list[_Run] = []
    times: list[float] = []
    values: list[float] = []
    prefix: list[float] = []
    previous_end: datetime | None = None

    def close() -> None:
        if values:
            runs.append(_Run(tuple(times), (*values, 0.0), tuple(prefix)))
        times.clear()
        values.clear()
        prefix.clear()

    for point in forecast.points:
        value = point.value
        if value is None or not math.isfinite(value):
            close()
            previous_end = None
            continue
        if previous_end is None or point.start != previous_end:
            close()
            times.append(point.start.timestamp())
            prefix.append(0.0)
        end = point.end.timestamp()
        prefix.append(prefix[-1] + value * (end - times[-1]))
        times.append(end)
        values.append(value)
        previous_end = point.end
    close()
    return tuple(runs)


@dataclass(frozen=True)
class Candidate:
    """One place the job could run: a region label and its intensity forecast.

    The forecast is reduced to numbers once, when the candidate is made, so re-planning the same
    forecast with other limits (as a waiting trigger does) costs only the sweep.
    """

    region: str
    forecast: Forecast
    _runs: tuple[_Run, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.region, str) or not self.region.strip():
            raise InvalidInput(f"region={self.region!r} is not a region name", fix="give a non-empty region")
        if not isinstance(self.forecast, Forecast):
            raise InvalidInput(
                f"forecast for region {self.region!r} is a {type(self.forecast).__name__}, not a Forecast",
                fix="pass the Forecast a provider returned",
            )
        object.__setattr__(self, "_runs", _known_runs(self.forecast))


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
    """A start (POSIX seconds) and its window mean in one region."""

    start: float
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
    if not isinstance(min_savings_pct, (int, float)) or not min_savings_pct >= 0:
        raise InvalidInput(
            f"min_savings_pct={min_savings_pct!r} is not a percentage of zero or more",
            fix="give e.g. 10 for 10 %",
        )
    if threshold is not None and (
        not isinstance(threshold, (int, float)) or not math.isfinite(threshold)
    ):
        raise InvalidInput(f"threshold={threshold!r} is not a number", fix="give gCO2e/kWh, e.g. 150")

    lo, hi, span = first.timestamp(), latest.timestamp(), duration.total_seconds()
    picks: list[_Pick | None] = []
    options: list[RegionOption] = []
    for candidate in candidates:
        best, early = _search(candidate._runs, lo, hi, span, threshold)
        pick = early if early is not None else best
        own_now = _window_mean(candidate._runs, lo, span)
        picks.append(pick)
        options.append(
            RegionOption(
                region=candidate.region,
                start=first if pick is None else _to_datetime(pick.start),
                expected_intensity=None if pick is None else pick.mean,
                now_intensity=own_now,
            )
        )

    chosen_index = _choose(picks, by_threshold=threshold is not None)
    baseline = options[0].now_intensity
    home = candidates[0]
    common = {"first": first, "latest": latest, "duration": duration, "baseline": baseline}

    if chosen_index is None:
        return _make(
            home, first, None, baseline, options, **common,
            reason=(
                f"Running now in {home.region}: no forecast covers a whole {_span(duration)} window "
                f"with known values between {_iso(first)} and {_iso(latest + duration)}, and uncovered "
                "time is not assumed green."
            ),
        )

    chosen = picks[chosen_index]
    assert chosen is not None  # _choose only returns the index of a real pick
    candidate = candidates[chosen_index]
    start = _to_datetime(chosen.start)
    # Report the mean of the exact start returned (the sweep's float start was rounded to a microsecond).
    expected = _window_mean(candidate._runs, start.timestamp(), span)
    expected = chosen.mean if expected is None else expected
    saving = _saving(baseline, expected)
    hit_threshold = threshold is not None and expected <= threshold + _tolerance(threshold)

    if saving is not None and saving < min_savings_pct and (start != first or chosen_index != 0):
        return _make(
            home, first, baseline, baseline, options, **common,
            reason=(
                f"Running now in {home.region}: the best window ({candidate.region} at {_iso(start)}, "
                f"{expected:.1f} gCO2e/kWh) would save only {saving:.1f} %, below the "
                f"{min_savings_pct:g} % minimum worth waiting for."
            ),
        )

    where = f"in {candidate.region}"
    if hit_threshold:
        why = f"the first window whose mean is at or below the threshold of {threshold:g} gCO2e/kWh"
    elif threshold is not None:
        why = f"no window reaches the threshold of {threshold:g} gCO2e/kWh, so the lowest-carbon window"
    else:
        why = f"the lowest-carbon {_span(duration)} window finishing by {_iso(latest + duration)}"
    versus = _versus(baseline, saving, home.region)
    if start == first:
        text = f"Running now {where} ({expected:.1f} gCO2e/kWh{versus}): {why}."
    else:
        text = (
            f"Deferring {_span(start - first)} to {_iso(start)} {where} ({expected:.1f} gCO2e/kWh{versus}): "
            f"{why}."
        )
    if baseline is None:
        text += (
            f" The intensity of starting now in {home.region} is unknown (its forecast does not cover "
            f"{_iso(first)} to {_iso(first + duration)}), so the saving cannot be stated."
        )
    return _make(candidate, start, expected, baseline, options, **common, reason=text)


# -- validation ------------------------------------------------------------------------------------


def _check_candidates(candidates: Sequence[Candidate]) -> Sequence[Candidate]:
    if isinstance(candidates, Candidate):
        return (candidates,)
    if not candidates:
        raise InvalidInput("no candidate regions to plan over", fix="give at least one (region, forecast)")
    for candidate in candidates:
        if not isinstance(candidate, Candidate):
            raise InvalidInput(
                f"candidate {candidate!r} is not a Candidate", fix="wrap each forecast in Candidate(region, ...)"
            )
    return candidates


def _check_duration(duration: timedelta) -> timedelta:
    if not isinstance(duration, timedelta):
        raise InvalidInput(f"duration={duration!r} is not a timedelta", fix="pass e.g. timedelta(hours=2)")
    if duration <= timedelta(0):
        raise InvalidInput(
            f"duration={duration} is not positive", fix="give the job's expected run time, e.g. 2h"
        )
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


# -- the sweep ------------------------------------------------------------------------------------


def _search(
    runs: tuple[_Run, ...], lo: float, hi: float, span: float, threshold: float | None
) -> tuple[_Pick | None, _Pick | None]:
    """Best fully covered start in [lo, hi] and, with a threshold, the earliest one at or below it."""
    best: _Pick | None = None
    early: _Pick | None = None
    for run in runs:
        times = run.times
        start_lo = max(lo, times[0])
        start_hi = min(hi, times[-1] - span)
        if start_lo > start_hi:
            continue
        found, crossing = _sweep(run, start_lo, start_hi, span, threshold if early is None else None)
        if best is None or found.mean < best.mean - _tolerance(best.mean):
            best = found  # runs come in time order, so an equal mean in a later run keeps the earlier
        if early is None and crossing is not None:
            early = crossing
    return best, early


def _sweep(
    run: _Run, lo: float, hi: float, span: float, threshold: float | None
) -> tuple[_Pick, _Pick | None]:
    """Slide the window over one run from ``lo`` to ``hi``, stopping wherever either edge meets a slot
    boundary: between two such stops the window's integral is linear, so these stops hold its minimum.
    """
    times, values, prefix = run.times, run.values, run.prefix
    last = len(times) - 1
    i = run.slot_of(lo)  # slot holding the window's start
    j = run.slot_of(lo + span)  # slot holding the window's end
    start = lo
    best_start, best_mean = lo, math.inf
    tolerance = 0.0
    crossing: _Pick | None = None
    previous_start, previous_mean = lo, math.inf
    while True:
        end = start + span
        integral = prefix[j] + values[j] * (end - times[j]) - prefix[i] - values[i] * (start - times[i])
        mean = integral / span
        if mean < best_mean - tolerance:
            best_start, best_mean = start, mean
            tolerance = _tolerance(mean)
        if threshold is not None and mean <= threshold:
            crossing = _Pick(_crossing(previous_start, previous_mean, start, mean, threshold), threshold)
            if previous_mean == math.inf:
                crossing = _Pick(start, mean)
            threshold = None  # only the first qualifying start matters
        previous_start, previous_mean = start, mean
        if start >= hi:
            break
        next_start = times[i + 1]
        next_end = times[j + 1] - span if j < last else math.inf
        step = min(next_start, next_end, hi)
        if step == next_start:
            i += 1
        if step == next_end:
            j = min(j + 1, last - 1) if next_end < hi else j + 1 if j + 1 < last else j
        start = step
    return _Pick(best_start, best_mean), crossing


def _crossing(before: float, before_mean: float, after: float, after_mean: float, threshold: float) -> float:
    """First start in [before, after] whose mean reaches ``threshold`` (the mean is linear there)."""
    if before_mean == math.inf or before_mean <= after_mean:
        return after
    return before + (before_mean - threshold) / (before_mean - after_mean) * (after - before)


def _window_mean(runs: tuple[_Run, ...], start: float, span: float) -> float | None:
    """Exact mean over [start, start + span) when one run covers it all, else ``None``."""
    end = start + span
    for run in runs:
        if run.times[0] <= start and end <= run.times[-1]:
            i, j = run.slot_of(start), run.slot_of(end)
            return (run.integral_to(end, j) - run.integral_to(start, i)) / span
    return None


def _tolerance(mean: float) -> float:
    return _TIE_RELATIVE * max(1.0, abs(mean))


def _choose(picks: Sequence[_Pick | None], *, by_threshold: bool) -> int | None:
    """Index of the winning region: earliest threshold start, else lowest mean; ties to earliest, first."""
    winner: int | None = None
    for index, pick in enumerate(picks):
        if pick is None:
            continue
        if winner is None:
            winner = index
            continue
        held = picks[winner]
        assert held is not None
        if by_threshold:
            if pick.start < held.start:
                winner = index
        elif pick.mean < held.mean - _tolerance(held.mean) or (
            abs(pick.mean - held.mean) <= _tolerance(held.mean) and pick.start < held.start
        ):
            winner = index
    return winner


# -- building the answer --------------------------------------------------------------------------


def _make(
    candidate: Candidate,
    start: datetime,
    expected: float | None,
    now_intensity: float | None,
    options: list[RegionOption],
    *,
    first: datetime,
    latest: datetime,
    duration: timedelta,
    baseline: float | None,
    reason: str,
) -> Plan:
    del now_intensity  # the baseline is always the first-listed region's; kept for call-site clarity
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


def _to_datetime(seconds: float) -> datetime:
    """POSIX seconds to an aware UTC datetime, rounded *up* to a microsecond so that a start computed
    as the first instant a condition holds never lands just before it."""
    moment = datetime.fromtimestamp(seconds, UTC)
    if moment.timestamp() < seconds:
        moment += _MICROSECOND
    return moment


def _span(value: timedelta) -> str:
    """A short human duration: ``2h``, ``1h30m``, ``45m``, ``20s``."""
    total = round(value.total_seconds())
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{seconds}s" if seconds else ""]
    return "".join(parts) or "0s"


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
