"""CarbonAwareBashOperator: the ``greenflow run`` command it builds (no secret on the command line), and a
routed bash task run for real (its command under ``greenflow run``) outside a DAG run."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk import DAG
from airflow.sdk.exceptions import TaskDeferred

from greenflow.airflow.carbon_aware_base import ENTRY_XCOM_KEY
from greenflow.airflow.identity import identity_from_context
from greenflow.airflow.operators.bash import CarbonAwareBashOperator
from greenflow.airflow.operators.gate import GreenGateOperator
from greenflow.airflow.operators.greenflow_run_command import greenflow_run_command
from greenflow.airflow.routed import ROUTE_XCOM_KEY
from greenflow.airflow.spec_params import runtime_spec
from greenflow.ledger import Budget, Entry, Identity, Ledger
from greenflow.lifecycle import Lifecycle


def _lifecycle(spec_args: dict[str, Any], options: dict[str, Any], conn: str | None = None) -> Lifecycle:
    spec, provider = runtime_spec(spec_args, options, conn)
    return Lifecycle(spec, Identity("airflow", "d", "r", "t"), provider=provider)


def test_credentials_go_in_the_environment_not_the_command(monkeypatch: pytest.MonkeyPatch, make_context: Any) -> None:
    conn = {"conn_type": "greenflow_electricitymaps", "password": "em-secret-789", "host": "http://127.0.0.1:9/v3"}
    monkeypatch.setenv("AIRFLOW_CONN_EM", json.dumps(conn))
    args = {
        "region": "DE",
        "provider": "electricitymaps",
        "expected_duration": "30m",
        "budget": "gpu",
        "estimate": "20g",
    }
    lifecycle = _lifecycle(args, {"emission_factor": "direct"}, "em")
    decision = lifecycle._decision(  # a plan for DE without calling the API
        lifecycle.now(), lifecycle.now(), lifecycle.now(), "DE", "run_now", "test"
    )
    context = make_context(task_id="package", try_number=2)
    run = greenflow_run_command(
        lifecycle,
        decision,
        identity_from_context(context),
        "python pack.py --out 'a b'",
        ledger_url="sqlite:////tmp/l.db",
        provider_options={"emission_factor": "direct"},
    )
    argv = shlex.split(run.command)
    assert argv[1:4] == ["-m", "greenflow.cli", "run"]
    assert argv[argv.index("--attempt") + 1] == "2" and argv[argv.index("--task") + 1] == "package"
    assert argv[argv.index("--region") + 1] == "DE" and argv[argv.index("--max-delay") + 1] == "0s"
    assert argv[argv.index("--estimate") + 1] == "20.0g" and argv[argv.index("--budget") + 1] == "gpu"
    assert "emission_factor=direct" in argv
    assert argv[-3:][1:] == ["-c", "python pack.py --out 'a b'"]
    assert "em-secret-789" not in run.command
    assert argv[argv.index("--decision") + 1] == "env:GREENFLOW_DECISION"
    handed_over = json.loads(run.env.pop("GREENFLOW_DECISION"))
    assert handed_over == decision.to_dict()  # the operator's plan, wait and reservation travel to greenflow run
    assert "em-secret-789" not in json.dumps(handed_over)
    assert run.env == {
        "GREENFLOW_LEDGER_URL": "sqlite:////tmp/l.db",
        "GREENFLOW_ELECTRICITYMAPS_TOKEN": "em-secret-789",
        "GREENFLOW_ELECTRICITYMAPS_URL": "http://127.0.0.1:9/v3",
    }


def test_a_replay_hands_greenflow_run_its_current_time() -> None:
    started = datetime.now(UTC).isoformat()
    options = {"now": "2022-06-01T00:00Z", "speed": 3600, "replay_started_at": started}
    lifecycle = _lifecycle({"region": "ES", "provider": "trace"}, options)
    decision = lifecycle.plan()
    run = greenflow_run_command(
        lifecycle,
        decision,
        Identity("airflow", "d", "r", "t"),
        "true",
        ledger_url="sqlite://",
        provider_options=options,
    )
    argv = shlex.split(run.command)
    replay = [a for a in argv if a.startswith("now=")]
    assert len(replay) == 1 and not any(a.startswith(("speed=", "replay_started_at=")) for a in argv)


def test_greenflow_run_gets_the_regions_home_first_whichever_was_chosen() -> None:
    options = {"now": "2022-06-01T00:00Z"}
    lifecycle = _lifecycle({"region": "ES", "regions": ["NO", "BR"], "provider": "trace"}, options)
    now = lifecycle.now()
    decision = lifecycle._decision(now, now, now, "NO", "run_now", "test")  # NO chosen, without planning
    argv = shlex.split(
        greenflow_run_command(
            lifecycle,
            decision,
            Identity("airflow", "d", "r", "t"),
            "true",
            ledger_url="sqlite://",
            provider_options=options,
        ).command
    )
    regions = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--region"]
    assert regions == ["ES", "NO", "BR"]  # greenflow run counts the savings against ES, the home


# -- a routed bash task ------------------------------------------------------------------------------
ROUTES = {"GB": "package_gb", "ES": "package_es", "US-CAL-CISO": "package_us"}
NIGHT = datetime(2023, 3, 17, 23, tzinfo=UTC)  # Spain's solar morning is the greenest start of this night


@dataclass
class RunTaskInstance:
    """A task instance of one DAG run: pushes to, and pulls from, the run's shared XComs."""

    task_id: str
    run_xcoms: dict[tuple[str, str], Any]
    dag_id: str = "routed_bash"
    run_id: str = "manual__2024-01-01T00:00:00+00:00"
    try_number: int = 1
    map_index: int = -1
    xcoms: dict[str, Any] = field(default_factory=dict)

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value
        self.run_xcoms[(self.task_id, key)] = value

    def xcom_pull(self, task_ids: str, key: str) -> Any:
        return self.run_xcoms.get((task_ids, key))


def _routed_dag(**task_args: Any) -> tuple[GreenGateOperator, dict[str, CarbonAwareBashOperator]]:
    frozen = {"now": NIGHT.isoformat()}  # the route's clock stands still: it branches at once
    # The tasks replay the same night at 3600x: planning for themselves, they would defer.
    replay = {**frozen, "speed": 3600, "replay_started_at": datetime.now(UTC).isoformat()}
    with DAG("routed_bash", schedule=None, start_date=datetime(2024, 1, 1, tzinfo=UTC)):
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
            task_id: CarbonAwareBashOperator(
                task_id=task_id,
                bash_command=f"echo packaged in {region}",
                region=region,
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


def _run_route(gf_ledger: Ledger, run_xcoms: dict[tuple[str, str], Any]) -> tuple[dict[str, Any], Entry, Entry]:
    """Route, then run the routed bash task; returns the route's XCom, the route's entry and the task's."""
    gf_ledger.budgets.set(Budget.parse("gpu", "1kg", "month"))
    gate, tasks = _routed_dag(budget="gpu", estimate="20g")
    gate.execute({"ti": RunTaskInstance("choose_region", run_xcoms)})
    pushed = run_xcoms[("choose_region", ROUTE_XCOM_KEY)]
    route_entry = gf_ledger.get(pushed["entry_id"])
    assert route_entry is not None and route_entry.decision == "deferred" and pushed["region"] != "GB"

    chosen = tasks[pushed["task_id"]]
    ti = RunTaskInstance(chosen.task_id, run_xcoms)
    # BashOperator exports these as AIRFLOW_CTX_*: how `greenflow run` knows it runs for an Airflow task.
    context = {"ti": ti, "task_instance": ti, "dag_run": SimpleNamespace(run_id=ti.run_id)}
    # It would plan a wait of its own at this replay hour (TaskDeferred); started by the route, it runs at once.
    output = chosen.execute(context)
    assert output == f"packaged in {pushed['region']}"  # the command's last line stays the XCom
    [packaged] = [e for e in gf_ledger.entries() if e.task_id == chosen.task_id]
    assert ti.xcoms[ENTRY_XCOM_KEY] == packaged.entry_id
    return pushed, route_entry, packaged


def test_a_routed_bash_task_runs_at_once_under_the_routes_decision(
    gf_ledger: Ledger, run_xcoms: dict[tuple[str, str], Any]
) -> None:
    pushed, route_entry, packaged = _run_route(gf_ledger, run_xcoms)
    # Written by `greenflow run` with the route's decision: its region, request time and start.
    assert packaged.region == pushed["region"]
    assert packaged.decision == "deferred"  # the wait happened upstream, in the route
    assert packaged.requested_at == route_entry.requested_at
    assert packaged.planned_start == route_entry.planned_start
    assert f"routed by choose_region (entry {route_entry.entry_id})" in packaged.extra["decision_reason"]
    assert packaged.extra["plan"] == route_entry.extra["plan"]
    # Savings are counted against the route's home, as for a routed CarbonAwareOperator.
    assert packaged.policy["regions"][0] == "GB"
    # The operator reserved before the command; greenflow run settled the reservation with the entry.
    assert packaged.reservation_id is not None and packaged.estimate_g == 20.0
    assert gf_ledger.budgets.status("gpu").reserved == 0.0


def test_the_entry_greenflow_run_writes_links_to_the_route(
    gf_ledger: Ledger, run_xcoms: dict[tuple[str, str], Any]
) -> None:
    pushed, route_entry, packaged = _run_route(gf_ledger, run_xcoms)
    route = packaged.extra.get("route") or {}
    assert route.get("entry_id") == route_entry.entry_id and route.get("gate_task_id") == "choose_region"
    assert route.get("home") == "GB" and route.get("start_at") == pushed["start_at"]


def test_a_bash_task_the_route_did_not_name_plans_for_itself(
    gf_ledger: Ledger, run_xcoms: dict[tuple[str, str], Any]
) -> None:
    gate, tasks = _routed_dag()
    gate.execute({"ti": RunTaskInstance("choose_region", run_xcoms)})
    pushed = run_xcoms[("choose_region", ROUTE_XCOM_KEY)]
    # The route named another task: the chosen region's task, started anyway (e.g. by hand), is not routed.
    run_xcoms[("choose_region", ROUTE_XCOM_KEY)] = {**pushed, "task_id": "package_gb"}
    task = tasks[pushed["task_id"]]
    with pytest.raises(TaskDeferred):  # it plans for itself and, its window being ahead, waits
        task.execute({"ti": RunTaskInstance(task.task_id, run_xcoms)})
    assert [e.task_id for e in gf_ledger.entries()] == ["choose_region"]
