"""What a ``CarbonAwareOperator`` that runs at once adds to ``execute()`` over a ``PythonOperator``.

Measured the way a task runs: each sample is a fresh Python process (Airflow runs every task instance in
its own process) that imports the operators and builds the task, as the DAG file does, and then times
``execute()`` once: planning, metering, the hash-chained ledger entry written to a SQLite ledger that
already exists (and, for the budget row, the reservation and its settlement), plus whatever greenflow
imports or opens lazily on that first call. CPU time (user + system of the whole process while
``execute()`` runs, the meter's thread included) is the figure to compare; wall time on a shared machine
mostly measures the neighbours. Variants are interleaved so that load drifts hit them alike.

The first greenflow ORM statement in a process configures SQLAlchemy's mappers, and Airflow hooks that
event (``airflow.utils.orm_event_handlers``: import every Airflow model, once per process) wherever
``import airflow`` configured its ORM: a fresh process pays it inside greenflow's first ``execute()``; a
task process forked from a parent that already used Airflow's ORM (LocalExecutor workers, forked from the
scheduler) does not. ``--orm-configured`` measures the latter: each process configures Airflow's mappers
before the timing starts.

``--warm`` adds the in-process steady state (the same operator built and executed again and again in one
process), the number an earlier version of this benchmark reported, for comparison.

Issue 15's goal: under 15 ms CPU added to ``execute()`` over ``PythonOperator`` on SQLite.

    python benchmarks/operator_overhead.py [--runs 25] [--warm]   # writes benchmarks/results/operator_overhead.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "operator_overhead.md"
VARIANTS = (
    "PythonOperator",
    "CarbonAwareOperator, trace provider",
    "CarbonAwareOperator, ukgrid",
    "CarbonAwareOperator, ukgrid + budget reservation",
)


def _work() -> int:
    return sum(range(10_000))


class _TI:
    """The part of a task instance the operators touch."""

    dag_id, map_index, task_id, try_number = "bench", -1, "work", 1

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    def xcom_push(self, key: str, value: Any) -> None:
        return None


def _build(variant: str, api_url: str) -> Any:
    """The task as a DAG file declares it (imports included: the DAG file pays them)."""
    from airflow.providers.standard.operators.python import PythonOperator

    if variant == "PythonOperator":
        return PythonOperator(task_id="work", python_callable=_work)
    from greenflow.airflow.operators.carbon_aware import CarbonAwareOperator

    args: dict[str, Any] = {"task_id": "work", "python_callable": _work, "max_delay": "0s"}
    if "trace" in variant:
        args |= {"region": "ES", "provider": "trace", "provider_options": {"now": "2022-06-01T12:00Z"}}
    else:
        args |= {"region": "national", "provider": "ukgrid", "provider_options": {"base_url": api_url}}
    if "budget" in variant:
        args |= {"budget": "bench", "estimate": "1g"}
    return CarbonAwareOperator(**args)


def child(variant: str, api_url: str, run_id: str, repeats: int, orm_configured: bool) -> dict[str, Any]:
    """In a fresh process: build the task, then time ``execute()`` (first call, then ``repeats`` warm ones)."""
    import logging

    logging.disable(logging.INFO)  # both operators log; keep the console out of the timing
    cpu0, wall0 = time.process_time(), time.perf_counter()
    operator = _build(variant, api_url)
    parse_cpu = time.process_time() - cpu0
    parse_wall = time.perf_counter() - wall0
    if orm_configured:  # as in a process forked from one that used Airflow's ORM (see the module docstring)
        from airflow.models import import_all_models
        from sqlalchemy.orm import configure_mappers

        import_all_models()
        configure_mappers()
    samples = []
    for i in range(1 + repeats):
        context = {"ti": _TI(f"{run_id}-{i}")}
        cpu, wall = time.process_time(), time.perf_counter()
        operator.execute(context)
        samples.append((time.process_time() - cpu, time.perf_counter() - wall))
    warm = samples[4:] if repeats > 3 else []  # the first warm calls still fill caches
    return {
        "parse_cpu": parse_cpu,
        "parse_wall": parse_wall,
        "cpu": samples[0][0],
        "wall": samples[0][1],
        "warm_cpu": [c for c, _ in warm],
        "warm_wall": [w for _, w in warm],
    }


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(runs: int, warm: int, orm_configured: bool) -> dict[str, dict[str, list[float]]]:
    """``runs`` fresh processes per variant, interleaved; the SQLite ledger exists before the first."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from airflow_deferral import FakeUKGrid

    api = FakeUKGrid()
    results: dict[str, dict[str, list[float]]] = {v: {} for v in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "GREENFLOW_LEDGER_URL": f"sqlite:///{tmp}/ledger.db", "AIRFLOW_HOME": tmp}
        setup = (
            "from greenflow.ledger import Budget, Ledger; Ledger().budgets.set(Budget.parse('bench', '1t', 'month'))"
        )
        subprocess.run([sys.executable, "-c", setup], env=env, check=True)
        for i in range(runs + 1):
            for variant in VARIANTS:
                argv = [sys.executable, __file__, "--child", variant, "--api", api.url, "--run-id", f"r{i}"]
                argv += ["--warm-repeats", str(warm if i == runs else 0)]
                argv += ["--orm-configured"] if orm_configured else []
                out = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
                if out.returncode != 0:
                    raise SystemExit(f"{variant} failed:\n{out.stderr[-4000:]}")
                if i == 0:
                    continue  # warms the page cache and the bytecode
                sample = json.loads(out.stdout.strip().splitlines()[-1])
                row = results[variant]
                for key, value in sample.items():
                    row.setdefault(key, []).extend(value if isinstance(value, list) else [value])
    api.close()
    return results


def report(results: dict[str, dict[str, list[float]]], runs: int, orm_configured: bool) -> str:
    """The markdown table."""
    base = results["PythonOperator"]
    load = os.getloadavg()[0]
    flag = " --orm-configured" if orm_configured else ""
    orm = (
        "Airflow's mappers configured before the timing (a task process forked from a parent that used Airflow's ORM)"
        if orm_configured
        else "Airflow's mappers not configured yet (greenflow's first ORM statement runs Airflow's hook)"
    )
    lines = [
        f"# CarbonAwareOperator overhead on a task that runs at once ({orm})",
        "",
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, load average "
        f"{load:.1f}; {datetime.now(UTC):%Y-%m-%d}. `python benchmarks/operator_overhead.py --runs {runs}{flag}`: "
        f"{runs} fresh processes per row (what a task instance is), SQLite ledger, callable = sum of 10k "
        "integers, `max_delay=0s`. *execute()* is the first call in the process, ledger write included; "
        "*added* is the row's median (p90) minus PythonOperator's. *Parse* is building the task, which the "
        "DAG file does (imports included).",
        "",
        "| variant | execute() CPU median / p90 (ms) | added CPU median / p90 (ms) | execute() wall median (ms) "
        "| parse CPU median (ms) |",
        "|---|---:|---:|---:|---:|",
    ]
    for variant in VARIANTS:
        row = results[variant]
        cpu, wall = [1000 * v for v in row["cpu"]], [1000 * v for v in row["wall"]]
        base_cpu = [1000 * v for v in base["cpu"]]
        added_median = statistics.median(cpu) - statistics.median(base_cpu)
        added = "—" if row is base else f"{added_median:.1f} / {_pct(cpu, 0.9) - _pct(base_cpu, 0.9):.1f}"
        lines.append(
            f"| {variant} | {statistics.median(cpu):.1f} / {_pct(cpu, 0.9):.1f} | {added} "
            f"| {statistics.median(wall):.1f} | {1000 * statistics.median(row['parse_cpu']):.0f} |"
        )
    if base.get("warm_cpu"):
        lines += [
            "",
            "In-process steady state (the same process executing again and again: caches warm, ledger open):",
            "",
            "| variant | calls | CPU median / p90 (ms) | wall median (ms) |",
            "|---|---:|---:|---:|",
        ]
        for variant in VARIANTS:
            cpu = [1000 * v for v in results[variant]["warm_cpu"]]
            wall = [1000 * v for v in results[variant]["warm_wall"]]
            lines.append(
                f"| {variant} | {len(cpu)} | {statistics.median(cpu):.1f} / {_pct(cpu, 0.9):.1f} "
                f"| {statistics.median(wall):.1f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    """Measure and write the report (or, with ``--child``, one sample)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=25, help="fresh processes per variant")
    parser.add_argument("--warm", type=int, default=0, help="also time this many in-process repeats")
    parser.add_argument("--orm-configured", action="store_true", help="configure Airflow's mappers first")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--api", help=argparse.SUPPRESS)
    parser.add_argument("--run-id", help=argparse.SUPPRESS)
    parser.add_argument("--warm-repeats", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.api, args.run_id, args.warm_repeats, args.orm_configured)))
        return
    text = report(run(args.runs, args.warm, args.orm_configured), args.runs, args.orm_configured)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
