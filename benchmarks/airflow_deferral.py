"""Airflow deferral at scale, and what CarbonAwareOperator adds to a task that runs at once.

Part 1: N = 100 and 1000 carbon-aware tasks deferred at once on one region. Their CarbonWindowTriggers run
in one asyncio event loop, as Airflow's triggerer runs them (one process, every trigger a coroutine), each
in a fresh child process so the memory numbers are its own. The provider is ``ukgrid`` pointed at a local
fake Carbon Intensity API on 127.0.0.1 that counts the requests it serves; the shared forecast cache sits
on a SQLite ledger as in production. To see several refreshes in a short run, the provider's refresh
cadence (30 min in reality) is shortened to ``--refresh`` seconds for the run, and every trigger
re-plans at that cadence. Goal: forecast requests per refresh independent of N.

Part 2: the wall time CarbonAwareOperator adds, inside the task process, to a callable that runs at once
(plan + meter + ledger entry) over a plain PythonOperator running the same callable; both ``execute()``
with the same minimal task context, many times, median and p95 reported.

    python benchmarks/airflow_deferral.py            # writes benchmarks/results/airflow_deferral.md
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "airflow_deferral.md"


# -- a fake Carbon Intensity API ------------------------------------------------------------------------
class FakeUKGrid:
    """Serves ``/intensity/{from}/fw48h`` (96 half-hour slots, greenest ~3 h ahead) and counts requests."""

    def __init__(self) -> None:
        self.requests = 0
        self._lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else headers and body in two segments cost a 40 ms delayed ACK

            def do_GET(self) -> None:
                with api._lock:
                    api.requests += 1
                body = json.dumps({"data": _slots()}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def _slots() -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    start = now.replace(minute=0 if now.minute < 30 else 30, second=0, microsecond=0)
    slots = []
    for i in range(96):
        begin = start + timedelta(minutes=30 * i)
        value = 80 if 6 <= i < 10 else 250  # a green window 3-5 hours ahead
        slots.append(
            {
                "from": begin.strftime("%Y-%m-%dT%H:%MZ"),
                "to": (begin + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%MZ"),
                "intensity": {"forecast": value, "actual": None, "index": "moderate"},
            }
        )
    return slots


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- part 1: N deferred tasks in one event loop ---------------------------------------------------------
def child_triggers(n: int, refresh: float, duration: float) -> dict[str, Any]:
    """Run in a fresh process: N triggers for ``duration`` seconds; returns the measurements."""
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    from greenflow.airflow.identity import identity_to_dict
    from greenflow.airflow.spec_params import trigger_spec_kwargs
    from greenflow.airflow.triggers.window import CarbonWindowTrigger
    from greenflow.intensity.providers.ukgrid import UKGridProvider
    from greenflow.ledger import Identity, Ledger
    from greenflow.lifecycle import Lifecycle, shared_cache
    from greenflow.spec import CarbonSpec

    api = FakeUKGrid()
    # The one change for a short run: the provider publishes every `refresh` s instead of every 30 min.
    UKGridProvider.refresh_interval = timedelta(seconds=refresh)  # type: ignore[misc]
    options = {"base_url": api.url}
    spec = CarbonSpec.build(
        region="national", provider="ukgrid", provider_options=options, expected_duration="1h", max_delay="8h"
    )
    ledger = Ledger(os.environ["GREENFLOW_LEDGER_URL"])
    first = Lifecycle(spec, Identity("airflow", "bench", "run", "task-0"), ledger=ledger, cache=shared_cache(ledger))
    decision = first.plan()
    assert decision.action == "defer", decision.reason
    kwargs = [
        {
            "decision": decision.to_dict(),
            "spec": trigger_spec_kwargs(spec, options),
            "identity": identity_to_dict(Identity("airflow", "bench", "run", f"task-{i}")),
            "refresh_seconds": refresh,
        }
        for i in range(n)
    ]
    plans = {"count": 0}
    plan = Lifecycle.plan

    def counted_plan(self: Lifecycle, **kwargs: Any) -> Any:
        plans["count"] += 1  # only the triggers plan from here on: each call is one trigger's refresh
        return plan(self, **kwargs)

    Lifecycle.plan = counted_plan  # type: ignore[method-assign]
    requests_before = api.requests
    rss_before, cpu_before = _rss_mb(), _cpu_s()
    peak = {"rss": rss_before}
    fired: list[Any] = []

    async def consume(trigger: CarbonWindowTrigger) -> None:
        async for event in trigger.run():
            fired.append(event)

    async def sample_rss() -> None:
        while True:
            peak["rss"] = max(peak["rss"], _rss_mb())
            await asyncio.sleep(0.5)

    async def main() -> float:
        triggers = [CarbonWindowTrigger(**k) for k in kwargs]
        started = time.monotonic()
        tasks = [asyncio.create_task(consume(t)) for t in triggers]
        sampler = asyncio.create_task(sample_rss())
        await asyncio.sleep(duration)
        for task in [*tasks, sampler]:
            task.cancel()
        await asyncio.gather(*tasks, sampler, return_exceptions=True)
        return time.monotonic() - started

    elapsed = asyncio.run(main())
    cpu = _cpu_s() - cpu_before
    served = api.requests - requests_before
    api.close()
    return {
        "n": n,
        "elapsed_s": elapsed,
        "refresh_s": refresh,
        "refresh_periods": elapsed / refresh,
        "requests": served,
        "requests_per_refresh": served / (elapsed / refresh),
        "rss_before_mb": rss_before,
        "rss_peak_mb": peak["rss"],
        "cpu_s": cpu,
        "cpu_share_of_core": cpu / elapsed,
        "fired_early": len(fired),
        "plans": plans["count"],
    }


def run_triggers(n: int, refresh: float, duration: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "GREENFLOW_LEDGER_URL": f"sqlite:///{tmp}/ledger.db", "AIRFLOW_HOME": tmp}
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(n), "--refresh", str(refresh), "--duration", str(duration)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            raise SystemExit(f"child N={n} failed:\n{out.stderr[-4000:]}")
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        return result


# -- part 2: operator overhead --------------------------------------------------------------------------
def run_overhead(repeats: int) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "GREENFLOW_LEDGER_URL": f"sqlite:///{tmp}/ledger.db", "AIRFLOW_HOME": tmp}
        out = subprocess.run(
            [sys.executable, __file__, "--child-overhead", str(repeats)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            raise SystemExit(f"overhead child failed:\n{out.stderr[-4000:]}")
        rows: list[dict[str, Any]] = json.loads(out.stdout.strip().splitlines()[-1])
        return rows


def child_overhead(repeats: int) -> list[dict[str, Any]]:
    import logging

    logging.disable(logging.INFO)  # both operators log; keep the console out of the timing
    from airflow.providers.standard.operators.python import PythonOperator

    from greenflow.airflow.operators.carbon_aware import CarbonAwareOperator

    api = FakeUKGrid()
    requests_at: dict[str, float] = {}

    def work() -> int:
        return sum(range(10_000))

    class TI:
        dag_id, run_id, map_index = "bench", "run", -1

        def __init__(self, task_id: str, attempt: int) -> None:
            self.task_id, self.try_number = task_id, attempt

        def xcom_push(self, key: str, value: Any) -> None:
            return None

    def timed(make: Any, task_id: str) -> list[float]:
        samples = []
        for attempt in range(1, repeats + 1):
            op = make(task_id)
            context = {"ti": TI(task_id, attempt)}
            if attempt == 4:
                requests_at[task_id] = api.requests
            begin = time.perf_counter()
            op.execute(context)
            samples.append(time.perf_counter() - begin)
        requests_at[task_id] = (api.requests - requests_at[task_id]) / (repeats - 3)
        return samples[3:]  # the first runs pay imports and database creation

    variants = {
        "PythonOperator": lambda t: PythonOperator(task_id=t, python_callable=work),
        "CarbonAwareOperator, trace provider": lambda t: CarbonAwareOperator(
            task_id=t,
            python_callable=work,
            region="ES",
            provider="trace",
            provider_options={"now": "2022-06-01T12:00Z"},
            max_delay="0s",
        ),
        "CarbonAwareOperator, ukgrid (cached forecast)": lambda t: CarbonAwareOperator(
            task_id=t,
            python_callable=work,
            region="national",
            provider="ukgrid",
            provider_options={"base_url": api.url},
            max_delay="0s",
        ),
        "CarbonAwareOperator, ukgrid + budget reservation": lambda t: CarbonAwareOperator(
            task_id=t,
            python_callable=work,
            region="national",
            provider="ukgrid",
            provider_options={"base_url": api.url},
            max_delay="0s",
            budget="bench",
            estimate="1g",
        ),
    }
    from greenflow.airflow.ledger_access import open_ledger
    from greenflow.ledger import Budget

    open_ledger().budgets.set(Budget.parse("bench", "1t", "month"))
    rows = []
    for name, make in variants.items():
        task_id = "".join(c if c.isalnum() else "_" for c in name)
        samples = timed(make, task_id)
        samples.sort()
        rows.append(
            {
                "variant": name,
                "runs": len(samples),
                "median_ms": statistics.median(samples) * 1000,
                "p95_ms": samples[int(0.95 * (len(samples) - 1))] * 1000,
                "api_requests_per_task": requests_at[task_id],
            }
        )
    api.close()
    return rows


# -- report ---------------------------------------------------------------------------------------------
def report(deferral: list[dict[str, Any]], overhead: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        "# Airflow deferral benchmark",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"measured {datetime.now(UTC):%Y-%m-%d} while other test suites shared the machine.",
        "",
        "## N tasks deferred at once on one region (CarbonWindowTrigger, one event loop)",
        "",
        f"Provider `ukgrid` against a local fake API; refresh cadence shortened to {args.refresh:g} s "
        f"(30 min in reality); each run lasts {args.duration:g} s; forecast cache shared through a SQLite ledger.",
        "",
        "| N | refresh periods | re-plans | forecast requests | requests per refresh | RSS before (MB) "
        "| RSS peak (MB) | RSS per task (KB) | CPU (s) | CPU per re-plan (ms) | CPU, share of one core |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in deferral:
        per_task = (r["rss_peak_mb"] - r["rss_before_mb"]) * 1024 / r["n"]
        lines.append(
            f"| {r['n']} | {r['refresh_periods']:.1f} | {r['plans']} | {r['requests']} "
            f"| {r['requests_per_refresh']:.2f} | {r['rss_before_mb']:.0f} | {r['rss_peak_mb']:.0f} | {per_task:.0f} "
            f"| {r['cpu_s']:.1f} | {1000 * r['cpu_s'] / max(r['plans'], 1):.2f} "
            f"| {100 * r['cpu_share_of_core']:.0f} % |"
        )
    lines += [
        "",
        "Every trigger re-plans once per refresh (in a worker thread): the CPU column is N plans per period;",
        "at the real 30-minute cadence divide it by the number of periods for the cost of one refresh round.",
        "",
        "## Overhead of CarbonAwareOperator on a task that runs at once",
        "",
        "`execute()` of each operator on the same callable (sum of 10k integers), minimal task context, "
        "SQLite ledger; the difference is what greenflow adds inside the task process (plan, meter start/stop, "
        "one hash-chained ledger entry; with a budget also the reservation and its settlement). With `ukgrid` the "
        "lifecycle also asks the API for the actual intensity during the run (one request per task, here on "
        "127.0.0.1: add the real API's latency).",
        "",
        "| variant | runs | median (ms) | p95 (ms) | added vs PythonOperator, median (ms) | API requests per task |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    base = overhead[0]["median_ms"]
    for row in overhead:
        added = "—" if row is overhead[0] else f"{row['median_ms'] - base:.1f}"
        lines.append(
            f"| {row['variant']} | {row['runs']} | {row['median_ms']:.1f} | {row['p95_ms']:.1f} | {added} "
            f"| {row['api_requests_per_task']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--refresh", type=float, default=5.0)
    parser.add_argument("--duration", type=float, default=32.0)
    parser.add_argument("--repeats", type=int, default=43)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-overhead", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child_triggers(args.child, args.refresh, args.duration)))
        return
    if args.child_overhead:
        print(json.dumps(child_overhead(args.child_overhead)))
        return
    deferral = [run_triggers(n, args.refresh, args.duration) for n in args.n]
    overhead = run_overhead(args.repeats)
    text = report(deferral, overhead, args)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
