"""How much carbon greenflow's planner saves, replayed on real grid data and scored on what happened.

Run ``.venv/bin/python benchmarks/savings.py [--quick] [--ablation]``: prints markdown tables and writes
them to ``benchmarks/results/savings.md``. ``--quick`` replays eight weeks of Electricity Maps submissions
(all of GB) in well under a minute; the full run replays everything in a few minutes on two cores.
``--ablation`` adds the correction's variants (so its sensitivity can be seen, not chosen after the fact).
``--zones GB`` replays only the named zones (GB: the published forecasts) into ``savings-subset.md``.
``--spatial`` replays only "where and when" (the spatial + temporal policies over the four Electricity Maps
zones, see :func:`replay_spatial`) and writes that section into the file, keeping the rest; a run without
it keeps an earlier spatial section. ``--interruptible`` replays only interruptible jobs (4/8/24 h with
12/24/48 h of slack, the segment planner ``greenflow.segments.plan_segments`` against the whole-job planner,
run-now and the interruptible oracle, see :func:`replay_interruptible`) into
``benchmarks/results/savings-interruptible.md``; it takes ``--quick`` and ``--zones`` too.

Data (real, in ``../shared/data`` or the copies shipped in ``greenflow/data``):

* Electricity Maps hourly life-cycle intensity, 2021-2023, four zones (BR, ES, NO, US-CAL-CISO).
* Great Britain (NESO) national half-hourly actuals and 32 published 48-hour forecast snapshots,
  March-April 2023.

Jobs are submitted at every hour of the period with every combination of duration (1 h, 4 h, 8 h) and
slack (4 h, 12 h, 24 h): a job submitted at ``t0`` must finish by ``t0 + duration + slack``. A job is
scored only where the actual intensity is known over its whole feasible range (so the oracle is
defined), and for GB only where a published forecast at most 14 hours old exists at submission (the
other GB forecasts are scored on that same set of jobs). Emissions are always scored on *actuals* (a
job draws constant power, so its emissions are proportional to the actual intensity summed over its
run), and every figure is a reduction of the total over all jobs against running every job at once.

Policies (each decides only with what was known at the time):

* ``run-now``: start at submission (the baseline).
* ``threshold-wait``: at every slot start from submission, start if the latest measured intensity (the
  slot that just ended) is below the 30th percentile of the previous 7 days of actuals; else start at the
  latest start.
* ``plan-once``: greenflow's planner, run once at submission with the forecast available then.
* ``greenflow re-plan``: the planner re-run whenever the job, while waiting, is handed a forecast that
  differs over its remaining window (every hour for persistence, at each new snapshot for the published
  GB forecast; a perfect forecast never changes), keeping the fresh plan or the held one by the product's
  re-plan rule (``greenflow.replanning.takes_fresh`` under ``RULE``), the job starting when the plan it
  holds says "now". These columns plan with no minimum saving (the planner's reach); the re-plan rules
  section below replays the product's default one.
* ``greenflow re-plan + correction``: the same on a forecast first corrected with forecasts and actuals
  known before the decision by greenflow's own correction, the code ``forecast_correction=True`` runs
  (``greenflow.intensity.correction``, see :class:`Corrected`); the correction changes with every new
  actual, so these jobs re-plan at every tick (hourly; half-hourly in GB).
* ``oracle``: the best start with perfect knowledge of the actuals.

Re-plan rules (GB, and every zone with ``--quick``): at the product's default ``min_savings`` (5 %; another
with ``--rules-min-savings``) plan-once and each rule of ``greenflow.replanning.RULES`` are replayed without
and with the correction, the waiting jobs re-planning at every tick and keeping the held or the fresh plan by
``greenflow.replanning.takes_fresh``, the function behind ``preferred`` that every entry point calls. The
report gives each a 95 % interval from resampling whole submission days (:func:`bootstrap`), the paired
differences between the product's rule and the others, and the table of the defaults (the product's rule,
``min_savings`` and ``forecast_correction="auto"``) for the README.

Every planner decision is ``greenflow.planning.plan`` on a ``Candidate`` built from the forecast of that
tick. Forecasts: ``perfect`` (the actuals: a check of the planner, plan-once and greenflow must reach 100 %
of the oracle), ``persistence`` (the same slot one day earlier; two days earlier beyond 24 h ahead), and
for GB the ``published`` forecast (the latest snapshot issued before the decision, as NESO published it;
a snapshot becomes usable at the next half-hour tick after its ``issued_at``).
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from greenflow.clock import parse_time  # noqa: E402 - needs the repo on sys.path when run as a script
from greenflow.intensity.correction import BiasMode, ErrorRecord, lookback  # noqa: E402
from greenflow.intensity.forecast import Forecast, ForecastPoint  # noqa: E402
from greenflow.options import DEFAULT_MIN_SAVINGS  # noqa: E402
from greenflow.planning import Candidate, plan  # noqa: E402
from greenflow.replanning import RULE, RULES, Rule, WindowMean, takes_fresh  # noqa: E402
from greenflow.segments import SegmentPlan, plan_segments  # noqa: E402

EM_ZONES = ("BR", "ES", "NO", "US-CAL-CISO")
DURATIONS_H = (1, 4, 8)
SLACKS_H = (4, 12, 24)
HORIZON_H = 48  # forecast length handed to the planner (providers publish 24-72 h)
MAX_SNAPSHOT_AGE = timedelta(hours=14)
THRESHOLD_PERCENTILE = 30
THRESHOLD_HISTORY_DAYS = 7


# -- data -----------------------------------------------------------------------------------------


@dataclass
class Grid:
    """One zone's actual intensity on a regular slot grid, plus published forecasts where there are."""

    zone: str
    origin: datetime
    step: int  # seconds per slot
    actual: list[float | None]
    # (first tick at which the snapshot is usable, issued_at, slot index -> forecast value)
    snapshots: list[tuple[int, datetime, dict[int, float]]] = field(default_factory=list)
    _moments: dict[int, datetime] = field(default_factory=dict, repr=False)

    @property
    def per_hour(self) -> int:
        return 3600 // self.step

    @property
    def per_day(self) -> int:
        return 24 * self.per_hour

    def moment(self, slot: int) -> datetime:
        if slot not in self._moments:
            self._moments[slot] = self.origin + timedelta(seconds=slot * self.step)
        return self._moments[slot]

    def slot(self, moment: datetime) -> int:
        return round((moment - self.origin).total_seconds() / self.step)


def data_dir(given: str | None) -> Path:
    """``--data``, else ``../shared/data`` beside the repo, else the copies shipped in the package."""
    for candidate in (given, os.environ.get("GREENFLOW_BENCH_DATA"), REPO.parent / "shared" / "data"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return REPO / "greenflow" / "data"


def load_em(root: Path, zone: str) -> Grid:
    """An Electricity Maps hourly trace (life-cycle column)."""
    with (root / "electricitymaps" / f"{zone}_2021-2023_hourly.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    origin = parse_time(rows[0]["timestamp"])
    actual: list[float | None] = []
    for index, row in enumerate(rows):
        if parse_time(row["timestamp"]) != origin + timedelta(hours=index):
            raise SystemExit(f"{zone}: hour {index} is missing or out of order ({row['timestamp']})")
        value = row["gco2_per_kwh_lifecycle"].strip()
        actual.append(float(value) if value else None)
    return Grid(zone, origin, 3600, actual)


def load_gb(root: Path) -> Grid:
    """GB national actuals and the published forecast snapshots."""
    with (root / "gb" / "actuals.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    origin = parse_time(rows[0]["slot_start"])
    grid = Grid("GB", origin, 1800, [])
    for row in rows:
        index = grid.slot(parse_time(row["slot_start"]))
        grid.actual.extend([None] * (index + 1 - len(grid.actual)))
        value = row["actual_gco2_per_kwh"].strip()
        grid.actual[index] = float(value) if value else None
    by_issue: dict[datetime, dict[int, float]] = {}
    with (root / "gb" / "forecasts.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            value = row["forecast_gco2_per_kwh"].strip()
            if value:
                issued = parse_time(row["issued_at"])
                by_issue.setdefault(issued, {})[grid.slot(parse_time(row["slot_start"]))] = float(value)
    for issued, values in sorted(by_issue.items()):
        usable = math.ceil((issued - origin).total_seconds() / grid.step)  # the next half-hour tick
        grid.snapshots.append((usable, issued, values))
    return grid


# -- forecasts ------------------------------------------------------------------------------------


class Source:
    """What a policy can know at tick ``t``: forecast values for slots ``t .. t + horizon - 1``."""

    name = "?"
    repeats = True  # the same slot keeps the same value from tick to tick (False once corrected)

    def __init__(self, grid: Grid) -> None:
        self.grid = grid
        self.horizon = HORIZON_H * grid.per_hour

    def values(self, t: int) -> list[float | None]:
        raise NotImplementedError

    def issued_value(self, slot: int) -> float | None:
        """The value this source forecast for ``slot`` as last issued before that slot began (what a
        ledger of stored forecasts would hold), for error statistics."""
        return self.values(slot)[0]


class Perfect(Source):
    """The actuals themselves."""

    name = "perfect"

    def values(self, t: int) -> list[float | None]:
        actual = self.grid.actual
        return [actual[h] if h < len(actual) else None for h in range(t, t + self.horizon)]


class Persistence(Source):
    """Each slot as it was one day earlier (two days earlier beyond 24 hours ahead)."""

    name = "persistence"

    def values(self, t: int) -> list[float | None]:
        actual, day = self.grid.actual, self.grid.per_day
        out: list[float | None] = []
        for h in range(t, t + self.horizon):
            back = h - day * ((h - t) // day + 1)  # the latest same slot of day known at t
            out.append(actual[back] if 0 <= back < len(actual) else None)
        return out

    def issued_value(self, slot: int) -> float | None:
        back = slot - self.grid.per_day
        return self.grid.actual[back] if back >= 0 else None


class Published(Source):
    """The latest GB snapshot usable at the tick."""

    name = "published"

    def __init__(self, grid: Grid) -> None:
        super().__init__(grid)
        self.ticks = [usable for usable, _, _ in grid.snapshots]

    def snapshot_index(self, t: int) -> int | None:
        from bisect import bisect_right

        index = bisect_right(self.ticks, t) - 1
        return index if index >= 0 else None

    def age(self, t: int) -> timedelta | None:
        index = self.snapshot_index(t)
        return None if index is None else self.grid.moment(t) - self.grid.snapshots[index][1]

    def values(self, t: int) -> list[float | None]:
        index = self.snapshot_index(t)
        if index is None:
            return [None] * self.horizon
        snapshot = self.grid.snapshots[index][2]
        return [snapshot.get(h) for h in range(t, t + self.horizon)]


class Corrected(Source):
    """A forecast corrected by greenflow's own correction (``greenflow.intensity.correction``).

    The same code a task runs with ``forecast_correction=True``: at each tick the record is handed the
    slots that ended since the last tick, with the value the base forecast had issued for each before it
    began and its actual (``error = actual - issued``), and the correction known at the tick is applied
    to the base forecast's values. See :class:`~greenflow.intensity.correction.ErrorRecord` for the math
    (a per-slot-of-day bias from the last ``days`` days, plus the latest residual carried forward with
    least-squares slopes per lead).

    Nothing is fitted to the outcome being scored: ``days`` is fixed at 7 and the slopes come from past
    errors only (each residual measured as of its own slot, so no later data leaks in).
    """

    def __init__(self, base: Source, days: int = 7, bias: BiasMode = "always") -> None:
        super().__init__(base.grid)
        self.base = base
        self.repeats = False
        self.name = f"{base.name}+correction"
        step = timedelta(seconds=self.grid.step)
        self.record = ErrorRecord(step, max_lag=self.horizon + 1, days=days, bias=bias)
        self._fed = 0  # slots [0, _fed) have been handed to the record

    def values(self, t: int) -> list[float | None]:
        raw = self.base.values(t)
        grid, actual = self.grid, self.grid.actual
        for h in range(self._fed, t):  # the slots that ended by tick t, oldest first
            self.record.add(grid.moment(h), self.base.issued_value(h), actual[h])
        self._fed = max(self._fed, t)
        correction = self.record.correction(grid.moment(t))
        if correction is None:
            return raw
        return [
            None if value is None else correction.adjust(grid.moment(t + lead), value) for lead, value in enumerate(raw)
        ]


# -- policies -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """A job in slots: submitted at ``t0``, ``length`` slots long, latest start ``latest``."""

    ident: int
    t0: int
    length: int
    latest: int
    combo: tuple[int, int]  # (duration h, slack h)


def make_jobs(grid: Grid, first: int, last: int, keep: Callable[[int], bool] | None = None) -> list[Job]:
    """Jobs submitted on every hour in [first, last] whose whole feasible range has known actuals."""
    jobs: list[Job] = []
    actual, hour = grid.actual, grid.per_hour
    for t0 in range(first, last + 1, hour):
        if keep is not None and not keep(t0):
            continue
        for duration in DURATIONS_H:
            for slack in SLACKS_H:
                length, latest = duration * hour, t0 + slack * hour
                end = latest + length
                if end > len(actual) or any(v is None for v in actual[t0:end]):
                    continue
                jobs.append(Job(len(jobs), t0, length, latest, (duration, slack)))
    return jobs


class Planner:
    """greenflow's planner over one source: one Candidate per tick, as a waiting trigger would hold."""

    def __init__(self, source: Source, min_savings: float = 0.0) -> None:
        self.source = source
        self.grid = source.grid
        self.min_savings = min_savings  # the planner's min_savings_pct (the product's default: DEFAULT_MIN_SAVINGS)
        self._tick: int | None = None
        self._values: list[float | None] = []
        self._candidate: Candidate | None = None
        self._points: dict[tuple[int, float], ForecastPoint] = {}
        self.calls = 0

    def values(self, t: int) -> list[float | None]:
        """The source's forecast values at tick ``t`` (computed once per tick)."""
        if self._tick != t:
            self._tick, self._values, self._candidate = t, self.source.values(t), None
        return self._values

    def candidate(self, t: int) -> Candidate:
        values = self.values(t)
        if self._candidate is None:
            grid, cache = self.grid, self._points
            points = []
            for slot, value in enumerate(values, start=t):
                if value is not None:
                    # Uncorrected forecasts repeat (slot, value) from tick to tick: reuse those points.
                    point = cache.get((slot, value)) if self.source.repeats else None
                    if point is None:
                        point = ForecastPoint(grid.moment(slot), grid.moment(slot + 1), value)
                        if self.source.repeats:
                            cache[slot, value] = point
                    points.append(point)
            forecast = Forecast(grid.zone, self.source.name, "average", grid.moment(t), tuple(points))
            self._candidate = Candidate(grid.zone, forecast)
        return self._candidate

    def starts(self, t: int, keys: set[tuple[int, int]]) -> dict[tuple[int, int], int]:
        """Planned starts at tick ``t`` for several (length, latest start) limits.

        Limits that share a length share answers: when the plan for a later latest start picks a start
        no later than this one's latest start, that is this one's plan too (the earliest best start of a
        range is the earliest best start of any sub-range holding it), so only the others call the
        planner. The replays check this shortcut: with perfect forecasts they must match the oracle.
        """
        answers: dict[tuple[int, int], int] = {}
        for length in {length for length, _ in keys}:
            previous: int | None = None
            for latest in sorted((latest for size, latest in keys if size == length), reverse=True):
                if previous is None or previous > latest:
                    previous = self.start(t, length, latest)
                answers[length, latest] = previous
        return answers

    def start(self, t: int, length: int, latest: int) -> int:
        """The planned start slot for a job deciding at tick ``t`` (``greenflow.planning.plan``)."""
        grid = self.grid
        result = plan(
            [self.candidate(t)],
            duration=timedelta(seconds=length * grid.step),
            deadline=grid.moment(latest + length),
            now=grid.moment(t),
            min_savings_pct=self.min_savings,
        )
        self.calls += 1
        return grid.slot(result.start)

    def window_mean(self, t: int, length: int) -> WindowMean:
        """The tick's forecast mean over a ``length``-slot window starting at a moment (``None`` where a value
        is missing): what ``preferred`` reads from a fresh decision's forecast."""
        values, grid = self.values(t), self.grid

        def mean(start: datetime) -> float | None:
            first = grid.slot(start) - t
            window = values[first : first + length] if first >= 0 else []
            if len(window) < length or any(v is None for v in window):
                return None
            return sum(v for v in window if v is not None) / length

        return mean


def replay_planner(
    jobs: Sequence[Job],
    planner: Planner,
    rules: Sequence[Rule] = (RULE,),
    *,
    every_tick: bool = False,
) -> dict[str, list[int]]:
    """Starts chosen by planning once at submission (``once``) and by re-planning under each rule.

    Time runs tick by tick (one slot). A waiting job re-plans (as a product entry point does at a forecast
    refresh) and keeps the fresh plan or the held one by ``greenflow.replanning.takes_fresh``, the function
    behind ``preferred`` that every entry point calls, given the same inputs: the held start, the fresh
    start, the latest start and the fresh forecast's window means. It starts when the plan it holds says
    "now". Without ``every_tick`` a job re-plans only when the forecast it is handed differs from the one it
    last planned with over its remaining window (on an unchanged forecast and no minimum saving the plan
    could not move: its pick is still the earliest best start of what remains); with a minimum saving the
    run-now baseline moves with the clock, so the replay re-plans at every tick. Jobs deciding at the same
    tick share the planner's answers (:meth:`Planner.starts`).
    """
    modes = ["once", *rules]
    starts = {mode: [-1] * len(jobs) for mode in modes}
    by_tick: dict[int, list[Job]] = {}
    for job in jobs:
        by_tick.setdefault(job.t0, []).append(job)
    if not by_tick:
        return starts
    every_tick = every_tick or planner.min_savings > 0
    # mode -> [(job, planned start, tick planned at, forecast values then over the job's range)]
    waiting: dict[str, list[tuple[Job, int, int, list[float | None]]]] = {mode: [] for mode in modes}
    t, end = min(by_tick), max(job.latest for job in jobs)
    grid = planner.grid
    while t <= end:
        arrivals = by_tick.get(t, ())
        entries = {mode: [*queue, *((job, -1, t, []) for job in arrivals)] for mode, queue in waiting.items()}
        due: dict[str, list[bool]] = {}
        for mode, queue in entries.items():
            due[mode] = [
                planned < 0
                or (
                    mode != "once"
                    and (every_tick or planner.values(t)[: job.latest + job.length - t] != seen[t - planned_at :])
                )
                for job, planned, planned_at, seen in queue
            ]
        keys = {
            (job.length, job.latest)
            for mode, queue in entries.items()
            for (job, *_), d in zip(queue, due[mode], strict=True)
            if d
        }
        answers = planner.starts(t, keys)
        for mode, queue in entries.items():
            still: list[tuple[Job, int, int, list[float | None]]] = []
            for (job, planned, planned_at, seen), replan in zip(queue, due[mode], strict=True):
                if replan:
                    fresh = answers[job.length, job.latest]
                    if planned < 0 or takes_fresh(
                        grid.moment(planned),
                        grid.moment(fresh),
                        grid.moment(job.latest),
                        planner.window_mean(t, job.length),
                        rule=mode,  # type: ignore[arg-type]  # every mode but "once" is a Rule
                    ):
                        planned = fresh
                    planned_at, seen = t, planner.values(t)[: job.latest + job.length - t]
                if planned <= t:
                    starts[mode][job.ident] = t
                else:
                    still.append((job, planned, planned_at, seen))
            waiting[mode] = still
        t += 1
    return starts


def replay_threshold(grid: Grid, jobs: Sequence[Job]) -> list[int]:
    """Start at the first tick whose latest measured intensity is below the 30th percentile of the
    past 7 days' actuals, else at the latest start."""
    actual = grid.actual
    window = THRESHOLD_HISTORY_DAYS * grid.per_day
    cache: dict[int, float | None] = {}

    def limit(t: int) -> float | None:
        if t not in cache:
            history = sorted(v for v in actual[max(0, t - window) : t] if v is not None)
            cache[t] = history[int(len(history) * THRESHOLD_PERCENTILE / 100)] if len(history) >= grid.per_day else None
        return cache[t]

    starts = []
    for job in jobs:
        chosen = job.latest
        for t in range(job.t0, job.latest):
            # The latest finished slot: the same "known by now" the planner's correction gets.
            bar, now = limit(t), actual[t - 1]
            if bar is not None and now is not None and now < bar:
                chosen = t
                break
        starts.append(chosen)
    return starts


def replay_oracle(grid: Grid, jobs: Sequence[Job]) -> list[int]:
    """The earliest start with the lowest actual emissions."""
    prefix = _prefix(grid)
    starts = []
    for job in jobs:
        best, chosen = math.inf, job.t0
        for s in range(job.t0, job.latest + 1):
            total = prefix[s + job.length] - prefix[s]
            if total < best - 1e-9:
                best, chosen = total, s
        starts.append(chosen)
    return starts


def _prefix(grid: Grid) -> list[float]:
    prefix = [0.0]
    for value in grid.actual:
        prefix.append(prefix[-1] + (value or 0.0))  # jobs are only made where every value is known
    return prefix


def emissions(grid: Grid, jobs: Sequence[Job], starts: Sequence[int]) -> list[float]:
    """Actual intensity summed over each job's run (proportional to its emissions)."""
    prefix = _prefix(grid)
    out = []
    for job, start in zip(jobs, starts, strict=True):
        if not job.t0 <= start <= job.latest:
            raise AssertionError(f"job {job} started at {start}, outside its feasible range")
        out.append(prefix[start + job.length] - prefix[start])
    return out


# -- one replay task --------------------------------------------------------------------------------

POLICIES = ("run-now", "threshold-wait", "plan-once", "greenflow re-plan", "greenflow re-plan + correction", "oracle")
ABLATION = tuple(
    f"correction: bias {bias}, {days} days{', plan-once' if once else ''}"
    for bias in ("always", "significant", "never")
    for days in (7, 28)
    for once in (False, True)
)


RULE_MODES = ("once", *RULES)
RULES_MIN_SAVINGS = DEFAULT_MIN_SAVINGS  # --rules-min-savings (set before the worker processes fork)
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 16


def rule_policy(mode: str) -> str:
    """The report's name for plan-once (``once``) or a re-plan rule, at the product's minimum saving."""
    name = "plan-once" if mode == "once" else f"re-plan {mode}"
    return f"{name} (min {RULES_MIN_SAVINGS:g} %)"


def rule_policies() -> tuple[str, ...]:
    """Plan-once and every rule, each without and with the correction (names at ``RULES_MIN_SAVINGS``)."""
    return tuple(rule_policy(mode) + suffix for mode in RULE_MODES for suffix in ("", " + correction"))


def defaults_policy(zone: str, forecast: str) -> str:
    """What a task gets with every option at its default: the product's rule and minimum saving, corrected
    where the provider publishes its past forecasts (``forecast_correction="auto"``): the published GB
    forecasts (a trace of NESO's snapshots); a persistence forecast has no provider publishing it."""
    corrected = zone == "GB" and forecast == "published"
    return rule_policy(RULE) + (" + correction" if corrected else "")


@dataclass
class Outcome:
    """Emission sums per policy and (duration, slack), for one zone and forecast."""

    zone: str
    forecast: str
    jobs: int = 0
    sums: dict[str, dict[tuple[int, int], float]] = field(default_factory=dict)
    calls: int = 0
    seconds: float = 0.0
    # GB published: (decision times compared, values compared, values that differ, largest difference)
    product: tuple[int, int, int, float] | None = None
    # policy -> submission day (slot // slots per day) -> emission sum: what the bootstrap resamples
    by_day: dict[str, dict[int, float]] = field(default_factory=dict)

    def total(self, policy: str) -> float:
        return sum(self.sums[policy].values())

    def reduction(self, policy: str, combo: tuple[int, int] | None = None) -> float | None:
        """Reduction of emissions vs run-now, in percent (None when the policy was not run)."""
        if policy not in self.sums:
            return None
        if combo is None:
            return 100.0 * (1 - self.total(policy) / self.total("run-now"))
        return 100.0 * (1 - self.sums[policy][combo] / self.sums["run-now"][combo])

    def share(self, policy: str, combo: tuple[int, int] | None = None) -> float | None:
        """The policy's reduction as a percentage of the oracle's."""
        mine, best = self.reduction(policy, combo), self.reduction("oracle", combo)
        return None if mine is None or not best else 100.0 * mine / best


def bootstrap(
    outcome: Outcome, policies: Sequence[str], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> dict[str, list[tuple[float, float]]]:
    """Per policy, (reduction %, share of the oracle's reduction %) for each resample of whole days.

    Jobs submitted on the same day share its weather, so days, not jobs, are the independent draws: each
    resample picks as many submission days as there are, with replacement, and sums every policy over the
    same picks (so differences between policies are paired).
    """
    import random

    days = sorted(outcome.by_day["run-now"])
    rng = random.Random(seed)
    base, best = outcome.by_day["run-now"], outcome.by_day["oracle"]
    out: dict[str, list[tuple[float, float]]] = {policy: [] for policy in policies}
    for _ in range(resamples):
        picks = [days[rng.randrange(len(days))] for _ in days]
        total = sum(base[d] for d in picks)
        oracle = 1 - sum(best[d] for d in picks) / total
        for policy in policies:
            mine = 1 - sum(outcome.by_day[policy][d] for d in picks) / total
            out[policy].append((100.0 * mine, 100.0 * mine / oracle if oracle else math.nan))
    return out


def interval(values: Sequence[float]) -> tuple[float, float]:
    """The central 95 % of ``values`` (2.5th and 97.5th percentiles)."""
    ordered = sorted(v for v in values if not math.isnan(v))
    if not ordered:
        return math.nan, math.nan
    pick = lambda q: ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]  # noqa: E731
    return pick(0.025), pick(0.975)


def submission_range(grid: Grid, quick: bool) -> tuple[int, int]:
    """First and last submission tick: after a week of history (threshold-wait and the correction
    learn from the past week), to the end of the data; ``--quick`` takes eight weeks of 2022."""
    if grid.zone == "GB":
        return grid.slot(parse_time("2023-03-15T00:00Z")), len(grid.actual) - 1
    if quick:
        return grid.slot(parse_time("2022-01-03T00:00Z")), grid.slot(parse_time("2022-02-28T00:00Z"))
    return 7 * grid.per_day, len(grid.actual) - 1


def replay(task: tuple[str, str, str, bool, bool]) -> Outcome:
    """Replay every policy for one zone and one forecast kind."""
    zone, kind, root, quick, ablation = task
    began = time.perf_counter()
    grid = load_gb(Path(root)) if zone == "GB" else load_em(Path(root), zone)
    published = Published(grid) if zone == "GB" else None
    keep = None
    if published is not None:  # GB: only where a published forecast at most 14 h old exists

        def keep(t0: int) -> bool:
            age = published.age(t0)
            return age is not None and age <= MAX_SNAPSHOT_AGE

    first, last = submission_range(grid, quick)
    jobs = make_jobs(grid, first, last, keep)
    source: Source = {"perfect": Perfect, "persistence": Persistence}[kind](grid) if kind != "published" else published  # type: ignore[assignment]
    starts: dict[str, list[int]] = {
        "run-now": [job.t0 for job in jobs],
        "threshold-wait": replay_threshold(grid, jobs),
        "oracle": replay_oracle(grid, jobs),
    }
    outcome = Outcome(zone, kind, len(jobs))
    planner = Planner(source)
    raw = replay_planner(jobs, planner)
    starts["plan-once"], starts["greenflow re-plan"] = raw["once"], raw[RULE]
    outcome.calls += planner.calls
    if kind != "perfect":
        corrected = Planner(Corrected(source))
        starts["greenflow re-plan + correction"] = replay_planner(jobs, corrected)[RULE]
        outcome.calls += corrected.calls
        if zone == "GB" or quick:  # every tick re-plans under a minimum saving: too slow for 3 years of EM
            for suffix, base in (("", source), (" + correction", Corrected(source))):
                at_defaults = Planner(base, RULES_MIN_SAVINGS)
                for mode, chosen in replay_planner(jobs, at_defaults, RULES).items():
                    starts[rule_policy(mode) + suffix] = chosen
                outcome.calls += at_defaults.calls
        if ablation:
            for bias in ("always", "significant", "never"):
                for days in (7, 28):
                    variant = Planner(Corrected(source, days=days, bias=bias))
                    both = replay_planner(jobs, variant)
                    starts[f"correction: bias {bias}, {days} days"] = both[RULE]
                    starts[f"correction: bias {bias}, {days} days, plan-once"] = both["once"]
                    outcome.calls += variant.calls
    for policy, chosen in starts.items():
        sums: dict[tuple[int, int], float] = {}
        days: dict[int, float] = {}
        for job, value in zip(jobs, emissions(grid, jobs, chosen), strict=True):
            sums[job.combo] = sums.get(job.combo, 0.0) + value
            day = job.t0 // grid.per_day
            days[day] = days.get(day, 0.0) + value
        outcome.sums[policy], outcome.by_day[policy] = sums, days
    if published is not None and kind == "published":
        outcome.product = product_check(grid, published)
    outcome.seconds = time.perf_counter() - began
    return outcome


def product_check(
    grid: Grid, published: Published, every: timedelta = timedelta(hours=5)
) -> tuple[int, int, int, float]:
    """Compare the replay's corrected GB forecast with what a task running greenflow would plan on.

    At a decision time every ``every`` (off the hour, so over the day), the product's path is taken as
    ``Lifecycle`` takes it with ``forecast_correction=True``: the shipped GB trace's forecast, its
    ``issued_history`` and ``history`` over the correction's look-back, and ``correct()``. The only
    difference allowed is the look-back: the product reads ``lookback()`` of history, the replay all of it.
    """
    from greenflow.intensity.correction import correct, lookback
    from greenflow.intensity.providers.trace import TraceProvider

    source = Corrected(published)
    moments = values = differ = 0
    worst = 0.0
    t = grid.slot(parse_time("2023-03-15T00:00Z"))
    step = int(every.total_seconds()) // grid.step
    while t < len(grid.actual):
        now = grid.moment(t)
        replayed = source.values(t)
        provider = TraceProvider(region="GB", now=now)
        if published.snapshot_index(t) is not None:
            forecast = provider.forecast("GB", start=now, hours=HORIZON_H)
            since = now - lookback(7, timedelta(hours=HORIZON_H))
            issued, actual = provider.issued_history("GB", since, now), provider.history("GB", since, now)
            moments += 1
            for point in correct(forecast, issued, actual, now=now).forecast.points:
                lead = grid.slot(point.start) - t
                mine = replayed[lead] if 0 <= lead < len(replayed) else None
                if point.value is not None and mine is not None:
                    values += 1
                    gap = abs(point.value - mine)
                    differ += gap > 1e-6
                    worst = max(worst, gap)
        t += step
    return moments, values, differ, worst


# -- where and when: spatial + temporal ---------------------------------------------------------------

SPATIAL_POLICIES = ("time-only", "spatial-only", "spatial + temporal", "oracle (where and when)")
SPATIAL_BEGIN, SPATIAL_END = "<!-- spatial:begin -->", "<!-- spatial:end -->"


@dataclass
class SpatialOutcome:
    """Per home zone: emissions of every job under each policy, and where the spatial policies sent them."""

    home: str
    forecast: str
    run_now: list[float] = field(default_factory=list)
    emitted: dict[str, list[float]] = field(default_factory=dict)
    went: dict[str, dict[str, int]] = field(default_factory=dict)  # policy -> zone -> jobs
    calls: int = 0
    seconds: float = 0.0

    @property
    def jobs(self) -> int:
        return len(self.run_now)

    def reduction(self, policy: str) -> float:
        """Reduction of total emissions against running every job at once at home, in percent."""
        return 100.0 * (1 - sum(self.emitted[policy]) / sum(self.run_now))

    def mean_saving(self, policy: str) -> float:
        """Mean over jobs of each job's saving against running it at once at home, in percent."""
        pairs = zip(self.emitted[policy], self.run_now, strict=True)
        return statistics.fmean(100.0 * (1 - mine / base) for mine, base in pairs)

    def shares(self, policy: str) -> str:
        """Where the policy's jobs ran: ``NO 97.1 %, BR 2.9 %`` (zones with any job, most first)."""
        counts = self.went[policy]
        ranked = sorted(((n, zone) for zone, n in counts.items() if n), reverse=True)
        return ", ".join(f"{zone} {100.0 * n / self.jobs:.1f} %" for n, zone in ranked)


def all_known(grids: Sequence[Grid]) -> Grid:
    """A grid whose slot is known (0.0) only where every zone's actual is: jobs are made on it."""
    first = grids[0]
    if any(g.origin != first.origin or g.step != first.step or len(g.actual) != len(first.actual) for g in grids):
        raise SystemExit("the Electricity Maps zones do not share one hourly grid")
    actual = [None if any(g.actual[h] is None for g in grids) else 0.0 for h in range(len(first.actual))]
    return Grid("+".join(g.zone for g in grids), first.origin, first.step, actual)


def replay_spatial(task: tuple[str, str, bool]) -> list[SpatialOutcome]:
    """Every EM zone as home, one forecast kind: time-only, spatial-only, spatial + temporal, oracle.

    Every decision is one ``greenflow.planning.plan`` call at submission (plan-once) with the four zones
    as ``Candidate``s, home first. With no minimum saving and no threshold the home only breaks exact
    ties, so one call (zones in a fixed order) serves every home and is repeated with the home first
    only when another zone ties with the pick. The same call's ``alternatives`` hold each zone's own
    best start under the same rules: the time-only plan of a job whose home is that zone.
    """
    kind, root, quick = task
    began = time.perf_counter()
    grids = [load_em(Path(root), zone) for zone in EM_ZONES]
    sources: list[Source] = [Perfect(g) if kind == "perfect" else Persistence(g) for g in grids]
    planners = [Planner(source) for source in sources]
    first, last = submission_range(grids[0], quick)
    jobs = make_jobs(all_known(grids), first, last)
    zones = list(EM_ZONES)
    outcomes = {home: SpatialOutcome(home, kind) for home in zones}
    for outcome in outcomes.values():
        outcome.emitted = {policy: [] for policy in SPATIAL_POLICIES}
        outcome.went = {policy: dict.fromkeys(zones, 0) for policy in SPATIAL_POLICIES}
    prefixes = {grid.zone: _prefix(grid) for grid in grids}

    def cost(zone: str, start: int, length: int) -> float:
        prefix = prefixes[zone]
        return prefix[start + length] - prefix[start]

    calls = 0
    answers: dict[tuple[int, int], tuple[str, int, dict[str, int], list[tuple[str, float | None]]]] = {}
    now_answers: dict[int, tuple[str, list[tuple[str, float | None]]]] = {}
    tick: int | None = None
    grid = grids[0]
    for job in jobs:
        if job.t0 != tick:
            tick, answers, now_answers = job.t0, {}, {}
            candidates = [planner.candidate(job.t0) for planner in planners]
        now = grid.moment(job.t0)
        duration = timedelta(seconds=job.length * grid.step)
        if (job.length, job.latest) not in answers:
            result = plan(candidates, duration=duration, deadline=grid.moment(job.latest + job.length), now=now)
            calls += 1
            answers[job.length, job.latest] = (
                result.region,
                grid.slot(result.start),
                {option.region: grid.slot(option.start) for option in result.alternatives},
                [(option.region, option.expected_intensity) for option in result.alternatives],
            )
        if job.length not in now_answers:
            result = plan(candidates, duration=duration, deadline=now + duration, now=now)
            calls += 1
            now_answers[job.length] = (result.region, [(o.region, o.now_intensity) for o in result.alternatives])
        region, start, own, means = answers[job.length, job.latest]
        here, now_means = now_answers[job.length]
        # The oracle: every zone and start, scored on what happened (earliest lowest, home on exact ties).
        best_where, best_when, best = job.t0, job.t0, math.inf
        for zone in zones:
            for s in range(job.t0, job.latest + 1):
                value = cost(zone, s, job.length)
                if value < best - 1e-9:
                    best, best_where, best_when = value, zones.index(zone), s
        for home in zones:
            outcome = outcomes[home]
            where, when = region, start
            if _tied(means, region):
                again = plan(
                    _home_first(candidates, home),
                    duration=duration,
                    deadline=grid.moment(job.latest + job.length),
                    now=now,
                )
                calls += 1
                where, when = again.region, grid.slot(again.start)
            nearby = here
            if _tied(now_means, here):
                again = plan(_home_first(candidates, home), duration=duration, deadline=now + duration, now=now)
                calls += 1
                nearby = again.region
            oracle_zone = zones[best_where]
            if oracle_zone != home and math.isclose(cost(home, best_when, job.length), best, rel_tol=0, abs_tol=1e-9):
                oracle_zone = home
            chosen = {
                "time-only": (home, own[home]),
                "spatial-only": (nearby, job.t0),
                "spatial + temporal": (where, when),
                "oracle (where and when)": (oracle_zone, best_when),
            }
            outcome.run_now.append(cost(home, job.t0, job.length))
            for policy, (zone, begin) in chosen.items():
                if not job.t0 <= begin <= job.latest:
                    raise AssertionError(f"{policy}: job {job} started at {begin}, outside its feasible range")
                outcome.emitted[policy].append(cost(zone, begin, job.length))
                outcome.went[policy][zone] += 1
    seconds = time.perf_counter() - began
    for outcome in outcomes.values():
        outcome.calls, outcome.seconds = calls, seconds
    return [outcomes[home] for home in zones]


def _tied(means: Sequence[tuple[str, float | None]], chosen: str) -> bool:
    """True when another zone's mean equals the pick's (the home, listed first, could then win the tie)."""
    mine = dict(means)[chosen]
    if mine is None:
        return True
    return any(
        zone != chosen and value is not None and abs(value - mine) <= 1e-9 * max(1.0, abs(mine))
        for zone, value in means
    )


def _home_first(candidates: Sequence[Candidate], home: str) -> list[Candidate]:
    return sorted(candidates, key=lambda candidate: candidate.region != home)


def spatial_report(outcomes: Sequence[SpatialOutcome], quick: bool, elapsed: float) -> str:
    """The "where and when" section (between markers, so later runs can replace it alone)."""
    lines = [SPATIAL_BEGIN, ""]
    add = lines.append
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    scope = "quick subset: eight weeks of 2022" if quick else "2021-01-08 to 2023-12-31"
    add(f"## Where and when: spatial + temporal over the four Electricity Maps zones ({scope}, {stamp})")
    add("")
    add(
        "As if one had the same GPUs in each of BR, ES, NO and US-CAL-CISO (same power draw, PUE and "
        "embodied carbon everywhere; moving the data and the users' latency are ignored). Each job has a "
        "home zone; the reduction is of total emissions against running every job at once at home, scored "
        "on actuals. Same jobs as above (submitted every hour, durations 1/4/8 h x slack 4/12/24 h), kept "
        "where all four zones' actuals are known. Every policy plans once at submission with "
        "`greenflow.planning.plan` on the forecast of that moment: **time-only** is the planner with the "
        "home zone alone (the table above's plan-once), **spatial-only** the planner over the four zones "
        "with no slack (the greenest zone now), **spatial + temporal** the planner over the four zones "
        "within the deadline (the greenest (zone, start)), **oracle** the best (zone, start) on actuals. "
        "Forecasts: `perfect` is the actuals themselves (so there spatial + temporal must equal the oracle: "
        "a check of the planner), `persistence` each zone's same hour one day earlier (the headline "
        "forecast for these zones above). GB is left out: its trace covers six weeks of 2023 in half hours."
    )
    add("")
    add("| home | forecast | jobs | " + " | ".join(SPATIAL_POLICIES) + " | spatial + temporal ran in |")
    add("| --- | --- | ---: | " + " | ".join("---:" for _ in SPATIAL_POLICIES) + " | --- |")
    for outcome in outcomes:
        cells = [f"{outcome.reduction(policy):.1f} %" for policy in SPATIAL_POLICIES]
        shares = outcome.shares("spatial + temporal")
        add(f"| {outcome.home} | {outcome.forecast} | {outcome.jobs} | " + " | ".join(cells) + f" | {shares} |")
    add("")
    add("Mean per-job saving against running at once at home (each job counts once, whatever its length):")
    add("")
    add("| home | forecast | " + " | ".join(SPATIAL_POLICIES) + " | spatial-only ran in |")
    add("| --- | --- | " + " | ".join("---:" for _ in SPATIAL_POLICIES) + " | --- |")
    for outcome in outcomes:
        cells = [f"{outcome.mean_saving(policy):.1f} %" for policy in SPATIAL_POLICIES]
        add(f"| {outcome.home} | {outcome.forecast} | " + " | ".join(cells) + f" | {outcome.shares('spatial-only')} |")
    add("")
    for outcome in outcomes:
        if outcome.forecast == "perfect":
            mine, best = outcome.reduction("spatial + temporal"), outcome.reduction("oracle (where and when)")
            ok = abs(mine - best) < 0.01
            add(
                f"- {'met' if ok else 'NOT met'}: {outcome.home} home, perfect forecast: spatial + temporal "
                f"{mine:.2f} % = oracle {best:.2f} % (a check of the planner across zones)"
            )
    per_kind = {outcome.forecast: outcome.calls for outcome in outcomes}  # one replay per forecast kind
    add("")
    add(
        f"The home only breaks exact ties, so the zone shares are the same for every home. {sum(per_kind.values()):,} "
        f"planner calls over {len(per_kind)} forecast kinds; the section took {elapsed:.0f} s "
        f"(Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end)."
    )
    add("")
    add(SPATIAL_END)
    return "\n".join(lines) + "\n"


def merge_section(text: str, section: str) -> str:
    """``text`` with its spatial section replaced by ``section`` (or ``section`` added before the data note)."""
    if SPATIAL_BEGIN in text and SPATIAL_END in text:
        head, rest = text.split(SPATIAL_BEGIN, 1)
        return head + section.rstrip("\n") + rest.split(SPATIAL_END, 1)[1]
    marker = "Data: Electricity Maps"
    if marker in text:
        head, tail = text.rsplit(marker, 1)
        return head + section + "\n" + marker + tail
    return text.rstrip("\n") + "\n\n" + section


def kept_section(path: Path) -> str | None:
    """The spatial section of an earlier report at ``path``, if any (a run without ``--spatial`` keeps it)."""
    if not path.is_file():
        return None
    text = path.read_text()
    if SPATIAL_BEGIN not in text or SPATIAL_END not in text:
        return None
    return SPATIAL_BEGIN + text.split(SPATIAL_BEGIN, 1)[1].split(SPATIAL_END, 1)[0] + SPATIAL_END + "\n"


# -- interruptible jobs: the segment planner -----------------------------------------------------------

INTERRUPTIBLE_DURATIONS_H = (4, 8, 24)
INTERRUPTIBLE_SLACKS_H = (12, 24, 48)
INTERRUPTIBLE_HORIZON_H = 72  # perfect and persistence forecasts cover the longest window (24 h + 48 h)
RESUME_OVERHEAD = timedelta(minutes=5)
# Submissions every so many hours (an odd count, so the hour of day rotates): each job is a few dynamic
# programmes, so the replay samples submissions instead of taking every hour. --quick: one year, sparser.
INTERRUPTIBLE_EVERY_H = {"EM": 97, "GB": 5}
INTERRUPTIBLE_QUICK_EVERY_H = {"EM": 193, "GB": 11}
INTERRUPTIBLE_POLICIES = (
    "whole-job",
    "whole-job re-plan",
    "interruptible",
    "interruptible re-plan",
    "whole-job re-plan + correction",
    "interruptible re-plan + correction",
    "whole-job oracle",
    "interruptible oracle",
)


@dataclass
class InterruptibleOutcome:
    """Emission sums per policy and (duration, slack) for one zone and forecast, interruptible mode."""

    zone: str
    forecast: str
    jobs: int = 0
    sums: dict[str, dict[tuple[int, int], float]] = field(default_factory=dict)
    segments: dict[str, int] = field(default_factory=dict)  # policy -> segments run over all jobs
    late: int = 0  # re-planned jobs that could no longer meet their deadline and ran past it
    calls: int = 0
    seconds: float = 0.0

    def total(self, policy: str, combo: tuple[int, int] | None = None) -> float:
        sums = self.sums[policy]
        return sum(sums.values()) if combo is None else sums[combo]

    def reduction(self, policy: str, combo: tuple[int, int] | None = None) -> float | None:
        """Reduction of emissions vs run-now, in percent (None when the policy was not run)."""
        if policy not in self.sums:
            return None
        return 100.0 * (1 - self.total(policy, combo) / self.total("run-now", combo))

    def share(self, policy: str, combo: tuple[int, int] | None = None) -> float | None:
        """The policy's reduction as a percentage of the interruptible oracle's."""
        mine, best = self.reduction(policy, combo), self.reduction("interruptible oracle", combo)
        return None if mine is None or not best else 100.0 * mine / best


class Frozen(Source):
    """Another source's values at every tick of a range, computed once in time order.

    A corrected forecast learns from every actual up to its tick, so it must be read in time order; the
    interruptible replay walks one job at a time, so it reads these stored values instead.
    """

    def __init__(self, base: Source, first: int, last: int) -> None:
        super().__init__(base.grid)
        self.name = base.name
        self.repeats = False
        self.horizon = base.horizon
        self.stored = {t: base.values(t) for t in range(first, last + 1)}

    def values(self, t: int) -> list[float | None]:
        return self.stored[t]


def make_interruptible_jobs(
    grid: Grid, first: int, last: int, every: int, keep: Callable[[int], bool] | None = None
) -> list[Job]:
    """Jobs of 4/8/24 h with 12/24/48 h of slack, submitted every ``every`` hours, where the whole
    feasible range has known actuals (so the oracles are defined)."""
    jobs: list[Job] = []
    actual, hour = grid.actual, grid.per_hour
    for t0 in range(first, last + 1, every * hour):
        if keep is not None and not keep(t0):
            continue
        for duration in INTERRUPTIBLE_DURATIONS_H:
            for slack in INTERRUPTIBLE_SLACKS_H:
                length, latest = duration * hour, t0 + slack * hour
                end = latest + length
                if end > len(actual) or any(v is None for v in actual[t0:end]):
                    continue
                jobs.append(Job(len(jobs), t0, length, latest, (duration, slack)))
    return jobs


class Scorer:
    """Actual emissions (intensity x slots) of stretches given in slot units, fractions included."""

    def __init__(self, grid: Grid) -> None:
        self.grid = grid
        self.actual = [value or 0.0 for value in grid.actual]  # jobs are only made where all are known
        self.prefix = _prefix(grid)

    def at(self, moment: datetime) -> float:
        """``moment`` in slot units after the grid's origin."""
        return (moment - self.grid.origin).total_seconds() / self.grid.step

    def integral(self, x1: float, x2: float) -> float:
        i1, i2 = math.floor(x1), math.floor(x2)
        if i1 == i2:
            return self.actual[i1] * (x2 - x1)
        total = self.actual[i1] * (i1 + 1 - x1) + self.prefix[i2] - self.prefix[i1 + 1]
        return total + (self.actual[i2] * (x2 - i2) if x2 > i2 else 0.0)


def _segments_plan(candidate: Candidate, grid: Grid, job: Job, t: int, work: timedelta, resumed: bool) -> SegmentPlan:
    return plan_segments(
        candidate,
        duration=work,
        deadline=grid.moment(job.latest + job.length),
        now=grid.moment(t),
        resume_overhead=RESUME_OVERHEAD,
        resumed=resumed,
    )


def replay_interruptible_job(
    planner: Planner, scorer: Scorer, job: Job, published: Published | None, every_tick: bool = False
) -> tuple[float, float, int, int, bool]:
    """One interruptible job planned at submission, run as planned (``once``) and, when ``published`` is
    given, re-planned while paused whenever a newer published forecast has become usable (``replan``).

    Returns (once emissions, replan emissions, once segments, replan segments, replan ran late). The
    re-planning job runs its segments as planned; between them, at the first tick a newer snapshot is
    usable, it plans its remaining work again (``resumed`` once it has run: the next segment pays the
    resume overhead). With ``every_tick`` (a corrected forecast, new at every tick) it plans again at every
    tick while paused. Overheads are scored where they happen, on actuals.
    """
    grid, step = planner.grid, planner.grid.step
    work = timedelta(seconds=job.length * step)
    first = _segments_plan(planner.candidate(job.t0), grid, job, job.t0, work, False)
    planner.calls += 1
    spans = [(scorer.at(s.start), scorer.at(s.end)) for s in first.segments]
    once = sum(scorer.integral(a, b) for a, b in spans)
    if published is None:
        return once, once, len(spans), len(spans), False
    overhead = RESUME_OVERHEAD.total_seconds() / step  # slots
    left = float(job.length)  # work still to do, in slots
    emitted, pieces, ran, late = 0.0, 0, False, False
    planned_with, planned_at = published.snapshot_index(job.t0), job.t0
    clock = float(job.t0)  # the job is paused (or not started) from here
    while left > 1e-6:  # slots: float noise of adding up microsecond edges
        if not spans:  # every planned segment ran and work is left (not expected): run on to completion
            spans = [(clock, clock + left + (overhead if ran else 0.0))]
        start, end = spans[0]
        # A newer snapshot usable at a tick while paused, before the next segment starts: plan again.
        tick = math.ceil(clock - 1e-9)
        newer = None
        if every_tick:
            tick = max(tick, planned_at + 1)
            newer = tick if tick < start - 1e-9 else None
        else:
            for usable in published.ticks:
                if usable >= tick and usable < start - 1e-9 and published.snapshot_index(usable) != planned_with:
                    newer = usable
                    break
        if newer is not None:
            planned_with, planned_at = published.snapshot_index(newer), newer
            remaining = timedelta(microseconds=round(left * step * 1e6))
            again = _segments_plan(planner.candidate(newer), grid, job, newer, remaining, ran)
            planner.calls += 1
            late = late or again.late
            spans = [(scorer.at(s.start), scorer.at(s.end)) for s in again.segments]
            clock = float(newer)
            continue
        spans.pop(0)
        paid = overhead if ran else 0.0
        end = min(end, start + paid + left)  # stops once its work is done
        emitted += scorer.integral(start, end)
        left -= end - start - paid
        ran, clock, pieces = True, end, pieces + 1
    return once, emitted, len(first.segments), pieces, late


def replay_interruptible(task: tuple[str, str, str, bool]) -> InterruptibleOutcome:
    """Every interruptible-mode policy for one zone and one forecast kind."""
    zone, kind, root, quick = task
    began = time.perf_counter()
    grid = load_gb(Path(root)) if zone == "GB" else load_em(Path(root), zone)
    published = Published(grid) if zone == "GB" else None
    keep = None
    if published is not None:

        def keep(t0: int) -> bool:
            age = published.age(t0)
            return age is not None and age <= MAX_SNAPSHOT_AGE

    every = (INTERRUPTIBLE_QUICK_EVERY_H if quick else INTERRUPTIBLE_EVERY_H)["GB" if zone == "GB" else "EM"]
    first, last = submission_range(grid, quick)
    if quick and zone != "GB":
        last = grid.slot(parse_time("2022-12-31T00:00Z"))
    jobs = make_interruptible_jobs(grid, first, last, every, keep)
    source: Source
    if kind == "published":
        assert published is not None
        source = published
    else:
        source = {"perfect": Perfect, "persistence": Persistence}[kind](grid)
    source.horizon = INTERRUPTIBLE_HORIZON_H * grid.per_hour
    outcome = InterruptibleOutcome(zone, kind, len(jobs))
    scorer = Scorer(grid)
    planner = Planner(source)
    truth = Planner(Perfect(grid))
    whole = replay_planner(jobs, planner)
    corrected: Planner | None = None
    if kind == "published" and jobs:
        assert published is not None
        fixed = Corrected(published)
        fixed.horizon = source.horizon
        ticks = (min(job.t0 for job in jobs), max(job.latest + job.length for job in jobs))
        corrected = Planner(Frozen(fixed, *ticks))
        whole_fixed = replay_planner(jobs, Planner(Corrected(published)))[RULE]
    emitted: dict[str, list[float]] = {policy: [] for policy in ("run-now", *INTERRUPTIBLE_POLICIES)}
    outcome.segments = dict.fromkeys(INTERRUPTIBLE_POLICIES, 0)
    oracle_starts = replay_oracle(grid, jobs)
    for job in jobs:
        once, replanned, pieces_once, pieces_replan, late = replay_interruptible_job(
            planner, scorer, job, published if kind == "published" else None
        )
        # The interruptible oracle: the same programme on the actuals of the job's whole window.
        points = tuple(
            ForecastPoint(grid.moment(h), grid.moment(h + 1), grid.actual[h])
            for h in range(job.t0, job.latest + job.length)
        )
        actuals = Candidate(grid.zone, Forecast(grid.zone, "actual", "average", grid.moment(job.t0), points))
        best = _segments_plan(actuals, grid, job, job.t0, timedelta(seconds=job.length * grid.step), False)
        truth.calls += 1
        oracle = sum(scorer.integral(scorer.at(s.start), scorer.at(s.end)) for s in best.segments)
        emitted["run-now"].append(scorer.integral(job.t0, job.t0 + job.length))
        for policy, start in (
            ("whole-job", whole["once"][job.ident]),
            ("whole-job re-plan", whole[RULE][job.ident]),
            ("whole-job oracle", oracle_starts[job.ident]),
        ):
            if not job.t0 <= start <= job.latest:
                raise AssertionError(f"{policy}: job {job} started at {start}, outside its feasible range")
            emitted[policy].append(scorer.integral(start, start + job.length))
            outcome.segments[policy] += 1
        if corrected is not None:
            _, fixed_emitted, _, fixed_pieces, fixed_late = replay_interruptible_job(
                corrected, scorer, job, published, every_tick=True
            )
            emitted["interruptible re-plan + correction"].append(fixed_emitted)
            outcome.segments["interruptible re-plan + correction"] += fixed_pieces
            outcome.late += fixed_late
            start = whole_fixed[job.ident]
            emitted["whole-job re-plan + correction"].append(scorer.integral(start, start + job.length))
            outcome.segments["whole-job re-plan + correction"] += 1
        emitted["interruptible"].append(once)
        emitted["interruptible re-plan"].append(replanned)
        emitted["interruptible oracle"].append(oracle)
        outcome.segments["interruptible"] += pieces_once
        outcome.segments["interruptible re-plan"] += pieces_replan
        outcome.segments["interruptible oracle"] += len(best.segments)
        outcome.late += late
    for policy, values in emitted.items():
        if jobs and not values:
            continue  # not replayed for this forecast
        sums: dict[tuple[int, int], float] = {}
        for job, value in zip(jobs, values, strict=True):
            sums[job.combo] = sums.get(job.combo, 0.0) + value
        outcome.sums[policy] = sums
    if kind != "published":
        del outcome.sums["interruptible re-plan"]  # the same as planning once: the forecast never changes
    outcome.calls = planner.calls + truth.calls + (0 if corrected is None else corrected.calls)
    outcome.seconds = time.perf_counter() - began
    return outcome


def time_segment_planner(runs: int) -> list[tuple[str, float, float, float]]:
    """p50 and p99 of the CPU time, and p50 of the wall time (milliseconds), of planning segments on a
    48-hour forecast of 30-minute slots. CPU time is the figure to read on a shared machine: the wall time
    also counts the time other processes held the cores."""
    import random

    rng = random.Random(11)
    origin = datetime(2024, 5, 1, tzinfo=UTC)
    step = timedelta(minutes=30)
    level, values = 200.0, []
    for _ in range(96):
        level = max(5.0, level + rng.gauss(0, 15))
        values.append(round(level, 1))
    forecast = Forecast(
        "X",
        "bench",
        "average",
        origin,
        tuple(ForecastPoint(origin + i * step, origin + (i + 1) * step, v) for i, v in enumerate(values)),
    )
    candidate = [Candidate("X", forecast)]
    deadline = origin + timedelta(hours=48)
    cases: list[tuple[str, Callable[[], object]]] = [
        (
            "plan_segments(), 8 h job, now on a slot boundary",
            lambda: plan_segments(candidate, duration=timedelta(hours=8), deadline=deadline, now=origin),
        ),
        (
            "plan_segments(), 8 h job, now 7 min into a slot",
            lambda: plan_segments(
                candidate, duration=timedelta(hours=8), deadline=deadline, now=origin + timedelta(minutes=7)
            ),
        ),
        (
            "plan_segments(), 24 h job, now on a slot boundary",
            lambda: plan_segments(candidate, duration=timedelta(hours=24), deadline=deadline, now=origin),
        ),
        (
            "plan(), 8 h whole job (for comparison)",
            lambda: plan(candidate, duration=timedelta(hours=8), deadline=deadline, now=origin),
        ),
    ]
    rows = []
    for name, call in cases:
        call()  # warm up
        samples, walls = [], []
        for _ in range(runs):
            began, cpu = time.perf_counter_ns(), time.process_time_ns()
            call()
            samples.append((time.process_time_ns() - cpu) / 1e6)
            walls.append((time.perf_counter_ns() - began) / 1e6)
        samples.sort()
        p99 = samples[min(len(samples) - 1, int(0.99 * len(samples)))]
        rows.append((name, statistics.median(samples), p99, statistics.median(walls)))
    return rows


def interruptible_report(
    outcomes: Sequence[InterruptibleOutcome],
    timings: Sequence[tuple[str, float, float, float]],
    quick: bool,
    workers: int,
    elapsed: float,
) -> str:
    """The interruptible-jobs report (its own file: ``benchmarks/results/savings-interruptible.md``)."""
    lines: list[str] = []
    add = lines.append
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    every = INTERRUPTIBLE_QUICK_EVERY_H if quick else INTERRUPTIBLE_EVERY_H
    add(f"# Interruptible jobs: the segment planner ({'quick subset' if quick else 'full run'}, {stamp})")
    add("")
    add(
        "Reduction of total emissions against running every job at submission (run-now), and in brackets the "
        "share of the **interruptible oracle**'s reduction (the same dynamic programme, "
        "`greenflow.segments.plan_segments`, on the actuals: perfect foresight). Scored on actuals; a job draws "
        f"constant power, and each resume costs {_span_text(RESUME_OVERHEAD)} at that power, scored where it "
        "happens. Jobs of 4/8/24 h with 12/24/48 h of slack (deadline = submission + duration + slack), "
        f"submitted every {every['EM']} h on the Electricity Maps zones"
        + (" (2022 only)" if quick else "")
        + f" and every {every['GB']} h on GB (where a published forecast at most 14 h old exists), kept where "
        "the actuals cover the whole window. Policies: **whole-job** is `greenflow.planning.plan` once at "
        "submission, **whole-job re-plan** the same re-planned whenever the forecast changes (as in the main "
        "table), **interruptible** `plan_segments` once at submission, its segments run as planned, "
        "**interruptible re-plan** (published forecasts) the same, planning the remaining work again while "
        "paused whenever a newer snapshot is usable, **… + correction** (published forecasts) the same on the "
        "forecast corrected by `greenflow.intensity.correction` (as in the main table; the interruptible job "
        "re-plans at every tick while paused, the whole job at every tick while waiting), **whole-job oracle** "
        "the best single window on actuals. "
        f"Perfect and persistence forecasts reach {INTERRUPTIBLE_HORIZON_H} h ahead (the longest window); the "
        "published GB forecasts are 48 h as NESO published them."
    )
    add("")
    add("| zone | forecast | jobs | " + " | ".join(INTERRUPTIBLE_POLICIES) + " | interruptible vs whole-job |")
    add("| --- | --- | ---: | " + " | ".join("---:" for _ in INTERRUPTIBLE_POLICIES) + " | ---: |")
    for outcome in outcomes:
        cells = []
        for policy in INTERRUPTIBLE_POLICIES:
            reduction, share = outcome.reduction(policy), outcome.share(policy)
            cells.append("—" if reduction is None else f"{reduction:.1f} % ({share:.0f} %)")
        add(
            f"| {outcome.zone} | {outcome.forecast} | {outcome.jobs} | " + " | ".join(cells) + f" | {_extra(outcome)} |"
        )
    add("")
    add(
        "*interruptible vs whole-job*: how much lower the interruptible policy's emissions are than the "
        "whole-job policy's on the same forecast (re-planned against re-planned on published forecasts, "
        "planned once against planned once otherwise), and the extra reduction in percentage points of run-now."
    )
    add("")
    add("## Goals")
    add("")
    for line in interruptible_goals(outcomes):
        add(f"- {line}")
    add("")
    add("## By duration and slack (reduction vs run-now: whole-job → interruptible → interruptible oracle)")
    add("")
    combos = [(d, s) for d in INTERRUPTIBLE_DURATIONS_H for s in INTERRUPTIBLE_SLACKS_H]
    add("| zone | forecast | " + " | ".join(f"{d} h / +{s} h" for d, s in combos) + " |")
    add("| --- | --- | " + " | ".join("---:" for _ in combos) + " |")
    for outcome in outcomes:
        if outcome.forecast == "perfect":
            continue
        mine, theirs = _headline_pair(outcome)
        cells = []
        for combo in combos:
            if combo not in outcome.sums["run-now"]:
                cells.append("—")
                continue
            values = [outcome.reduction(p, combo) or 0.0 for p in (theirs, mine, "interruptible oracle")]
            cells.append(" → ".join(f"{v:.0f}" for v in values))
        add(f"| {outcome.zone} | {outcome.forecast} | " + " | ".join(cells) + " |")
    add("")
    add("Segments per job (mean): " + "; ".join(_segments_text(o) for o in outcomes if o.forecast != "perfect") + ".")
    add("")
    add("## Segment planner speed: a 48-hour forecast of 30-minute slots (96 points), deadline at its end")
    add("")
    add("| case | CPU p50 (ms) | CPU p99 (ms) | wall p50 (ms) |")
    add("| --- | ---: | ---: | ---: |")
    for name, p50, p99, wall in timings:
        add(f"| {name} | {p50:.2f} | {p99:.2f} | {wall:.2f} |")
    add("")
    calls = sum(outcome.calls for outcome in outcomes)
    add(
        f"Replays made {calls:,} planner calls; the run took {elapsed:.0f} s on {workers} worker process(es) "
        f"(Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the "
        "end: the machine was shared, so the times are upper bounds)."
    )
    add("")
    add(
        'Data: Electricity Maps hourly life-cycle intensity (ODbL 1.0, attribute "Electricity Maps"). '
        "GB: Contains data from the National Energy System Operator Carbon Intensity API (CC BY 4.0), "
        "as collected by nmpowell/carbon-intensity-forecast-tracking."
    )
    return "\n".join(lines) + "\n"


def _span_text(value: timedelta) -> str:
    return f"{round(value.total_seconds() / 60)} min"


def _headline_pair(outcome: InterruptibleOutcome) -> tuple[str, str]:
    """(interruptible policy, whole-job policy) compared in the headline: re-planned on published forecasts."""
    if outcome.forecast == "published":
        return "interruptible re-plan + correction", "whole-job re-plan + correction"
    return "interruptible", "whole-job"


def _extra(outcome: InterruptibleOutcome) -> str:
    mine, theirs = _headline_pair(outcome)
    lower = 100.0 * (1 - outcome.total(mine) / outcome.total(theirs))
    points = (outcome.reduction(mine) or 0.0) - (outcome.reduction(theirs) or 0.0)
    return f"{lower:.1f} % lower (+{points:.1f} pts)"


def _segments_text(outcome: InterruptibleOutcome) -> str:
    mine, _ = _headline_pair(outcome)
    oracle = outcome.segments["interruptible oracle"] / max(outcome.jobs, 1)
    return (
        f"{outcome.zone} {outcome.forecast} {outcome.segments[mine] / max(outcome.jobs, 1):.2f} (oracle {oracle:.2f})"
    )


def interruptible_goals(outcomes: Sequence[InterruptibleOutcome]) -> Iterator[str]:
    """The issue's goals for interruptible jobs, checked against what was measured."""
    for outcome in outcomes:
        if outcome.forecast == "perfect":
            share = outcome.share("interruptible") or 0.0
            ok = abs(share - 100) < 0.005
            yield (
                f"{'met' if ok else 'NOT met'}: {outcome.zone}, perfect forecast: interruptible reaches {share:.3f} % "
                "of the interruptible oracle (a check of the planner and of the replay: 100 %)"
            )
    for outcome in outcomes:
        if outcome.forecast == "published":
            share = outcome.share("interruptible re-plan + correction") or 0.0
            once = outcome.share("interruptible") or 0.0
            plain = outcome.share("interruptible re-plan") or 0.0
            yield (
                f"{'met' if share >= 80 else 'NOT met'}: GB, published forecast: interruptible re-plan + correction "
                f"reaches {share:.1f} % of the interruptible oracle (goal >= 80 %; planned once: {once:.1f} %, "
                f"re-planned without correction: {plain:.1f} %); {outcome.late} re-planned jobs could no longer "
                "meet their deadline and ran past it"
            )
    for outcome in outcomes:
        if outcome.forecast == "perfect":
            continue
        mine, theirs = _headline_pair(outcome)
        ok = outcome.total(mine) < outcome.total(theirs)
        verdict = "met" if ok else "NOT met"
        yield f"{verdict}: {outcome.zone}, {outcome.forecast}: {mine} saves more than {theirs}: {_extra(outcome)}"


INTERRUPTIBLE_ORDER = {
    (zone, kind): index
    for index, (zone, kind) in enumerate(
        (z, k) for z in (*EM_ZONES, "GB") for k in ("perfect", "persistence", "published")
    )
}


def run_interruptible(args: argparse.Namespace, zones: Sequence[str], root: Path) -> int:
    """``--interruptible``: replay the interruptible-jobs policies and write their report."""
    began = time.perf_counter()
    # The longest replay (GB published, re-planned at every tick) first, so the workers finish together.
    tasks = [("GB", kind, str(root), args.quick) for kind in ("published", "perfect") if "GB" in zones]
    tasks += [
        (zone, kind, str(root), args.quick) for zone in EM_ZONES if zone in zones for kind in ("perfect", "persistence")
    ]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        outcomes = sorted(pool.map(replay_interruptible, tasks), key=lambda o: INTERRUPTIBLE_ORDER[o.zone, o.forecast])
    for outcome in outcomes:
        summary = f"{outcome.jobs} jobs, {outcome.calls:,} plans, {outcome.seconds:.0f} s"
        print(f"  replayed {outcome.zone} {outcome.forecast}: {summary}", file=sys.stderr)
    timings = time_segment_planner(10 if args.quick else 50)
    text = interruptible_report(outcomes, timings, args.quick, args.workers, time.perf_counter() - began)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return 0


# -- planner timing -----------------------------------------------------------------------------------


def time_planner(runs: int) -> list[tuple[str, float, float]]:
    """p50 and p99 (microseconds) of planning a 72-hour forecast of 5-minute slots."""
    import random

    rng = random.Random(7)
    origin = datetime(2024, 5, 1, tzinfo=UTC)
    step = timedelta(minutes=5)
    level = 200.0
    values = []
    for _ in range(72 * 12):
        level = max(5.0, level + rng.gauss(0, 6))
        values.append(round(level, 1))
    regular = tuple(ForecastPoint(origin + i * step, origin + (i + 1) * step, v) for i, v in enumerate(values))
    mixed: list[ForecastPoint] = []  # the same 72 h as alternating 5- and 15-minute slots
    cursor, index = origin, 0
    while cursor < origin + timedelta(hours=72):
        width = step if index % 2 == 0 else 3 * step
        mixed.append(ForecastPoint(cursor, cursor + width, values[index % len(values)]))
        cursor, index = cursor + width, index + 1

    def forecast(points: Sequence[ForecastPoint]) -> Forecast:
        return Forecast("X", "bench", "average", origin, tuple(points))

    now = origin + timedelta(minutes=2)  # off the grid, as a real "now" is
    deadline = origin + timedelta(hours=72)
    regular_forecast, mixed_forecast = forecast(regular), forecast(mixed)
    prepared = [Candidate("X", regular_forecast)]
    prepared_mixed = [Candidate("X", mixed_forecast)]
    cases: list[tuple[str, Callable[[], object]]] = [
        (
            "plan(), 2 h job (prepared candidate)",
            lambda: plan(prepared, duration=timedelta(hours=2), deadline=deadline, now=now),
        ),
        (
            "plan(), 1 h 57 min job (window edges off the grid)",
            lambda: plan(prepared, duration=timedelta(minutes=117), deadline=deadline, now=now),
        ),
        (
            "plan() with a threshold (full sweep)",
            lambda: plan(prepared, duration=timedelta(hours=2), deadline=deadline, now=now, threshold=1.0),
        ),
        (
            "plan(), mixed 5/15-min slots (full sweep)",
            lambda: plan(prepared_mixed, duration=timedelta(hours=2), deadline=deadline, now=now),
        ),
        (
            "Candidate(...) + plan(), 2 h job (includes reading the 864 points)",
            lambda: plan([Candidate("X", regular_forecast)], duration=timedelta(hours=2), deadline=deadline, now=now),
        ),
    ]
    rows = []
    for name, call in cases:
        for _ in range(max(10, runs // 20)):  # warm up
            call()
        samples = []
        for _ in range(runs):
            began = time.perf_counter_ns()
            call()
            samples.append((time.perf_counter_ns() - began) / 1000)
        samples.sort()
        rows.append((name, statistics.median(samples), samples[min(len(samples) - 1, int(0.99 * len(samples)))]))
    return rows


# -- report ---------------------------------------------------------------------------------------


def _cell(outcome: Outcome, policy: str, combo: tuple[int, int] | None = None) -> str:
    reduction, share = outcome.reduction(policy, combo), outcome.share(policy, combo)
    if reduction is None:
        return "—"
    if policy == "run-now":
        return "0.0 %"
    return f"{reduction:.1f} % ({share:.0f} %)" if share is not None else f"{reduction:.1f} %"


HEADLINE = {
    "BR": "persistence",
    "ES": "persistence",
    "NO": "persistence",
    "US-CAL-CISO": "persistence",
    "GB": "published",
}


def report(
    outcomes: list[Outcome], timings: list[tuple[str, float, float]], args: argparse.Namespace, elapsed: float
) -> str:
    lines: list[str] = []
    add = lines.append
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    scope = ("quick subset" if args.quick else "full run") + (", with ablation" if args.ablation else "")
    if args.zones:
        scope += f", zones {args.zones}"
    add(f"# Carbon savings of greenflow's planner ({scope}, {stamp})")
    add("")
    add(
        "Reduction of total emissions against running every job at submission (run-now), and in brackets "
        "the share of the perfect-foresight oracle's reduction. Scored on actuals. Jobs: submitted every hour, "
        "durations 1/4/8 h x slack 4/12/24 h. See the docstring of `benchmarks/savings.py` for the policies."
    )
    add("")
    policies = [p for p in POLICIES if p != "run-now"]
    add("| zone | forecast | jobs | " + " | ".join(policies) + " |")
    add("| --- | --- | ---: | " + " | ".join("---:" for _ in policies) + " |")
    for outcome in outcomes:
        cells = [_cell(outcome, policy) for policy in policies]
        add(f"| {outcome.zone} | {outcome.forecast} | {outcome.jobs} | " + " | ".join(cells) + " |")
    add("")
    add("## Goals")
    add("")
    for line in goals(outcomes):
        add(f"- {line}")
    add("")
    add("## By duration and slack (share of the oracle's reduction: plan-once → greenflow re-plan + correction)")
    add("")
    combos = [(d, s) for d in DURATIONS_H for s in SLACKS_H]
    add("| zone | forecast | " + " | ".join(f"{d} h / +{s} h" for d, s in combos) + " |")
    add("| --- | --- | " + " | ".join("---:" for _ in combos) + " |")
    for outcome in outcomes:
        if outcome.forecast != HEADLINE.get(outcome.zone):
            continue
        cells = []
        for combo in combos:
            once, best = outcome.share("plan-once", combo), outcome.share("greenflow re-plan + correction", combo)
            cells.append("—" if once is None or best is None else f"{once:.0f} → {best:.0f}")
        add(f"| {outcome.zone} | {outcome.forecast} | " + " | ".join(cells) + " |")
    for line in rules_section(outcomes):
        add(line)
    if args.ablation:
        add("")
        add("## Ablation: correction variants (all re-planned unless marked plan-once)")
        add("")
        add("| zone | forecast | " + " | ".join(ABLATION) + " |")
        add("| --- | --- | " + " | ".join("---:" for _ in ABLATION) + " |")
        for outcome in outcomes:
            if outcome.forecast == "perfect":
                continue
            add(f"| {outcome.zone} | {outcome.forecast} | " + " | ".join(_cell(outcome, v) for v in ABLATION) + " |")
    add("")
    add("## Planner speed: a 72-hour forecast of 5-minute slots (864 points), feasible range the whole 72 h")
    add("")
    add("| case | p50 (µs) | p99 (µs) |")
    add("| --- | ---: | ---: |")
    for name, p50, p99 in timings:
        add(f"| {name} | {p50:.0f} | {p99:.0f} |")
    add("")
    calls = sum(outcome.calls for outcome in outcomes)
    add(
        f"Replays made {calls:,} planner calls; the whole run took {elapsed:.0f} s on {args.workers} worker "
        f"process(es) (Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f} at the end)."
    )
    add("")
    add(
        'Data: Electricity Maps hourly life-cycle intensity (ODbL 1.0, attribute "Electricity Maps"). '
        "GB: Contains data from the National Energy System Operator Carbon Intensity API (CC BY 4.0), "
        "as collected by nmpowell/carbon-intensity-forecast-tracking."
    )
    return "\n".join(lines) + "\n"


def rules_section(outcomes: Sequence[Outcome]) -> Iterator[str]:
    """The re-plan rules compared at the product's minimum saving, and the defaults with 95 % intervals."""
    policies = rule_policies()
    ruled = [o for o in outcomes if all(p in o.sums for p in policies)]
    if not ruled:
        return
    yield ""
    yield (
        f"## Re-plan rules, through the product's rule code, at min_savings {RULES_MIN_SAVINGS:g} %"
        + (
            " (the default)"
            if RULES_MIN_SAVINGS == DEFAULT_MIN_SAVINGS
            else f" (the default is {DEFAULT_MIN_SAVINGS:g} %)"
        )
    )
    yield ""
    yield (
        "Share of the oracle's reduction, with a 95 % interval from resampling whole submission days "
        f"({BOOTSTRAP_RESAMPLES} resamples). Every waiting job re-plans at every tick and keeps the held or the "
        "fresh plan by `greenflow.replanning.takes_fresh` (what `preferred`, and so every entry point, runs): "
        "**newest** takes the fresh plan, earlier or later; **greener** takes it, earlier or later, when the "
        "fresh forecast says its window is greener than the one held; **sooner-if-greener** only an earlier start "
        f"that is greener by the fresh forecast. The product's rule is **{RULE}**. Persistence rows: a corrected "
        "column is what a provider publishing its past forecasts would give (no such provider behind these)."
    )
    yield ""
    yield "| zone | forecast | jobs | days | " + " | ".join(policies) + " |"
    yield "| --- | --- | ---: | ---: | " + " | ".join("---:" for _ in policies) + " |"
    samples = {id(o): bootstrap(o, policies) for o in ruled}
    for outcome in ruled:
        cells = []
        for policy in policies:
            low, high = interval([share for _, share in samples[id(outcome)][policy]])
            cells.append(f"{outcome.share(policy) or 0:.0f} % [{low:.0f}-{high:.0f}]")
        days = len(outcome.by_day["run-now"])
        yield f"| {outcome.zone} | {outcome.forecast} | {outcome.jobs} | {days} | " + " | ".join(cells) + " |"
    yield ""
    yield f"Paired differences in share of the oracle (same resampled days), {RULE} minus each other rule:"
    yield ""
    for outcome in ruled:
        parts = []
        for other in (r for r in RULES if r != RULE):
            for suffix in ("", " + correction"):
                a, b = rule_policy(RULE) + suffix, rule_policy(other) + suffix
                pairs = zip(samples[id(outcome)][a], samples[id(outcome)][b], strict=True)
                low, high = interval([x[1] - y[1] for x, y in pairs])
                point = (outcome.share(a) or 0) - (outcome.share(b) or 0)
                corrected = "with" if suffix else "without"
                parts.append(f"vs {other} {corrected} correction {point:+.1f} points [{low:+.1f}, {high:+.1f}]")
        yield f"- {outcome.zone} {outcome.forecast}: " + "; ".join(parts)
    if RULES_MIN_SAVINGS != DEFAULT_MIN_SAVINGS:
        return
    yield ""
    yield "## The defaults (every option at its default; the README's table)"
    yield ""
    yield (
        f"Re-plan rule {RULE}, min_savings {RULES_MIN_SAVINGS:g} %, forecast_correction auto (on where the "
        "provider publishes its past forecasts: the published GB forecasts; persistence has no provider "
        "publishing it). 95 % intervals from resampling whole submission days."
    )
    yield ""
    yield "| zone | forecast | jobs | days | reduction vs run-now | share of the oracle's reduction | oracle |"
    yield "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
    for outcome in ruled:
        policy = defaults_policy(outcome.zone, outcome.forecast)
        drawn = samples[id(outcome)][policy]
        r_low, r_high = interval([r for r, _ in drawn])
        s_low, s_high = interval([share for _, share in drawn])
        yield (
            f"| {outcome.zone} | {outcome.forecast} | {outcome.jobs} | {len(outcome.by_day['run-now'])} | "
            f"{outcome.reduction(policy) or 0:.1f} % [{r_low:.1f}-{r_high:.1f}] | "
            f"{outcome.share(policy) or 0:.0f} % [{s_low:.0f}-{s_high:.0f}] | "
            f"{outcome.reduction('oracle') or 0:.1f} % |"
        )


def goals(outcomes: list[Outcome]) -> Iterator[str]:
    """The issue's goals, checked against what was measured."""
    for outcome in outcomes:
        if outcome.forecast == "perfect":
            shares = [outcome.share(p) for p in ("plan-once", "greenflow re-plan")]
            ok = all(s is not None and abs(s - 100) < 0.05 for s in shares)
            yield (
                f"{'met' if ok else 'NOT met'}: {outcome.zone}, perfect forecast: plan-once and greenflow reach "
                f"{shares[0]:.2f} % and {shares[1]:.2f} % of the oracle (a check of the planner: 100 %)"
            )
    for outcome in outcomes:
        if outcome.zone == "GB" and outcome.forecast == "published":
            share = outcome.share("greenflow re-plan + correction") or 0.0
            yield (
                f"{'met' if share >= 75 else 'NOT met'}: GB, published forecast: greenflow reaches {share:.1f} % of "
                f"the oracle's reduction (goal >= 75 %; plan-once {outcome.share('plan-once') or 0:.1f} %)"
            )
    for outcome in outcomes:
        if outcome.product is not None:
            moments, values, differ, worst = outcome.product
            yield (
                f"{'met' if values and worst < 5.0 else 'NOT met'}: the correction scored here is the one tasks run: "
                f"at {moments} decision times on the shipped GB trace, `Lifecycle`'s path (trace forecast, "
                f"`issued_history`, `history`, `correct()`) gives the replay's corrected values for "
                f"{values - differ:,} of {values:,} slots; the largest difference is {worst:.2f} gCO2e/kWh "
                f"(the product reads {lookback(7, timedelta(hours=HORIZON_H)).days} days of history, "
                "the replay all of it)"
            )
    for outcome in outcomes:
        if outcome.forecast == "perfect":
            continue
        mine = outcome.reduction("greenflow re-plan + correction") or 0.0
        once, wait = outcome.reduction("plan-once") or 0.0, outcome.reduction("threshold-wait") or 0.0
        ok = mine > once and mine > wait
        headline = "" if outcome.forecast == HEADLINE.get(outcome.zone) else " (not the zone's headline forecast)"
        yield (
            f"{'met' if ok else 'NOT met'}: {outcome.zone}, {outcome.forecast}{headline}: greenflow {mine:.2f} % vs "
            f"plan-once {once:.2f} % and threshold-wait {wait:.2f} %"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="eight weeks of EM submissions, fewer timing runs")
    parser.add_argument("--ablation", action="store_true", help="also replay the correction variants")
    parser.add_argument("--data", help="folder holding electricitymaps/ and gb/ (default ../shared/data)")
    parser.add_argument(
        "--spatial",
        action="store_true",
        help="replay only the spatial + temporal comparison (four EM zones) and write its section into --out, "
        "keeping the rest of the file",
    )
    parser.add_argument(
        "--zones",
        help="comma-separated zones to replay (e.g. GB for the published GB forecasts alone); the subset's "
        "report goes to benchmarks/results/savings-subset.md unless --out is given",
    )
    parser.add_argument(
        "--interruptible",
        action="store_true",
        help="replay only interruptible jobs (4/8/24 h, slack 12/24/48 h) with the segment planner, into "
        "benchmarks/results/savings-interruptible.md unless --out is given",
    )
    parser.add_argument(
        "--rules-min-savings",
        type=float,
        default=DEFAULT_MIN_SAVINGS,
        help=f"the minimum saving the re-plan rules and the defaults are replayed with (default "
        f"{DEFAULT_MIN_SAVINGS:g}, the product's); the defaults table is written only at the product's default",
    )
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--out", help="report file (default benchmarks/results/savings.md)")
    args = parser.parse_args(argv)
    global RULES_MIN_SAVINGS  # read by the replay processes, which fork after this
    RULES_MIN_SAVINGS = args.rules_min_savings
    zones = (*EM_ZONES, "GB") if not args.zones else tuple(z.strip() for z in args.zones.split(",") if z.strip())
    unknown = sorted(set(zones) - {*EM_ZONES, "GB"})
    if unknown:
        parser.error(f"--zones: unknown zone(s) {', '.join(unknown)}; use some of {', '.join((*EM_ZONES, 'GB'))}")
    if args.zones and args.spatial:
        parser.error("--zones does not apply to --spatial (which replays the four EM zones together)")
    if args.interruptible and (args.spatial or args.ablation):
        parser.error("--interruptible is a mode of its own: give it without --spatial or --ablation")
    results = REPO / "benchmarks" / "results"
    # A subset must not overwrite the full report it would only partly reproduce.
    if args.interruptible:
        name = "savings-interruptible-subset.md" if args.zones else "savings-interruptible.md"
        args.out = args.out or str(results / name)
        return run_interruptible(args, zones, data_dir(args.data))
    args.out = args.out or str(results / ("savings-subset.md" if args.zones else "savings.md"))
    root = data_dir(args.data)
    began = time.perf_counter()
    out = Path(args.out)
    if args.spatial:
        spatial_tasks = [(kind, str(root), args.quick) for kind in ("perfect", "persistence")]
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            by_kind = list(pool.map(replay_spatial, spatial_tasks))
        spatial = sorted((o for kind in by_kind for o in kind), key=lambda o: (EM_ZONES.index(o.home), o.forecast))
        for kind in by_kind:
            print(f"  replayed {kind[0].forecast}: {kind[0].jobs} jobs, {kind[0].seconds:.0f} s", file=sys.stderr)
        section = spatial_report(spatial, args.quick, time.perf_counter() - began)
        print(section)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(merge_section(out.read_text() if out.is_file() else "", section))
        return 0
    tasks = [
        (zone, kind, str(root), args.quick, args.ablation)
        for zone in EM_ZONES
        if zone in zones
        for kind in ("persistence", "perfect")
    ]
    if "GB" in zones:
        tasks += [
            ("GB", kind, str(root), args.quick, args.ablation) for kind in ("published", "persistence", "perfect")
        ]
    order = {
        (zone, kind): index
        for index, (zone, kind, *_) in enumerate(
            [(z, k) for z in (*EM_ZONES, "GB") for k in ("perfect", "persistence", "published")]
        )
    }
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        outcomes = sorted(pool.map(replay, tasks), key=lambda o: order[(o.zone, o.forecast)])
    for outcome in outcomes:
        summary = f"{outcome.jobs} jobs, {outcome.calls:,} plans, {outcome.seconds:.0f} s"
        print(f"  replayed {outcome.zone} {outcome.forecast}: {summary}", file=sys.stderr)
    timings = time_planner(300 if args.quick else 3000)
    text = report(outcomes, timings, args, time.perf_counter() - began)
    kept = kept_section(out)
    if kept is not None and not args.zones:  # replayed separately with --spatial: keep it
        text = merge_section(text, kept)
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
