"""The spatial-shifting example DAG through ``dag.test()`` from the DAGs folder (the trigger runs in-process).

The route's choice is not written down here: it is derived from the shipped traces with the core planner
at the replay time the route planned at, and checked against the alternatives the route recorded.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from greenflow.airflow.carbon_aware_base import ENTRY_XCOM_KEY
from greenflow.airflow.routed import ROUTE_XCOM_KEY
from greenflow.intensity.providers.trace import TraceProvider
from greenflow.ledger import Entry, Ledger
from greenflow.planning import Candidate, plan

pytestmark = pytest.mark.xdist_group("airflow-dagtest")
DAG_ID = "greenflow_example_spatial"


def _run(dagbag: Any) -> tuple[Any, dict[str, str | None], Any]:
    dag = dagbag.get_dag(DAG_ID)
    # The replay clock runs from the DAG run's start at 3600x: parsing three years of hourly CSV in the
    # route's first plan would eat hours of the replayed night. Load the traces first (same process).
    warm = TraceProvider(now=datetime(2023, 3, 17, 23, tzinfo=UTC))
    for region in dag.get_task("choose_region").routes.regions:
        warm.forecast(region, hours=1)
    run = dag.test()
    states = {ti.task_id: (ti.state and str(ti.state)) for ti in run.get_task_instances()}
    return run, states, dag


def _xcom(run: Any, task_id: str, key: str = "return_value") -> Any:
    ti = next(t for t in run.get_task_instances() if t.task_id == task_id)
    return ti.xcom_pull(task_ids=task_id, key=key)


def _only(ledger: Ledger, task_id: str) -> Entry:
    [entry] = [e for e in ledger.entries() if e.task_id == task_id]
    return entry


def test_the_route_defers_then_trains_only_in_the_greener_region(dagbag: Any, gf_ledger: Ledger) -> None:
    started = datetime.now(UTC)
    run, states, dag = _run(dagbag)
    assert run.state == "success"
    route_task = dag.get_task("choose_region")
    routes: dict[str, str] = route_task.routes.to_dict()
    home = route_task.routes.home

    entry = _only(gf_ledger, "choose_region")
    route = entry.extra["route"]
    chosen_region, chosen_task = route["region"], route["task_id"]

    # It waited in the triggerer and resumed at the chosen start.
    assert entry.decision == "deferred" and entry.planned_start > entry.requested_at
    assert route["resumed"]["fired"] in ("planned_start", "latest_start")
    assert entry.energy_kwh is None and "meters and records its own run" in entry.measurement_notes["reason"]

    # The choice follows from the data: the planner on the shipped traces, at the replay time the route
    # planned at, picks the same region (unless a refresh moved the start earlier, which the entry says).
    provider = TraceProvider(now=entry.requested_at)
    candidates = [Candidate(r, provider.forecast(r, start=entry.requested_at, hours=16)) for r in routes]
    expected = plan(
        candidates,
        duration=timedelta(hours=2),
        earliest=entry.requested_at,
        max_delay=timedelta(hours=12),
        min_savings_pct=5,
        now=entry.requested_at,
    )
    if route["resumed"]["moved_earlier_from"] is None:
        assert chosen_region == expected.region
    assert expected.region != home  # the example is worth showing: the greener region is not the home one

    # Every region is recorded with its expected intensity and emissions; the chosen one is the lowest.
    alternatives = {a["region"]: a for a in route["alternatives"]}
    assert set(alternatives) == set(routes)
    for region, option in alternatives.items():
        assert option["task_id"] == routes[region]
        assert option["expected_g"] == pytest.approx(3.0 * option["expected_gco2_per_kwh"])
    assert chosen_region == min(alternatives, key=lambda r: alternatives[r]["expected_gco2_per_kwh"])
    assert entry.region == chosen_region and chosen_task == routes[chosen_region]
    assert entry.extra["plan"]["savings_pct"] >= 5

    # Branching: the chosen region's task ran, the others were skipped; the report saw the route.
    assert states[chosen_task] == "success" and states["report"] == "success"
    assert {t for t in routes.values() if t != chosen_task} == {t for t, s in states.items() if s == "skipped"}
    pushed = _xcom(run, "choose_region", ROUTE_XCOM_KEY)
    assert pushed == {
        "region": chosen_region,
        "task_id": chosen_task,
        "start_at": entry.planned_start.isoformat(),
        "entry_id": entry.entry_id,
    }
    assert _xcom(run, "choose_region", ENTRY_XCOM_KEY) == entry.entry_id
    assert _xcom(run, "report")["result"]["region"] == chosen_region

    # The routed task ran in the chosen region at once under the route's decision, linked to the route's
    # entry: the wait it records is the route's (hence "deferred"), not one it planned and took itself.
    trained = _only(gf_ledger, chosen_task)
    assert trained.region == chosen_region and trained.decision == "deferred"
    assert trained.extra["route"]["entry_id"] == entry.entry_id
    assert trained.extra["route"]["gate_task_id"] == "choose_region" and trained.extra["route"]["home"] == home
    assert trained.requested_at == entry.requested_at and trained.planned_start == entry.planned_start
    assert trained.deferred_seconds == entry.deferred_seconds
    assert "runs at once, the route did the waiting" in trained.extra["decision_reason"]
    assert _window_triggers(since=started) == 1  # the route's wait only: the routed task never deferred
    assert [e.task_id for e in gf_ledger.entries()] == ["choose_region", chosen_task]
    assert gf_ledger.verify().ok


def _window_triggers(*, since: datetime) -> int:
    """How many carbon-window deferrals the metadata DB holds from ``since`` on (dag.test() keeps the rows)."""
    from airflow.models.trigger import Trigger
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        query = select(func.count()).where(
            Trigger.classpath.like("%CarbonWindowTrigger"), Trigger.created_date >= since
        )
        return int(session.scalar(query) or 0)
