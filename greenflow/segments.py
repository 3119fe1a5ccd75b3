"""The segment planner: when an interruptible job should run, in pieces, to finish its work greenest.

A job that checkpoints (training, fine-tuning) need not run in one window: it can run in the greenest
stretches before its deadline and pause in between. :func:`plan_segments` picks those stretches.

The model
---------

* **Work and run time.** The job needs ``duration`` of work at constant power. Every segment after the
  first begins with ``resume_overhead`` of run time that does no work (reload the checkpoint, warm up);
  that time draws the job's power and so counts at the intensity of when it happens. ``n`` segments
  therefore run ``duration + (n - 1) * resume_overhead`` in total. With ``resumed=True`` (re-planning
  the rest of a job that has run and is paused) the first segment pays the overhead too.
* **Carbon.** ``expected_intensity`` is the integral of intensity over every segment (overhead
  included) divided by the work: grams per kWh of the job's *work*, so it compares directly with a
  whole-job window's mean (equal to it for one segment) and multiplies by the work's energy to give
  grams (:meth:`SegmentPlan.expected_grams`).
* **Limits.** Segments lie between the earliest start (``earliest``, or ``now``; never in the past) and
  the deadline (the latest finish; with ``max_delay`` it is ``earliest + max_delay + duration``, the
  whole job's latest finish, as in :func:`greenflow.planning.plan`). Each segment is at least
  ``min_segment`` long (a job shorter than ``min_segment`` runs in one piece) and, as in
  :func:`~greenflow.planning.plan`, lies in time the forecast covers with known values: uncovered time is
  not assumed green. ``max_segments`` bounds the number of segments (none by default).
* **Slot granularity (what is exact).** The grid is the forecast's slot boundaries inside the window plus
  the earliest start and the deadline. Every segment edge lies on the grid except one: either the *last*
  segment ends when the work is done (inside a slot), or the *first* segment starts inside a slot so
  that the last one ends on the grid. :func:`plan_segments` returns a least-carbon plan of that space,
  exactly: a dynamic programme over the slots, run forwards and on the time-reversed grid (the cost is
  symmetric in time). With one segment this space is exactly the windows :func:`greenflow.planning.plan`
  searches (a window starting or ending on a boundary, or at either end of the feasible range), so
  ``max_segments=1`` gives the whole-job plan's intensity.
* **Past the last segment.** A job whose work is not done when its last segment ends (it ran slower than
  ``duration``) runs on to completion: the deadline wins over carbon, and the plan's ``reason`` says so.
* **A deadline that no longer fits.** A new job whose work cannot finish by the deadline is an input error
  (:class:`~greenflow.errors.InvalidInput`), as for the whole-job planner. A *resumed* job re-planned
  after the deadline has become unreachable gets a ``late`` plan instead: one segment from now to
  completion, past the deadline, saying so.

The programme
-------------

Time is kept in integer microseconds so segment lengths add up exactly. Walking the slots in time order,
a state is (work so far, segments so far when ``max_segments`` is set, length of the running segment
capped at ``min_segment``) with the least carbon reaching it, separately for "paused" and "running".
Work so far counts every segment's overhead (the first one's is credited back at the end), so different
numbers of segments that leave the same work share a state. From a state, the next slot is skipped,
run whole, or (the one partial edge) run until the work is done. The number of states is bounded by the
distinct amounts of work the slots can add up to (for 30-minute slots and a 5-minute overhead, one per
5 minutes of work), so a plan costs O(slots x work / gcd(slot, overhead)).
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right, insort
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import accumulate
from operator import mul
from typing import Any, Literal

from greenflow.clock import require_aware, utcnow
from greenflow.errors import InvalidInput
from greenflow.intensity.forecast import Forecast
from greenflow.planning import Candidate, Plan, _check_candidates, _iso, _span, plan

__all__ = [
    "DEFAULT_MIN_SEGMENT",
    "DEFAULT_RESUME_OVERHEAD",
    "MAX_DURATION",
    "Segment",
    "SegmentPlan",
    "plan_segments",
]

DEFAULT_RESUME_OVERHEAD = timedelta(minutes=5)
DEFAULT_MIN_SEGMENT = timedelta(minutes=30)
# Bounds on every duration given: a month is far past any forecast horizon, and it keeps the programme
# (linear in slots x distinct amounts of work) from being handed years by a unit slip.
MAX_DURATION = timedelta(days=31)
MAX_SEGMENTS = 10_000
_US = timedelta(microseconds=1)
_TIE_RELATIVE = 1e-9

Decision = Literal["run_now", "defer"]


@dataclass(frozen=True)
class Segment:
    """One stretch the job runs: ``[start, end)``, of which the first ``overhead_seconds`` resume the job.

    ``expected_intensity`` is the mean over the whole segment (gCO2e/kWh, ``None`` when unknown);
    ``carbon_per_work_kwh`` is this segment's share of the plan's grams per kWh of work (its integral of
    intensity over the job's total work), so the shares add up to the plan's ``expected_intensity``.
    """

    index: int
    start: datetime
    end: datetime
    work_seconds: float
    overhead_seconds: float
    expected_intensity: float | None
    carbon_per_work_kwh: float | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict."""
        return {
            "index": self.index,
            "start": _iso(self.start),
            "end": _iso(self.end),
            "work_seconds": self.work_seconds,
            "overhead_seconds": self.overhead_seconds,
            "expected_gco2_per_kwh": self.expected_intensity,
            "gco2_per_kwh_of_work": self.carbon_per_work_kwh,
        }


@dataclass(frozen=True)
class SegmentPlan:
    """Where and in which segments an interruptible job should run, and what it is expected to save.

    * ``segments`` are in time order and carry ``work_seconds`` of work in total; the job runs on past
      the last one's end if its work is not done by then (the deadline wins over carbon).
    * ``expected_intensity``: grams per kWh of work, overhead included (see the module doc); ``None``
      when no forecast covers a feasible plan (the plan then runs now, in one piece).
    * ``now_intensity``: the same for running the whole job at once from the earliest start in the
      first-listed region (a resumed job pays its overhead there too); ``None`` when not fully covered.
    * ``whole_job_intensity`` / ``whole_job_start`` / ``whole_job_region``: the best single window
      (:func:`greenflow.planning.plan` over the same candidates and limits), in the same units.
    * ``savings_pct`` vs running now, ``savings_vs_whole_pct`` vs the best whole-job window; ``None``
      when either side is unknown or not positive.
    * ``late``: a resumed job that can no longer meet its deadline runs now, to completion, past it.
    """

    decision: Decision
    region: str
    provider: str
    segments: tuple[Segment, ...]
    work_seconds: float
    overhead_seconds: float
    expected_intensity: float | None
    now_intensity: float | None
    whole_job_intensity: float | None
    whole_job_start: datetime | None
    whole_job_region: str | None
    savings_pct: float | None
    savings_vs_whole_pct: float | None
    earliest: datetime
    deadline: datetime
    late: bool
    reason: str

    @property
    def start(self) -> datetime:
        """When the first segment starts."""
        return self.segments[0].start

    @property
    def end(self) -> datetime:
        """When the last segment is planned to end (the job runs on if its work is not done)."""
        return self.segments[-1].end

    def expected_grams(self, work_kwh: float) -> float | None:
        """Expected grams for a job whose work draws ``work_kwh`` (overhead energy is on top, included)."""
        if self.expected_intensity is None:
            return None
        return self.expected_intensity * work_kwh

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (times as ISO 8601 UTC with ``Z``)."""
        return {
            "decision": self.decision,
            "region": self.region,
            "provider": self.provider,
            "segments": [segment.to_dict() for segment in self.segments],
            "work_seconds": self.work_seconds,
            "overhead_seconds": self.overhead_seconds,
            "expected_gco2_per_kwh_of_work": self.expected_intensity,
            "now_gco2_per_kwh": self.now_intensity,
            "whole_job_gco2_per_kwh": self.whole_job_intensity,
            "whole_job_start": None if self.whole_job_start is None else _iso(self.whole_job_start),
            "whole_job_region": self.whole_job_region,
            "savings_pct": self.savings_pct,
            "savings_vs_whole_pct": self.savings_vs_whole_pct,
            "earliest": _iso(self.earliest),
            "deadline": _iso(self.deadline),
            "late": self.late,
            "reason": self.reason,
        }


# -- validation ------------------------------------------------------------------------------------


def _check_span(value: object, name: str, *, zero_ok: bool, example: str) -> timedelta:
    if not isinstance(value, timedelta):
        raise InvalidInput(f"{name}={value!r} is not a duration", fix=f"pass a timedelta, e.g. {example}")
    if value < timedelta(0) or (value == timedelta(0) and not zero_ok):
        raise InvalidInput(
            f"{name}={value} is not {'zero or more' if zero_ok else 'positive'}",
            fix=f"give a {'non-negative' if zero_ok else 'positive'} duration, e.g. {example}",
        )
    if value > MAX_DURATION:
        raise InvalidInput(
            f"{name}={_span(value)} is longer than {MAX_DURATION.days} days",
            fix=f"give at most {MAX_DURATION.days} days (is the unit right?)",
        )
    return value


def _check_max_segments(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SEGMENTS:
        raise InvalidInput(
            f"max_segments={value!r} is not a whole number from 1 to {MAX_SEGMENTS}",
            fix="give e.g. 4, or leave it out for no limit (1 plans the job in one piece)",
        )
    return value


# -- the programme ------------------------------------------------------------------------------------

# A cell is a stretch of one slot inside the window: (start µs, end µs, intensity), in time order.
_Cell = tuple[int, int, float]
# A plan's edges as a linked list, newest first: (time µs, previous) — opens and closes alternate.
_Path = tuple[int, "_Path"] | None


def _cells(candidate: Candidate, lo: int, hi: int) -> list[_Cell]:
    """The known slots of ``candidate`` clipped to [lo, hi) (µs after its origin), in time order."""
    cells: list[_Cell] = []
    for run in candidate._runs:
        # Run boundaries are float seconds made from exact datetimes: rounding gives back the microseconds.
        first = bisect_right(run.times, lo / 1e6) - 1
        last = bisect_left(run.times, hi / 1e6) + 1
        times = [round(t * 1e6) for t in run.times[max(first, 0) : last]]
        values = run.values[max(first, 0) : last]
        for a, b, value in zip(times, times[1:], values, strict=False):
            a, b = max(a, lo), min(b, hi)
            if a < b:
                cells.append((a, b, value))
    return cells


@dataclass(frozen=True)
class _Best:
    """The least-carbon plan of one pass: its integral (intensity x µs) and segment edges."""

    cost: float
    edges: tuple[tuple[int, int], ...]

    @property
    def finish(self) -> int:
        return self.edges[-1][1]


def _better(cost: float, finish: int, best: tuple[float, int, _Path] | None) -> bool:
    """Lower carbon wins; within float noise, the earlier finish."""
    if best is None:
        return True
    tie = _TIE_RELATIVE * max(1.0, abs(cost), abs(best[0]))
    return cost < best[0] - tie or (cost <= best[0] + tie and finish < best[1])


def _forward(
    cells: Sequence[_Cell],
    target: int,
    overhead: int,
    min_len: int,
    limit: int | None,
    bound: float = math.inf,
    floors: _Floors | None = None,
) -> _Best | None:
    """The least-carbon plan whose edges are all on cell boundaries but the last segment's end.

    ``target`` is the sum over segments of (length - overhead) the plan must reach exactly: the work,
    minus one overhead when the first segment does not pay it. States after each cell:
    ``paused[(u, n)]`` and ``running[(u, n, r)]`` map to (integral, path), with ``u`` that sum so far,
    ``n`` the segments opened (always 0 without a ``limit``) and ``r`` the running segment's length
    capped at ``min_len``.

    Branch and bound keeps it fast and exact: a state whose integral plus the least the rest of its work
    could cost (the cheapest slots ahead, filled fractionally) exceeds the best plan known (``bound``, then
    every plan found) cannot lead to a better plan and is dropped.
    """
    floors = _Floors(cells) if floors is None else floors
    least = floors.least  # bound once: called for every state
    paused: dict[tuple[int, int], tuple[float, _Path]] = {(0, 0): (0.0, None)}
    running: dict[tuple[int, int, int], tuple[float, _Path]] = {}
    best: tuple[float, int, _Path] | None = None
    counted = limit is not None
    cap = 0 if limit is None else limit
    # Usable time from each cell on: a state that cannot reach the target in it is dropped.
    ahead = [0] * (len(cells) + 1)
    for index in range(len(cells) - 1, -1, -1):
        ahead[index] = ahead[index + 1] + cells[index][1] - cells[index][0]
    previous_end: int | None = None
    for index, (a, b, value) in enumerate(cells):
        if previous_end is not None and a != previous_end:  # uncovered time: a running segment stops before it
            for (u, n, r), (cost, path) in running.items():
                if r >= min_len and ((u, n) not in paused or cost < paused[u, n][0]):
                    paused[u, n] = (cost, (previous_end, path))
            running = {}
        previous_end = b
        length = b - a
        room = ahead[index + 1]
        ceiling = limit_cost(best, bound)  # a plan found within this slot only tightens it: fine to lag
        next_paused: dict[tuple[int, int], tuple[float, _Path]] = {}
        next_running: dict[tuple[int, int, int], tuple[float, _Path]] = {}
        for key, (cost, path) in paused.items():
            u, n = key
            # Staying paused must leave room (and hope) to finish after this slot.
            if u - overhead + room >= target and cost + least(index + 1, target - u + overhead) <= ceiling:
                held = next_paused.get(key)
                if held is None or cost < held[0]:
                    next_paused[key] = (cost, path)
            if counted and n >= cap:
                continue
            opened = u - overhead
            rest = target - opened
            if 0 < rest < length and rest >= min_len:  # open here and finish inside this slot
                total = cost + value * rest
                if _better(total, a + rest, best):
                    best = (total, a + rest, (a + rest, (a, path)))
            u2 = opened + length
            if u2 > target:
                continue
            r2 = length if length < min_len else min_len
            total = cost + value * length
            if u2 == target:
                if r2 >= min_len and _better(total, b, best):
                    best = (total, b, (b, (a, path)))
                continue
            if u2 + room < target or total + least(index + 1, target - u2) > ceiling:
                continue
            key2 = (u2, n + 1 if counted else 0, r2)
            held2 = next_running.get(key2)
            if held2 is None or total < held2[0]:
                next_running[key2] = (total, (a, path))
        for (u, n, r), (cost, path) in running.items():
            rest = target - u
            if 0 < rest < length and r + rest >= min_len:  # run on into this slot until the work is done
                total = cost + value * rest
                if _better(total, a + rest, best):
                    best = (total, a + rest, (a + rest, path))
            if (  # pause at a, skip this slot
                r >= min_len
                and u - overhead + room >= target
                and cost + least(index + 1, target - u + overhead) <= ceiling
            ):
                pkey = (u, n)
                held = next_paused.get(pkey)
                if held is None or cost < held[0]:
                    next_paused[pkey] = (cost, (a, path))
            u2 = u + length
            if u2 > target:
                continue
            r2 = r + length
            if r2 > min_len:
                r2 = min_len
            total = cost + value * length
            if u2 == target:
                if r2 >= min_len and _better(total, b, best):
                    best = (total, b, (b, path))
                continue
            if u2 + room < target or total + least(index + 1, target - u2) > ceiling:
                continue
            key2 = (u2, n, r2)
            held2 = next_running.get(key2)
            if held2 is None or total < held2[0]:
                next_running[key2] = (total, path)
        paused, running = next_paused, next_running
    if best is None:
        return None
    return _Best(best[0], _edges(best[2]))


def limit_cost(best: tuple[float, int, _Path] | None, bound: float) -> float:
    """The integral a state must not exceed to stay worth exploring (ties kept: float noise)."""
    known = bound if best is None or best[0] > bound else best[0]
    return known + _TIE_RELATIVE * max(1.0, abs(known)) if math.isfinite(known) else math.inf


class _Floors:
    """The least integral of ``need`` µs of run time in the cells from index ``i`` on (fractional
    knapsack on their values): a lower bound on what finishing from there can cost.

    Only valid for non-negative intensities; with any negative value the bound is minus infinity.
    """

    def __init__(self, cells: Sequence[_Cell]) -> None:
        self.negative = any(value < 0 for _, _, value in cells)
        self.tables: list[tuple[list[int], list[float], list[float]]] = []
        ordered: list[tuple[float, int]] = []
        tables: list[tuple[list[int], list[float], list[float]]] = [([0], [0.0], [])]
        for a, b, value in reversed(cells):
            insort(ordered, (value, b - a))
            values = [v for v, _ in ordered]
            widths = [width for _, width in ordered]
            tables.append(([0, *accumulate(widths)], [0.0, *accumulate(map(mul, values, widths))], values))
        tables.reverse()
        self.tables = tables

    def least(self, index: int, need: int) -> float:
        """Least integral of ``need`` µs from cell ``index`` on (``inf`` when there is not enough)."""
        if self.negative:
            return -math.inf
        if need <= 0:
            return 0.0
        lengths, costs, values = self.tables[index]
        k = bisect_left(lengths, need)
        if k >= len(lengths):
            return math.inf
        return costs[k - 1] + values[k - 1] * (need - lengths[k - 1])


def _edges(path: _Path) -> tuple[tuple[int, int], ...]:
    """The (start, end) pairs of a path, in time order."""
    times: list[int] = []
    while path is not None:
        times.append(path[0])
        path = path[1]
    times.reverse()
    return tuple(zip(times[0::2], times[1::2], strict=True))


def _best(cells: Sequence[_Cell], target: int, overhead: int, min_len: int, limit: int | None) -> _Best | None:
    """The least-carbon plan with one edge off the grid: the last end (forwards) or the first start
    (the same programme on the mirrored cells). Ties go to the earlier finish."""
    # One segment first (few states): its carbon bounds the search with more segments.
    bound = math.inf
    floors = _Floors(cells)
    if limit != 1:
        whole = _forward(cells, target, overhead, min_len, 1, floors=floors)
        bound = math.inf if whole is None else whole.cost
    ahead = _forward(cells, target, overhead, min_len, limit, bound, floors)
    if ahead is not None:
        bound = min(bound, ahead.cost)
    mirrored = [(-b, -a, value) for a, b, value in reversed(cells)]
    back = _forward(mirrored, target, overhead, min_len, limit, bound)
    behind = None if back is None else _Best(back.cost, tuple((-e, -s) for s, e in reversed(back.edges)))
    if ahead is None or behind is None:
        return ahead or behind
    tie = _TIE_RELATIVE * max(1.0, abs(ahead.cost), abs(behind.cost))
    if behind.cost < ahead.cost - tie or (behind.cost <= ahead.cost + tie and behind.finish < ahead.finish):
        return behind
    return ahead


def _integral(cells: Sequence[_Cell], start: int, end: int) -> float | None:
    """Integral of intensity x µs over [start, end), ``None`` unless known cells cover all of it."""
    total, covered = 0.0, 0
    index = max(bisect_right([cell[0] for cell in cells], start) - 1, 0)
    for a, b, value in cells[index:]:
        if a >= end:
            break
        lo, hi = max(a, start), min(b, end)
        if lo < hi:
            total += value * (hi - lo)
            covered += hi - lo
    return total if covered == end - start else None


# -- the planner ---------------------------------------------------------------------------------------


def plan_segments(
    candidates: Sequence[Candidate] | Candidate | Forecast,
    *,
    duration: timedelta,
    earliest: datetime | None = None,
    deadline: datetime | None = None,
    max_delay: timedelta | None = None,
    resume_overhead: timedelta = DEFAULT_RESUME_OVERHEAD,
    min_segment: timedelta = DEFAULT_MIN_SEGMENT,
    max_segments: int | None = None,
    resumed: bool = False,
    now: datetime | None = None,
) -> SegmentPlan:
    """Plan the least-carbon segments carrying ``duration`` of work before the deadline (see the module doc).

    ``candidates`` are regions as for :func:`greenflow.planning.plan` (a bare ``Forecast`` is one
    candidate); every segment of a plan runs in one region (moving a checkpoint between regions is not
    modelled), the lowest-carbon region wins and ties go to the first-listed. Raises
    :class:`~greenflow.errors.InvalidInput` for a duration that is not positive (``resume_overhead``: not
    zero or more) or longer than 31 days, a ``min_segment`` not longer than ``resume_overhead`` (such a
    segment would carry no work), a ``max_segments`` that is not a whole number from 1, both or neither
    of ``deadline``/``max_delay``, naive datetimes, or, for a job that is not ``resumed``, a deadline
    before ``earliest start + duration``.
    """
    if isinstance(candidates, Forecast):
        candidates = [Candidate(candidates.region, candidates)]
    candidates = _check_candidates(candidates)  # type: ignore[arg-type]
    work = _check_span(duration, "duration", zero_ok=False, example="timedelta(hours=8)")
    overhead = _check_span(resume_overhead, "resume_overhead", zero_ok=True, example="timedelta(minutes=5)")
    shortest = _check_span(min_segment, "min_segment", zero_ok=False, example="timedelta(minutes=30)")
    limit = _check_max_segments(max_segments)
    if shortest <= overhead:
        raise InvalidInput(
            f"min_segment={_span(shortest)} is not longer than resume_overhead={_span(overhead)}: "
            "such a segment would carry no work",
            fix=f"give a min_segment longer than {_span(overhead)}",
        )
    if not isinstance(resumed, bool):
        raise InvalidInput(f"resumed={resumed!r} is not true or false", fix="pass resumed=True or False")
    now = utcnow() if now is None else require_aware(now, "now")
    requested = now if earliest is None else require_aware(earliest, "earliest")
    first = max(requested, now)
    first_run = work + overhead if resumed else work  # running straight from now
    if (deadline is None) == (max_delay is None):
        raise InvalidInput(
            "give exactly one of deadline and max_delay"
            + (" (both were given)" if deadline is not None else " (neither was given)"),
            fix="a deadline is the latest finish; max_delay bounds how late the whole job may start",
        )
    if deadline is not None:
        deadline = require_aware(deadline, "deadline")
    else:
        assert max_delay is not None
        if not isinstance(max_delay, timedelta) or max_delay < timedelta(0):
            raise InvalidInput(f"max_delay={max_delay!r} is not a duration of zero or more", fix="give e.g. 12h")
        deadline = requested + max_delay + first_run
    if first + first_run > deadline and not resumed:
        raise InvalidInput(
            f"deadline={_iso(deadline)} is before earliest start {_iso(first)} + duration "
            f"{_span(work)} = {_iso(first + work)}",
            fix=f"move the deadline to {_iso(first + work)} or later, or shorten the duration",
        )

    home = candidates[0]
    late = first + first_run > deadline
    single = late or work < shortest  # a job shorter than min_segment runs in one piece
    limit = 1 if single else limit
    min_len = 0 if single else shortest // _US
    work_us, overhead_us = work // _US, overhead // _US
    target = work_us if resumed else work_us - overhead_us

    picks: list[tuple[Candidate, list[_Cell], _Best] | None] = []
    for candidate in candidates:
        if candidate._origin is None or late:
            picks.append(None)
            continue
        origin = candidate._origin
        cells = _cells(candidate, (first - origin) // _US, (deadline - origin) // _US)
        found = _best(cells, target, overhead_us, min_len, limit)
        picks.append(None if found is None else (candidate, cells, found))

    # Run now: the whole job straight from the earliest start at home, overhead included when resumed.
    now_intensity: float | None = None
    if home._origin is not None:
        start_us = (first - home._origin) // _US
        end_us = start_us + first_run // _US
        home_cells = _cells(home, start_us, end_us)
        integral = _integral(home_cells, start_us, end_us)
        now_intensity = None if integral is None else integral / work_us

    whole: Plan | None = None
    if not late:
        whole = plan(candidates, duration=first_run, deadline=deadline, now=first)
        if whole.expected_intensity is None:
            whole = None  # nothing known to compare with
    whole_intensity: float | None = None
    if whole is not None and whole.expected_intensity is not None:
        whole_intensity = whole.expected_intensity * (first_run / work)

    chosen = None
    for pick in picks:
        if pick is not None and (chosen is None or pick[2].cost < chosen[2].cost - _TIE_RELATIVE * abs(chosen[2].cost)):
            chosen = pick
    common: dict[str, Any] = {
        "work_seconds": work.total_seconds(),
        "now_intensity": now_intensity,
        "whole_job_intensity": whole_intensity,
        "whole_job_start": None if whole is None else whole.start,
        "whole_job_region": None if whole is None else whole.region,
        "earliest": first,
        "deadline": deadline,
        "late": late,
    }
    if chosen is None:
        # Nothing known to plan on (or a resumed job already late): run now, in one piece, to completion.
        lone = Segment(
            0,
            first,
            first + first_run,
            work.total_seconds(),
            overhead.total_seconds() if resumed else 0.0,
            None if now_intensity is None else now_intensity * work / first_run,
            now_intensity,
        )
        if late:
            why = (
                f"Running now in {home.region}, to completion: the remaining {_span(work)} of work "
                f"(+{_span(overhead)} to resume) cannot finish by the deadline {_iso(deadline)}, so the job "
                f"runs past it, in one piece."
            )
        else:
            why = (
                f"Running now in {home.region}, in one piece: no forecast covers a plan of {_span(work)} of "
                f"work with known values between {_iso(first)} and {_iso(deadline)}, and uncovered time is "
                "not assumed green."
            )
        return SegmentPlan(
            decision="run_now",
            region=home.region,
            provider=home.forecast.provider,
            segments=(lone,),
            overhead_seconds=lone.overhead_seconds,
            expected_intensity=now_intensity,
            savings_pct=_saving(now_intensity, now_intensity),
            savings_vs_whole_pct=_saving(whole_intensity, now_intensity),
            reason=why,
            **common,
        )

    candidate, cells, found = chosen
    assert candidate._origin is not None
    origin = candidate._origin
    segments: list[Segment] = []
    for index, (start_us, end_us) in enumerate(found.edges):
        integral = _integral(cells, start_us, end_us)
        paid = overhead_us if (index > 0 or resumed) else 0
        segments.append(
            Segment(
                index=index,
                start=origin + start_us * _US,
                end=origin + end_us * _US,
                work_seconds=(end_us - start_us - paid) / 1e6,
                overhead_seconds=paid / 1e6,
                expected_intensity=None if integral is None else integral / (end_us - start_us),
                carbon_per_work_kwh=None if integral is None else integral / work_us,
            )
        )
    expected = found.cost / work_us
    saving, versus_whole = _saving(now_intensity, expected), _saving(whole_intensity, expected)
    spent = sum(segment.overhead_seconds for segment in segments)
    count = len(segments)
    pieces = "in one piece" if count == 1 else f"in {count} segments"
    text = (
        f"Running {pieces} in {candidate.region} from {_iso(segments[0].start)} "
        f"({expected:.1f} gCO2e per kWh of work"
        + (f", {_span(timedelta(seconds=spent))} of it resuming" if spent else "")
        + ")"
    )
    if now_intensity is not None and saving is not None:
        text += f", vs {now_intensity:.1f} running now in {home.region} ({saving:.1f} % lower)"
    if whole_intensity is not None and versus_whole is not None and whole is not None:
        text += f" and {whole_intensity:.1f} for the best whole-job window ({versus_whole:.1f} % lower)"
    text += f"; finishing by {_iso(segments[-1].end)}, deadline {_iso(deadline)}."
    if now_intensity is None:
        text += f" The intensity of running now in {home.region} is unknown, so no saving is stated."
    text += " If its work is not done by the last segment's end, the job runs on to completion."
    return SegmentPlan(
        decision="run_now" if segments[0].start == first else "defer",
        region=candidate.region,
        provider=candidate.forecast.provider,
        segments=tuple(segments),
        overhead_seconds=spent,
        expected_intensity=expected,
        savings_pct=saving,
        savings_vs_whole_pct=versus_whole,
        reason=text,
        **common,
    )


def _saving(baseline: float | None, expected: float | None) -> float | None:
    if baseline is None or expected is None or baseline <= 0 or not math.isfinite(baseline):
        return None
    return 100.0 * (baseline - expected) / baseline
