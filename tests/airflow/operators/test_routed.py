"""A task started by a region route: it runs at the route's start, records the route, and refuses a wrong region.

The route is a real GreenGateOperator planning over the shipped traces (a March 2023 night: Spain's solar
morning is the greenest start); the routed task reads its ``greenflow_route`` XCom as in a DAG run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from greenflow.airflow.operators.carbon_aware import CarbonAwareOperator
from greenflow.airflow.operators.gate import GreenGateOperator
from greenflow.airflow.routed import ROUTE_XCOM_KEY
from greenflow.ledger import Budget, Entry, Ledger

ROUTES = {"GB": "train_gb", "ES": "train_es", "US-CAL-CISO": "train_us"}
NIGHT = datetime(2023, 3, 17, 23, tzinfo=UTC)


@dataclass
class RunTaskInstance:
    """A task instance of one DAG run: pushes to, and pulls from, the run's shared XComs."""

    task_id: str
    run_xcoms: dict[tuple[str, str], Any]
    dag_id: str = "routed_dag"
    run_id: str = "manual__2024-01-01T00:00:00+00:00"
    try_number: int = 1
    map_index: int = -1
    xcoms: dict[str, Any] = field(default_factory=dict)

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value
        self.run_xcoms[(self.task_id, key)] = value

    def xcom_pull(self, task_ids: str, key: str) -> Any:
        return self.run_xcoms.get((task_ids, key))


def train(region: str) -> str:
    sum(range(50_000))
    return f"trained in {region}"


def _dag(*, bind: dict[str, str] | None = None, **task_args: Any) -> tuple[GreenGateOperator, dict[str, Any]]:
    """The route and its tasks; ``bind`` overrides the region a task declares (a DAG mistake)."""
    frozen = {"now": NIGHT.isoformat()}  # no replay speed: the route's clock stands still, it branches at once
    # The tasks replay the same night at 3600x, so a task planning for itself defers (to a wall-clock wake).
    replay = {**frozen, "speed": 3600, "replay_started_at": datetime.now(UTC).isoformat()}
    with DAG("routed_dag", schedule=None, start_date=datetime(2024, 1, 1, tzinfo=UTC)):
        gate = GreenGateOperator(
            task_id="choose_region",
            regions=ROUTES,
            provider="trace",
            provider_options=frozen,
            expected_duration="2h",
            max_delay="12h",
            min_savings=5,
        )
        tasks = {
            task_id: CarbonAwareOperator(
                task_id=task_id,
                python_callable=train,
                op_args=[region],
                region=(bind or {}).get(task_id, region),
                provider="trace",
                provider_options=replay,
                expected_duration="2h",
                **task_args,
            )
            for region, task_id in ROUTES.items()
        }
        gate >> list(tasks.values())  # type: ignore[func-returns-value]
    return gate, tasks


@pytest.fixture
def run_xcoms(monkeypatch: pytest.MonkeyPatch) -> dict[tuple[str, str], Any]:
    """The DAG run's XComs; branching itself is Airflow's (it needs a real task instance), so it is skipped."""
    monkeypatch.setattr(GreenGateOperator, "do_branch", lambda self, context, branches: branches)
    return {}


def _route(gate: GreenGateOperator, xcoms: dict[tuple[str, str], Any], ledger: Ledger) -> tuple[dict[str, Any], Entry]:
    gate.execute({"ti": RunTaskInstance("choose_region", xcoms)})
    pushed = xcoms[("choose_region", ROUTE_XCOM_KEY)]
    entry = ledger.get(pushed["entry_id"])
    assert entry is not None
    return pushed, entry


def _only(ledger: Ledger, task_id: str) -> Entry:
    [entry] = [e for e in ledger.entries() if e.task_id == task_id]
    return entry


def test_the_routed_task_runs_at_once_and_its_entry_links_to_the_route(
    gf_ledger: Ledger, run_xcoms: dict[tuple[str, str], Any]
) -> None:
    gf_ledger.budgets.set(Budget.parse("gpu", "1kg", "month"))
    gate, tasks = _dag(budget="gpu", estimate="20g")
    pushed, route_entry = _route(gate, run_xcoms, gf_ledger)
    assert route_entry.decision == "deferred" and pushed["region"] != "GB"  # the route waited for a greener region

    # The routed task would plan a wait of its own at this hour; started by the route, it runs at once.
    chosen = tasks[pushed["task_id"]]
    value = chosen.execute({"ti": RunTaskInstance(chosen.task_id, run_xcoms)})

    assert value == f"trained in {pushed['region']}"
    trained = _only(gf_ledger, chosen.task_id)
    assert trained.region == pushed["region"]
    # The wait happened upstream: the entry carries the route's request time and start, hence "deferred".
    assert trained.decision == "deferred"
    assert trained.requested_at == route_entry.requested_at and trained.planned_start == route_entry.planned_start
    assert trained.deferred_seconds == (route_entry.planned_start - route_entry.requested_at).total_seconds()
    route = trained.extra["route"]
    assert route["entry_id"] == route_entry.entry_id and route["gate_task_id"] == "choose_region"
    assert route["start_at"] == pushed["start_at"] and route["home"] == "GB"
    assert "routed by choose_region" in trained.extra["decision_reason"]
    # The route's plan came along (the budget's estimate uses its intensity); savings count against home.
    assert trained.extra["plan"] == route_entry.extra["plan"]
    assert trained.policy["regions"][0] == "GB"
    # The budget still reserves and settles in the task that does the work.
    assert trained.reservation_id is not None and trained.estimate_g == 20.0
    status = gf_ledger.budgets.status("gpu")
    assert status.reserved == 0.0


def test_a_retry_of_the_routed_task_runs_at_once_and_is_ran_now(
    gf_ledger: Ledger, run_xcoms: dict[tuple[str, str], Any]
) -> None:
    gate, tasks = _dag()
    pushed, route_entry = _route(gate, run_xcoms, gf_ledger)
    chosen = tasks[pushed["task_id"]]
    tries: list[str] = []

    def flaky(region: str) -> str:
        tries.append(region)
        if len(tries) == 1:
            raise RuntimeError("NCCL timeout")
        return f"trained in {region}"

    chosen.python_callable = flaky
    with pytest.raises(RuntimeError, match="NCCL timeout"):
        chosen.execute({"ti": RunTaskInstance(chosen.task_id, run_xcoms)})
    assert chosen.execute({"ti": RunTaskInstance(chosen.task_id, run_xcoms, try_number=2)}) == (
        f"trained in {pushed['region']}"
    )

    first, second = sorted((e for e in gf_ledger.entries() if e.task_id == chosen.task_id), key=lambda e: e.attempt)
    # The first try is the one the route waited for; the second waited for nothing (it used to be
    # "deferred" too, with the route's wait counted again).
    assert (first.attempt, first.decision) == (1, "failed") and first.requested_at == route_entry.requested_at
    assert first.deferred_seconds == (route_entry.planned_start - route_entry.requested_at).total_seconds()
    assert (second.attempt, second.decision, second.deferred_seconds) == (2, "ran_now", 0.0)
    assert second.region == pushed["region"] and second.extra["route"]["entry_id"] == route_entry.entry_id
    assert second.requested_at >= route_entry.planned_start  # its own request, after the route's start
    assert second.extra["first_requested_at"] == route_entry.requested_at.isoformat()
    assert "try 2 of a task routed by choose_region" in second.extra["decision_reason"]


def test_a_task_the_route_did_not_name_plans_for_itself(
    gf_ledger: Ledger, run_xcoms: dict[tuple[str, str], Any]
) -> None:
    gate, tasks = _dag()
    pushed, _ = _route(gate, run_xcoms, gf_ledger)
    # The route named another task: the chosen region's task, started anyway (e.g. by hand), is not routed.
    run_xcoms[("choose_region", ROUTE_XCOM_KEY)] = {**pushed, "task_id": "train_gb"}
    task = tasks[pushed["task_id"]]
    with pytest.raises(TaskDeferred):  # it plans for itself and, its window being ahead, waits
        task.execute({"ti": RunTaskInstance(task.task_id, run_xcoms)})
    assert [e.task_id for e in gf_ledger.entries()] == ["choose_region"]


def test_a_route_to_a_task_bound_to_another_region_fails_naming_both(
    gf_ledger: Ledger, run_xcoms: dict[tuple[str, str], Any]
) -> None:
    gate, _ = _dag()
    pushed, _ = _route(gate, run_xcoms, gf_ledger)
    # The DAG binds the chosen region's task to GB by mistake.
    _, wrong = _dag(bind={pushed["task_id"]: "GB"})
    task = wrong[pushed["task_id"]]
    with pytest.raises(AirflowFailException) as failed:
        task.execute({"ti": RunTaskInstance(task.task_id, run_xcoms)})
    message = str(failed.value)
    assert f"routed region {pushed['region']!r} to {task.task_id}" in message and "region='GB'" in message
    assert [e.task_id for e in gf_ledger.entries()] == ["choose_region"]  # nothing ran, nothing recorded


def test_a_route_whose_entry_is_elsewhere_runs_at_once_and_says_the_wait_is_unknown(
    gf_ledger: Ledger, run_xcoms: dict[tuple[str, str], Any]
) -> None:
    _, tasks = _dag()
    start = datetime(2023, 3, 18, 9, tzinfo=UTC)
    run_xcoms[("choose_region", ROUTE_XCOM_KEY)] = {
        "region": "ES",
        "task_id": "train_es",
        "start_at": start.isoformat(),
        "entry_id": "in-another-ledger",
    }
    tasks["train_es"].execute({"ti": RunTaskInstance("train_es", run_xcoms)})
    trained = _only(gf_ledger, "train_es")
    assert trained.decision == "ran_now" and trained.planned_start == start and trained.requested_at == start
    assert trained.extra["route"]["requested_at"] is None
    assert "not in this task's ledger" in (trained.forecast_note or "")


def test_a_routed_taskflow_task_follows_the_route_too(gf_ledger: Ledger, run_xcoms: dict[tuple[str, str], Any]) -> None:
    from airflow.sdk import task

    gate, _ = _dag()
    pushed, route_entry = _route(gate, run_xcoms, gf_ledger)
    replay = {"now": NIGHT.isoformat(), "speed": 3600, "replay_started_at": datetime.now(UTC).isoformat()}
    with DAG("routed_dag", schedule=None, start_date=datetime(2024, 1, 1, tzinfo=UTC)):
        again = GreenGateOperator(
            task_id="choose_region", regions=ROUTES, provider="trace", provider_options={"now": NIGHT.isoformat()}
        )

        @task.carbon_aware(
            task_id=pushed["task_id"], region=pushed["region"], provider="trace", provider_options=replay
        )
        def fine_tune() -> str:
            return "tuned"

        routed = fine_tune()
        again >> routed  # type: ignore[operator]
    operator = routed.operator
    assert operator.execute({"ti": RunTaskInstance(operator.task_id, run_xcoms)}) == "tuned"
    tuned = _only(gf_ledger, pushed["task_id"])
    assert tuned.decision == "deferred" and tuned.extra["route"]["entry_id"] == route_entry.entry_id
