"""Airflow deferral at scale, and what CarbonAwareOperator adds to a task that runs at once.

Part 1 (real triggerer): N = 100 and 1000 mapped CarbonAwareOperator task instances deferred at once on
one region, held by a real ``airflow triggerer`` process (with ``airflow scheduler`` and ``airflow
dag-processor``) on a temporary AIRFLOW_HOME whose metadata database is a fresh PostgreSQL database
(``greenflow_bench_af`` on 127.0.0.1:5432, dropped afterwards). The DAG maps the operator over N indices
with provider ``ukgrid`` pointed at a local fake Carbon Intensity API that counts the requests it serves.
The scheduler expands the N instances; they sit in a pool with no slots, and the benchmark defers them all
at once by writing what ``defer()`` writes through the Execution API (one trigger row per instance built
from ``CarbonWindowTrigger.serialize()``, the instance ``deferred`` with ``next_method``): running N task
processes to their ``defer()`` is measured separately (``--real-n``) because on 2 shared cores it takes
seconds per task. The triggerer's process tree (supervisor + trigger runner) is sampled for RSS and CPU
over several refresh periods, the provider's refresh cadence being shortened to ``--refresh`` seconds in
the triggerer (a ``sitecustomize`` on its PYTHONPATH). Goal: forecast requests per refresh independent of N.

Part 1b (``--real-n``): the same DAG run for real (LocalExecutor + API server): how long N task processes
take to reach ``deferred`` on this machine, and the requests they cause.

Part 2 (one event loop): the same N triggers in one asyncio loop inside a child of the benchmark, for
comparison with the real triggerer (no Airflow supervisor, no DB polling).

What CarbonAwareOperator adds to a task that runs at once is measured by ``benchmarks/operator_overhead.py``
(one fresh process per sample, as Airflow runs a task instance, ledger write included).

    python benchmarks/airflow_deferral.py            # writes benchmarks/results/airflow_deferral.md
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
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


# -- part 1: a real `airflow triggerer` -----------------------------------------------------------------
BENCH_DB = "greenflow_bench_af"
PG_SERVER = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "test"}
DAG_ID = "greenflow_bench_deferral_{n}"
REAL_DAG_ID = "greenflow_bench_real_{n}"
DAG_FILE = """
\"\"\"Benchmark DAGs: CarbonAwareOperator mapped over N indices on ukgrid (a local fake API).\"\"\"
import os
from datetime import UTC, datetime

from airflow.sdk import DAG

from greenflow.airflow.operators.carbon_aware import CarbonAwareOperator

CARBON = {
    "region": "national",
    "provider": "ukgrid",
    "provider_options": {"base_url": os.environ["GREENFLOW_BENCH_API"]},
    "expected_duration": "1h",
    "max_delay": "8h",
}
DAGS = [("deferral", n, "bench_no_slots") for n in os.environ["GREENFLOW_BENCH_NS"].split(",")]
DAGS += [("real", n, "default_pool") for n in os.environ.get("GREENFLOW_BENCH_REAL_NS", "").split(",") if n]

for kind, n, pool in DAGS:
    with DAG(
        f"greenflow_bench_{kind}_{n}",
        schedule=None,
        start_date=datetime(2024, 1, 1, tzinfo=UTC),
        catchup=False,
        is_paused_upon_creation=False,
        max_active_tasks=5000,
    ):
        CarbonAwareOperator.partial(task_id="shard", python_callable=sum, pool=pool, **CARBON).expand(
            op_args=[[[i]] for i in range(int(n))]
        )
"""
# The one change for a short run, applied in every Airflow process: ukgrid publishes every N seconds.
SITECUSTOMIZE = """
import os
from datetime import timedelta

if os.environ.get("GREENFLOW_BENCH_REFRESH"):
    from greenflow.intensity.providers.ukgrid import UKGridProvider

    UKGridProvider.refresh_interval = timedelta(seconds=float(os.environ["GREENFLOW_BENCH_REFRESH"]))
"""


def _pg(dbname: str = "test") -> Any:
    import psycopg

    return psycopg.connect(**{**PG_SERVER, "dbname": dbname}, autocommit=True)


def _sql(query: str, *params: Any) -> list[tuple[Any, ...]]:
    with _pg(BENCH_DB) as conn:
        cursor = conn.execute(query, params)
        return list(cursor.fetchall()) if cursor.description else []


def _tree(pid: int) -> list[Any]:
    import psutil

    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _tree_usage(pid: int) -> tuple[float, float, float]:
    """RSS of the process tree (MB), its largest process's RSS (MB), and the tree's CPU seconds."""
    import psutil

    rss, largest, cpu = 0.0, 0.0, 0.0
    for proc in _tree(pid):
        try:
            mem = proc.memory_info().rss / 2**20
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        rss, largest, cpu = rss + mem, max(largest, mem), cpu + times.user + times.system
    return rss, largest, cpu


class AirflowStack:
    """A temporary AIRFLOW_HOME on a fresh PostgreSQL database, and the Airflow processes started on it."""

    def __init__(self, tmp: Path, api_url: str, args: argparse.Namespace) -> None:
        self.tmp, self.home = tmp, tmp / "airflow"
        (self.home / "dags").mkdir(parents=True)
        (self.home / "dags" / "greenflow_bench_deferral.py").write_text(DAG_FILE)
        site = tmp / "site"
        site.mkdir()
        (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
        self.port = _free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        self.env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.home / "dags"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg://postgres@127.0.0.1:5432/{BENCH_DB}",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": str(args.parallelism),
                "AIRFLOW__CORE__MAX_MAP_LENGTH": "5000",
                "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "5000",
                "AIRFLOW__TRIGGERER__CAPACITY": "5000",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.port}",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
                "GREENFLOW_LEDGER_URL": f"sqlite:///{tmp / 'ledger.db'}",
                "GREENFLOW_BENCH_API": api_url,
                "GREENFLOW_BENCH_NS": ",".join(str(n) for n in args.n),
                "GREENFLOW_BENCH_REAL_NS": ",".join(str(n) for n in args.real_n),
                "GREENFLOW_BENCH_REFRESH": str(args.refresh),
                "PYTHONPATH": os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])]),
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            }
        )
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def airflow(self, *argv: str, timeout: float = 600) -> None:
        """Run an ``airflow`` CLI command to completion."""
        out = subprocess.run(
            [str(Path(sys.executable).parent / "airflow"), *argv],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if out.returncode != 0:
            raise SystemExit(f"airflow {' '.join(argv)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")

    def start(self, name: str, *argv: str) -> int:
        """Start ``airflow <argv>`` in its own session; its log goes to ``<tmp>/<name>.log``."""
        log = (self.tmp / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            [str(Path(sys.executable).parent / "airflow"), *argv],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self.processes[name].pid

    def stop(self, name: str) -> None:
        """Stop one started process group (SIGTERM, then SIGKILL)."""
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.stop(name)

    def log_tail(self, name: str, chars: int | None = 3000) -> str:
        """The end of a started process's log (all of it with ``chars=None``)."""
        path = self.tmp / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return text if chars is None else text[-chars:]


def _wait(what: str, check: Any, timeout: float, stack: AirflowStack, poll: float = 2.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        for name, process in stack.processes.items():
            if process.poll() is not None:
                raise SystemExit(f"airflow {name} exited while waiting for {what}:\n{stack.log_tail(name)}")
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


def _states(dag_id: str) -> dict[str, int]:
    rows = _sql("select state, count(*) from task_instance where dag_id = %s and map_index >= 0 group by state", dag_id)
    return {str(state): int(count) for state, count in rows}


def _triggerer_alive() -> bool:
    rows = _sql(
        "select count(*) from job where job_type = 'TriggererJob' and end_date is null "
        "and latest_heartbeat > now() - interval '30 seconds'"
    )
    return bool(rows[0][0])


def _trigger_run(stack: AirflowStack, dag_id: str) -> None:
    _wait(f"{dag_id} to be parsed", lambda: _sql("select 1 from dag where dag_id = %s", dag_id), 300, stack)
    stack.airflow("dags", "trigger", dag_id)


def _finish(dag_id: str) -> None:
    """End the run: the triggerer drops triggers whose rows are gone."""
    _sql("update task_instance set state = 'failed', trigger_id = null where dag_id = %s", dag_id)
    _sql("delete from trigger where id not in (select trigger_id from task_instance where trigger_id is not null)")
    _sql("update dag_run set state = 'failed' where dag_id = %s", dag_id)


def measure_real_triggerer(stack: AirflowStack, api: FakeUKGrid, n: int, args: argparse.Namespace) -> dict[str, Any]:
    """N instances deferred at once (rows written as defer() writes them); the triggerer sampled."""
    dag_id = DAG_ID.format(n=n)
    pid = stack.start(f"triggerer-{n}", "triggerer")
    _wait("the triggerer's heartbeat", _triggerer_alive, 180, stack)
    _trigger_run(stack, dag_id)
    _wait(f"{n} scheduled instances", lambda: _states(dag_id).get("scheduled", 0) == n, 600, stack)
    time.sleep(5)  # the triggerer idles: its footprint with no trigger
    rss_idle, _, _ = _tree_usage(pid)
    arriving_from = datetime.now(UTC)
    began = time.monotonic()
    out = subprocess.run(
        [sys.executable, __file__, "--child-inject", dag_id, "--refresh", str(args.refresh)],
        env=stack.env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"injecting deferrals failed:\n{out.stderr[-4000:]}")
    injected = json.loads(out.stdout.strip().splitlines()[-1])
    inject_s = time.monotonic() - began
    picked = _wait(
        f"the triggerer to take {n} triggers",
        lambda: (_sql("select count(*) from trigger where triggerer_id is not null")[0][0] == n) or None,
        300,
        stack,
        poll=0.5,
    )
    assert picked
    pickup_s = time.monotonic() - began
    time.sleep(args.refresh)  # let every trigger start and settle into its refresh loop
    waiting_from = datetime.now(UTC)
    requests_before, (_, _, cpu_before) = api.requests, _tree_usage(pid)
    started = time.monotonic()
    peak_rss, peak_largest = 0.0, 0.0
    while time.monotonic() - started < args.duration:
        rss, largest, _ = _tree_usage(pid)
        peak_rss, peak_largest = max(peak_rss, rss), max(peak_largest, largest)
        time.sleep(0.5)
    elapsed = time.monotonic() - started
    _, _, cpu_after = _tree_usage(pid)
    served = api.requests - requests_before
    states = _states(dag_id)
    stack.stop(f"triggerer-{n}")
    _finish(dag_id)
    blocked = _loop_blocks(stack.log_tail(f"triggerer-{n}", None))
    arriving = [seconds for at, seconds in blocked if arriving_from <= at < waiting_from]
    waiting = [seconds for at, seconds in blocked if at >= waiting_from]
    return {
        "n": n,
        "deferred_by_benchmark": injected["deferred"],
        "inject_s": inject_s,
        "pickup_s": pickup_s,
        "elapsed_s": elapsed,
        "refresh_s": args.refresh,
        "refresh_periods": elapsed / args.refresh,
        "requests": served,
        "requests_per_refresh": served / (elapsed / args.refresh),
        "rss_idle_mb": rss_idle,
        "rss_peak_mb": peak_rss,
        "largest_process_peak_mb": peak_largest,
        "cpu_s": cpu_after - cpu_before,
        "cpu_share_of_core": (cpu_after - cpu_before) / elapsed,
        "still_deferred": states.get("deferred", 0),
        "loop_blocked_warnings": len(blocked),
        "loop_blocked_max_s": max((seconds for _, seconds in blocked), default=0.0),
        "loop_blocked_arriving": len(arriving),
        "loop_blocked_arriving_max_s": max(arriving, default=0.0),
        "loop_blocked_waiting": len(waiting),
        "loop_blocked_waiting_max_s": max(waiting, default=0.0),
        "states": states,
    }


BLOCKED = re.compile(r"^(\S+Z) .*Triggerer's async thread was blocked for ([0-9.]+) seconds", re.MULTILINE)


def _loop_blocks(log: str) -> list[tuple[datetime, float]]:
    """The triggerer's blocked-loop warnings (threshold 0.2 s): when each was logged and how long it was."""
    return [(datetime.fromisoformat(at), float(seconds)) for at, seconds in BLOCKED.findall(log)]


def child_inject(dag_id: str, refresh: float) -> dict[str, Any]:
    """In the stack's environment: defer every scheduled instance of ``dag_id`` as ``defer()`` would."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.trigger import Trigger
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    from greenflow.airflow.identity import identity_to_dict
    from greenflow.airflow.spec_params import trigger_spec_kwargs
    from greenflow.airflow.triggers.window import CarbonWindowTrigger
    from greenflow.ledger import Identity, Ledger
    from greenflow.lifecycle import Lifecycle, shared_cache
    from greenflow.spec import CarbonSpec

    options = {"base_url": os.environ["GREENFLOW_BENCH_API"]}
    spec = CarbonSpec.build(
        region="national", provider="ukgrid", provider_options=options, expected_duration="1h", max_delay="8h"
    )
    ledger = Ledger(os.environ["GREENFLOW_LEDGER_URL"])
    with create_session() as session:
        tis = session.scalars(
            select(TaskInstance).where(
                TaskInstance.dag_id == dag_id,
                TaskInstance.map_index >= 0,
                TaskInstance.state == TaskInstanceState.SCHEDULED,
            )
        ).all()
        for ti in tis:
            identity = Identity("airflow", dag_id, ti.run_id, ti.task_id, attempt=1, map_index=ti.map_index)
            decision = Lifecycle(spec, identity, ledger=ledger, cache=shared_cache(ledger)).plan()
            assert decision.action == "defer", decision.reason
            trigger = CarbonWindowTrigger(
                decision=decision.to_dict(),
                spec=trigger_spec_kwargs(spec, options),
                identity=identity_to_dict(identity),
                refresh_seconds=refresh,
            )
            row = Trigger.from_object(trigger)
            session.add(row)
            session.flush()
            ti.state = TaskInstanceState.DEFERRED
            ti.trigger_id = row.id
            ti.next_method = "execute_complete"
            ti.next_kwargs = None
    return {"deferred": len(tis)}


def measure_real_tasks(stack: AirflowStack, api: FakeUKGrid, n: int) -> dict[str, Any]:
    """N real task processes (LocalExecutor) run to their defer(); how long until all are deferred."""
    dag_id = REAL_DAG_ID.format(n=n)
    pid = stack.start(f"triggerer-real-{n}", "triggerer")
    _wait("the triggerer's heartbeat", _triggerer_alive, 180, stack)
    _wait(f"{dag_id} to be parsed", lambda: _sql("select 1 from dag where dag_id = %s", dag_id), 300, stack)
    requests_before = api.requests
    began = time.monotonic()
    stack.airflow("dags", "trigger", dag_id)
    first: dict[str, float] = {}

    def all_deferred() -> bool:
        states = _states(dag_id)
        if states.get("deferred") and "first" not in first:
            first["first"] = time.monotonic() - began
        if states.get("failed") or states.get("upstream_failed"):
            raise SystemExit(f"real tasks failed: {states}")
        return states.get("deferred", 0) == n

    _wait(f"{n} real instances deferred", all_deferred, 3600, stack, poll=1.0)
    elapsed = time.monotonic() - began
    rss, largest, _ = _tree_usage(pid)
    result = {
        "n": n,
        "to_all_deferred_s": elapsed,
        "to_first_deferred_s": first.get("first", elapsed),
        "per_task_s": elapsed / n,
        "requests": api.requests - requests_before,
        "triggerer_rss_mb": rss,
        "largest_process_mb": largest,
    }
    stack.stop(f"triggerer-real-{n}")
    _finish(dag_id)
    return result


def run_real_triggerer(args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Create the database, migrate, start the scheduler and DAG processor, measure each N, clean up."""
    api = FakeUKGrid()
    with _pg() as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {BENCH_DB}")
    tmp = Path(tempfile.mkdtemp(prefix="greenflow-bench-airflow-"))
    stack = AirflowStack(tmp, api.url, args)
    try:
        stack.airflow("db", "migrate", timeout=900)
        stack.airflow("pools", "set", "bench_no_slots", "0", "instances wait here until the benchmark defers them")
        stack.start("dag-processor", "dag-processor")
        stack.start("scheduler", "scheduler")
        if args.real_n:
            stack.start("api-server", "api-server", "--port", str(stack.port))
        triggerer = [measure_real_triggerer(stack, api, n, args) for n in args.n]
        real = [measure_real_tasks(stack, api, n) for n in args.real_n]
        return triggerer, real
    finally:
        stack.stop_all()
        api.close()
        with _pg() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}", file=sys.stderr)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- part 2: N deferred tasks in one event loop ---------------------------------------------------------
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

    lag = {"arriving": 0.0, "waiting": 0.0}

    async def probe_lag(started: float) -> None:
        # How late a 50 ms sleep wakes: the longest any callback (or the GIL) held the loop meanwhile.
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.05)
            late = loop.time() - before - 0.05
            phase = "arriving" if before - started < refresh else "waiting"
            lag[phase] = max(lag[phase], late)

    async def main() -> float:
        prober = asyncio.create_task(probe_lag(asyncio.get_running_loop().time()))
        await asyncio.sleep(0.2)
        started = time.monotonic()
        # As the triggerer does: each trigger built on the loop, its run() started as soon as it is built.
        tasks = []
        for k in kwargs:
            tasks.append(asyncio.create_task(consume(CarbonWindowTrigger(**k))))
            await asyncio.sleep(0)
        sampler = asyncio.create_task(sample_rss())
        await asyncio.sleep(duration)
        for task in [*tasks, sampler, prober]:
            task.cancel()
        await asyncio.gather(*tasks, sampler, prober, return_exceptions=True)
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
        "loop_lag_arriving_s": lag["arriving"],
        "loop_lag_waiting_s": lag["waiting"],
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


# -- report ---------------------------------------------------------------------------------------------
def report(
    triggerer: list[dict[str, Any]],
    real: list[dict[str, Any]],
    deferral: list[dict[str, Any]],
    args: argparse.Namespace,
) -> str:
    lines = [
        "# Airflow deferral benchmark",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"measured {datetime.now(UTC):%Y-%m-%d} while other test suites shared the machine.",
        "",
        "## N tasks deferred at once on one region, in a real `airflow triggerer`",
        "",
        "apache-airflow 3.3 `airflow triggerer` + `scheduler` + `dag-processor` on a fresh PostgreSQL metadata "
        "database. One DAG maps `CarbonAwareOperator` over N indices (provider `ukgrid` against a local fake API "
        "that counts requests; the forecast cache shared through a SQLite ledger). The scheduler expands the N "
        "instances into a pool with no slots; the benchmark then defers all of them at once by writing what "
        "`defer()` writes (a `CarbonWindowTrigger` row per instance, the instance `deferred`): real task processes "
        "reach `defer()` one after another, at the rate in the next table, not at once. Refresh cadence shortened "
        f"to {args.refresh:g} s in the triggerer (30 min in reality); sampled for {args.duration:g} s after every "
        "trigger was running. RSS and CPU are the triggerer's whole process tree (supervisor, trigger runner, log "
        "server); *idle* is the same tree before any trigger was assigned.",
        "",
        "| N | still deferred at end | pick-up (s) | refresh periods | forecast requests | requests per refresh "
        "| RSS idle (MB) | RSS peak (MB) | RSS per task (KB) | largest process peak (MB) | CPU (s) "
        "| CPU, share of one core | loop blocked while the N arrive (times, worst s) "
        "| loop blocked while they wait (times, worst s) | worst loop block, whole life (s) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in triggerer:
        per_task = (r["rss_peak_mb"] - r["rss_idle_mb"]) * 1024 / r["n"]
        lines.append(
            f"| {r['n']} | {r['still_deferred']} | {r['pickup_s']:.1f} | {r['refresh_periods']:.1f} | {r['requests']} "
            f"| {r['requests_per_refresh']:.2f} | {r['rss_idle_mb']:.0f} | {r['rss_peak_mb']:.0f} | {per_task:.0f} "
            f"| {r['largest_process_peak_mb']:.0f} | {r['cpu_s']:.1f} | {100 * r['cpu_share_of_core']:.0f} % "
            f"| {r['loop_blocked_arriving']}, {r['loop_blocked_arriving_max_s']:.2f} "
            f"| {r['loop_blocked_waiting']}, {r['loop_blocked_waiting_max_s']:.2f} | {r['loop_blocked_max_s']:.2f} |"
        )
    lines += [
        "",
        "*Pick-up*: from the start of writing the N trigger rows until the triggerer had claimed all of them. "
        "*Loop blocked*: the triggerer's own warnings that its event loop was blocked (threshold 0.2 s), by when "
        "they were logged: *while the N arrive* from the first trigger row written until one refresh period after "
        "the triggerer had claimed them all (loading, first plan), *while they wait* during the sampling; the "
        "*whole life* column also counts the triggerer's start-up. Stack dumps of the trigger runner (py-spy) "
        "taken during the long block while 1000 arrive found its loop thread in Airflow's own synchronous "
        '`self.log.info("trigger %s starting")` (`TriggerRunner.run_trigger`, apache-airflow 3.3.2), waiting for '
        "the supervisor process to drain the log pipe while the supervisor was busy in `build_trigger_workloads` "
        "(per-trigger metadata-database queries); greenflow's triggers build nothing on the loop (their work runs "
        "in greenflow's thread pool).",
        "",
    ]
    if real:
        lines += [
            "### Real task processes reaching `defer()`",
            "",
            f"The same DAG run for real: LocalExecutor (parallelism {args.parallelism}) and the API server's "
            "Execution API; every instance plans (one forecast fetch per refresh, shared through the ledger) "
            "and defers. Time from `airflow dags trigger` until all N were `deferred`.",
            "",
            "| N | first deferred (s) | all deferred (s) | per task (s) | forecast requests | triggerer RSS (MB) |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for r in real:
            lines.append(
                f"| {r['n']} | {r['to_first_deferred_s']:.0f} | {r['to_all_deferred_s']:.0f} | {r['per_task_s']:.2f} "
                f"| {r['requests']} | {r['triggerer_rss_mb']:.0f} |"
            )
        lines.append("")
    if deferral:
        lines += [
            "## For comparison: the same triggers in one event loop (no Airflow processes)",
            "",
            f"N `CarbonWindowTrigger`s run in one asyncio loop in a fresh child process; refresh {args.refresh:g} s, "
            f"{args.loop_duration:g} s.",
            "",
            "| N | refresh periods | re-plans | forecast requests | requests per refresh | RSS before (MB) "
            "| RSS peak (MB) | RSS per task (KB) | CPU (s) | CPU per re-plan (ms) | CPU, share of one core "
            "| worst loop lag while arriving (s) | worst loop lag while waiting (s) |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in deferral:
            per_task = (r["rss_peak_mb"] - r["rss_before_mb"]) * 1024 / r["n"]
            lines.append(
                f"| {r['n']} | {r['refresh_periods']:.1f} | {r['plans']} | {r['requests']} "
                f"| {r['requests_per_refresh']:.2f} | {r['rss_before_mb']:.0f} | {r['rss_peak_mb']:.0f} "
                f"| {per_task:.0f} | {r['cpu_s']:.1f} | {1000 * r['cpu_s'] / max(r['plans'], 1):.2f} "
                f"| {100 * r['cpu_share_of_core']:.0f} % | {r['loop_lag_arriving_s']:.2f} "
                f"| {r['loop_lag_waiting_s']:.2f} |"
            )
        lines += [
            "",
            "Every trigger re-plans once per refresh (in a worker thread): the CPU column is N plans per period;",
            "at the real 30-minute cadence divide it by the number of periods for the cost of one refresh round.",
            "*Loop lag*: how late a 50 ms sleep on the same loop woke, worst case, during the first refresh period",
            "(the N triggers built and started one after another, as the triggerer does) and after it.",
            "",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--real-n", type=int, nargs="*", default=[100], help="real task processes to defer()")
    parser.add_argument("--parallelism", type=int, default=8, help="LocalExecutor parallelism for --real-n")
    parser.add_argument("--refresh", type=float, default=5.0)
    parser.add_argument("--duration", type=float, default=40.0, help="seconds the real triggerer is sampled")
    parser.add_argument("--loop-duration", type=float, default=32.0, help="seconds of the one-loop comparison")
    parser.add_argument("--skip-loop", action="store_true", help="leave out the one-loop comparison")
    parser.add_argument("--keep", action="store_true", help="keep the temporary AIRFLOW_HOME (logs)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the markdown report")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-inject", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child_triggers(args.child, args.refresh, args.loop_duration)))
        return
    if args.child_inject:
        print(json.dumps(child_inject(args.child_inject, args.refresh)))
        return
    triggerer, real = run_real_triggerer(args)
    deferral = [] if args.skip_loop else [run_triggers(n, args.refresh, args.loop_duration) for n in args.n]
    text = report(triggerer, real, deferral, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
