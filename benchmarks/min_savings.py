"""What ``min_savings`` costs in carbon and what it buys in hours of delay: the data behind its default.

Run ``.venv/bin/python benchmarks/min_savings.py [--quick]``: replays the jobs of ``benchmarks/savings.py``
(submitted every hour, durations 1/4/8 h x slack 4/12/24 h) on the four Electricity Maps zones with the
persistence forecast, planning once at submission with ``greenflow.planning.plan`` for each minimum saving,
in two settings: **time-only** (the home zone alone) and **where and when** (all four zones, home first).
Emissions are scored on actuals. For each minimum it reports the reduction of total emissions against
running every job at once at home, the share of that reduction kept against a minimum of 0, the mean
delay (hours between submission and start) and the share of jobs that wait. Writes
``benchmarks/results/min_savings.md``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from savings import (
    EM_ZONES,
    REPO,
    Persistence,
    Planner,
    _prefix,
    all_known,
    data_dir,
    load_em,
    make_jobs,
    submission_range,
)

from greenflow.planning import plan

MINIMA = (0.0, 1.0, 2.0, 5.0, 10.0, 20.0)


@dataclass
class Tally:
    """Per minimum saving: emissions, delays and waits over every (job, home)."""

    emitted: float = 0.0
    baseline: float = 0.0
    delays_h: list[float] = field(default_factory=list)

    def reduction(self) -> float:
        return 100.0 * (1 - self.emitted / self.baseline)

    def waiting_share(self) -> float:
        return 100.0 * sum(1 for d in self.delays_h if d > 0) / len(self.delays_h)


def replay(quick: bool, root: Path) -> dict[str, dict[float, Tally]]:
    grids = [load_em(root, zone) for zone in EM_ZONES]
    planners = [Planner(Persistence(grid)) for grid in grids]
    prefixes = {grid.zone: _prefix(grid) for grid in grids}
    first, last = submission_range(grids[0], quick)
    jobs = make_jobs(all_known(grids), first, last)
    grid = grids[0]
    tallies = {setting: {m: Tally() for m in MINIMA} for setting in ("time-only", "where and when")}

    def cost(zone: str, start: int, length: int) -> float:
        prefix = prefixes[zone]
        return prefix[start + length] - prefix[start]

    for job in jobs:
        candidates = [planner.candidate(job.t0) for planner in planners]
        now = grid.moment(job.t0)
        duration = timedelta(seconds=job.length * grid.step)
        deadline = grid.moment(job.latest + job.length)
        for index, home in enumerate(EM_ZONES):
            ordered = [candidates[index], *(c for i, c in enumerate(candidates) if i != index)]
            base = cost(home, job.t0, job.length)
            for setting, offered in (("time-only", ordered[:1]), ("where and when", ordered)):
                for minimum in MINIMA:
                    result = plan(offered, duration=duration, deadline=deadline, now=now, min_savings_pct=minimum)
                    start = grid.slot(result.start)
                    tally = tallies[setting][minimum]
                    tally.emitted += cost(result.region, start, job.length)
                    tally.baseline += base
                    tally.delays_h.append((start - job.t0) * grid.step / 3600)
    return tallies


def report(tallies: dict[str, dict[float, Tally]], quick: bool, elapsed: float) -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    scope = "eight weeks of 2022" if quick else "2021-01-08 to 2023-12-31"
    lines = [
        f"# What min_savings costs and buys ({scope}, {stamp})",
        "",
        "Persistence forecast, plan once at submission, every zone as home, scored on actuals. "
        "`kept` is the reduction as a share of the reduction with no minimum; `delay` the mean hours "
        "from submission to start; `wait` the share of jobs that start later than submission.",
        "",
        "| setting | min_savings | reduction | kept | mean delay | jobs that wait |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for setting, by_minimum in tallies.items():
        top = by_minimum[0.0].reduction()
        for minimum, tally in by_minimum.items():
            kept = 100.0 * tally.reduction() / top if top else float("nan")
            lines.append(
                f"| {setting} | {minimum:g} % | {tally.reduction():.1f} % | {kept:.1f} % | "
                f"{statistics.fmean(tally.delays_h):.2f} h | {tally.waiting_share():.1f} % |"
            )
    lines += [
        "",
        f"{len(next(iter(tallies.values()))[0.0].delays_h):,} (job, home) pairs per row; took {elapsed:.0f} s "
        f"(Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="eight weeks of 2022 instead of three years")
    parser.add_argument("--data", help="the shared data folder (default ../shared/data, else greenflow/data)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "min_savings.md"))
    args = parser.parse_args()
    began = time.perf_counter()
    tallies = replay(args.quick, data_dir(args.data))
    text = report(tallies, args.quick, time.perf_counter() - began)
    Path(args.out).write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
