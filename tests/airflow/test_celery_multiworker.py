"""Many machines, real engines: Airflow 3 with CeleryExecutor, two Celery workers on two region queues.

One deployment for the module (see ``celery_harness``): Redis as the broker, PostgreSQL for the Airflow
metadata and for greenflow's ledger, worker ``gb@host`` consuming queue ``gb`` and worker ``no@host``
queue ``no``, each standing for the GPUs of one region.

* Spatial shifting: a GreenGateOperator route over GB and NO sends the training task to the NO worker,
  because the (shipped, real) data it replays says Norway's grid is much greener; the GB task is skipped.
* Shared budget: carbon-aware tasks on both workers at once reserve against ONE budget in the shared
  ledger; the budget admits only as many as its limit covers, the others are skipped with a
  ``skipped_budget`` entry, and the ledger verifies.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from greenflow.clock import parse_time
from greenflow.intensity.providers.trace import TraceProvider
from greenflow.ledger import Budget, EntryFilter, Ledger

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("airflow-celery"), pytest.mark.timeout(600)]


def _load_harness() -> Any:
    # tests/ is not a package: load the helper module by path, under a name no other module uses.
    name = "greenflow_tests_celery_harness"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parent / "celery_harness.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # before running it: dataclasses look their module up
        spec.loader.exec_module(module)
    return sys.modules[name]


harness = _load_harness()

SPATIAL_DAG = "greenflow_e2e_celery_spatial"
# As in the DAG file: the replayed moment, how long the work runs and how long the route may wait.
SPATIAL_NOW, SPATIAL_HOURS = "2023-03-18T06:00Z", 1 + 6
SPATIAL_CHECKED_HOURS = 48  # at 3600x the route must plan within ~48 s of the run's start (asserted below)
BUDGET_DAG = "greenflow_e2e_celery_budget"
BUDGET_NAME, BUDGET_LIMIT_G, ESTIMATE_G, BUDGET_TASKS = "celery-shared", 35.0, 10.0, 4  # as in the DAG file
QUEUES = ("gb", "no")


def _write_flat_trace(path: Path, value: float) -> None:
    """10-minute slots at ``value`` gCO2e/kWh from an hour ago to five hours ahead."""
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    lines = ["timestamp,gco2_per_kwh"]
    lines += [f"{(start + timedelta(minutes=10 * i)).strftime('%Y-%m-%dT%H:%M:%SZ')},{value}" for i in range(36)]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The running deployment, shared by this module's tests; stopped and its databases dropped at the end."""
    root = tmp_path_factory.mktemp("celery")
    trace = root / "trace.csv"
    _write_flat_trace(trace, 400.0)
    deployment = harness.CeleryAirflow(
        root=root,
        dag_files=[harness.E2E_DAGS / f"{name}.py" for name in (SPATIAL_DAG, BUDGET_DAG)],
        queues=QUEUES,
        concurrency=2,
        extra_env={"GREENFLOW_E2E_TRACE": str(trace)},
    )
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.stop()
        memory = deployment.memory
        if memory is not None:
            print(
                f"\ncelery cluster peak PSS {memory.peak_bytes / 2**20:.0f} MiB over {memory.peak_processes} processes"
            )


@pytest.fixture(scope="module")
def ledger(cluster: Any) -> Iterator[Ledger]:
    """The cluster's greenflow ledger on PostgreSQL, as the test reads it."""
    instance = Ledger(cluster.ledger_url)  # creates the schema the workers will write to
    yield instance
    instance.close()


def _route_xcom(cluster: Any, dag_id: str, run_id: str) -> dict[str, Any]:
    [(value,)] = cluster.query(
        "SELECT value FROM xcom WHERE dag_id = :d AND run_id = :r AND task_id = 'choose_region'"
        " AND key = 'greenflow_route'",
        d=dag_id,
        r=run_id,
    )
    decoded = json.loads(value) if isinstance(value, str) else value
    assert isinstance(decoded, dict), value
    return decoded


def test_route_sends_the_work_to_the_greener_regions_worker(cluster: Any, ledger: Ledger) -> None:
    # What the replayed data says, read without the planner: whenever in the two days after the replayed
    # start the route plans (it depends on how soon the task starts), NO is greener than GB at every hour.
    start = parse_time(SPATIAL_NOW, "now")
    dirtiest_no, cleanest_gb = 0.0, float("inf")
    for hour in range(SPATIAL_CHECKED_HOURS):
        trace = TraceProvider(now=start + timedelta(hours=hour))
        gb, no = ([p.value for p in trace.forecast(r, hours=SPATIAL_HOURS).points] for r in ("GB", "NO"))
        assert len(gb) >= 2 * SPATIAL_HOURS and len(no) >= SPATIAL_HOURS, (hour, len(gb), len(no))  # 30 min, 1 h
        known_gb, known_no = [v for v in gb if v is not None], [v for v in no if v is not None]
        assert len(known_gb) == len(gb) and len(known_no) == len(no), (hour, gb, no)
        cleanest_gb, dirtiest_no = min(cleanest_gb, *known_gb), max(dirtiest_no, *known_no)
    assert cleanest_gb > 2 * dirtiest_no, (cleanest_gb, dirtiest_no)
    ledger.budgets.set(Budget.parse("celery-route", "1kg", period="rolling:24h", scope=f"workflow:{SPATIAL_DAG}"))
    cluster.wait_for_dag(SPATIAL_DAG)
    run_id = cluster.trigger(SPATIAL_DAG)
    state = cluster.wait_for_run(SPATIAL_DAG, run_id, timeout=240)
    tis = cluster.task_instances(SPATIAL_DAG, run_id)
    assert state == "success", (tis, cluster.log_tails())

    assert tis["train_no"]["state"] == "success" and tis["train_gb"]["state"] == "skipped", tis
    assert tis["train_no"]["queue"] == "no" and str(tis["train_no"]["hostname"]).startswith("no@"), tis["train_no"]

    route = _route_xcom(cluster, SPATIAL_DAG, run_id)
    assert (route["region"], route["task_id"]) == ("NO", "train_no"), route
    entries = {e.task_id: e for e in ledger.entries(EntryFilter(workflow_id=SPATIAL_DAG, run_id=run_id))}
    assert set(entries) == {"choose_region", "train_no"}, entries  # the other region's task never started
    routed = entries["choose_region"]
    # The route planned (replay time) inside the span whose data was checked above.
    assert routed.requested_at is not None
    assert start <= routed.requested_at < start + timedelta(hours=SPATIAL_CHECKED_HOURS), routed.requested_at
    assert (routed.entry_id, routed.region) == (route["entry_id"], "NO")
    assert routed.extra["route"]["routes"] == {"GB": "train_gb", "NO": "train_no"}
    alternatives = {a["region"]: a for a in routed.extra["route"]["alternatives"]}
    assert set(alternatives) == {"GB", "NO"}, alternatives
    assert alternatives["NO"]["expected_g"] < alternatives["GB"]["expected_g"], alternatives
    trained = entries["train_no"]
    # The routed task runs at the route's start without waiting again: it is "deferred" exactly when the route waited.
    assert (trained.region, trained.decision, trained.budget) == ("NO", routed.decision, "celery-route"), trained
    assert trained.extra["route"]["entry_id"] == routed.entry_id
    assert ledger.verify().ok


def _overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return bool(a["start_date"] < b["end_date"] and b["start_date"] < a["end_date"])


def test_concurrent_tasks_on_both_workers_never_overspend_one_budget(cluster: Any, ledger: Ledger) -> None:
    ledger.budgets.set(
        Budget.parse(BUDGET_NAME, f"{BUDGET_LIMIT_G:g}g", period="rolling:24h", scope=f"workflow:{BUDGET_DAG}")
    )
    cluster.wait_for_dag(BUDGET_DAG)
    run_id = cluster.trigger(BUDGET_DAG)
    state = cluster.wait_for_run(BUDGET_DAG, run_id, timeout=300)
    tis = cluster.task_instances(BUDGET_DAG, run_id)
    assert state == "success", (tis, cluster.log_tails())

    entries = ledger.entries(EntryFilter(workflow_id=BUDGET_DAG, run_id=run_id))
    assert len(entries) == BUDGET_TASKS, [(e.task_id, e.decision) for e in entries]
    ran = [e for e in entries if e.decision == "ran_now"]
    refused = [e for e in entries if e.decision == "skipped_budget"]
    admissible = int(BUDGET_LIMIT_G // ESTIMATE_G)
    # Every admitted task held its reservation until all were decided, so exactly what the limit covers ran.
    decisions = sorted((e.task_id, e.decision) for e in entries)
    assert len(ran) == admissible and len(refused) == BUDGET_TASKS - admissible, decisions
    assert len(ran) * ESTIMATE_G <= BUDGET_LIMIT_G < (len(ran) + 1) * ESTIMATE_G
    assert all(e.budget == BUDGET_NAME and e.reservation_id for e in ran)
    assert all(tis[e.task_id]["state"] == "success" for e in ran), tis
    assert all(tis[e.task_id]["state"] == "skipped" for e in refused), tis

    # Each task ran on the worker of its queue; the admitted tasks ran at the same time on both workers.
    for task_id, ti in tis.items():
        queue = task_id.split("_")[1]
        assert ti["queue"] == queue, ti
        assert str(ti["hostname"]).startswith(f"{queue}@"), ti
    admitted = [tis[e.task_id] for e in ran]
    assert {ti["queue"] for ti in admitted} == set(QUEUES), admitted
    assert all(_overlap(a, b) for i, a in enumerate(admitted) for b in admitted[i + 1 :]), admitted

    # Every reservation settled to what its entry was charged (measured, or the estimate when nothing
    # could be measured); nothing is still held, and the budget was never overspent.
    status = ledger.budgets.status(BUDGET_NAME)
    assert status.open_reservations == 0 and status.reserved == 0, status.to_dict()
    assert status.settled == pytest.approx(sum(e.charged_g or 0.0 for e in ran)), status.to_dict()
    assert status.spent <= BUDGET_LIMIT_G, status.to_dict()
    report = ledger.verify()
    assert report.ok, report
