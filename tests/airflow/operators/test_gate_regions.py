"""GreenGateOperator with regions={region: task_id}: spatial shifting as a branch.

Checked at parse time (the mapping, the regions' names for the provider, what a route cannot take), at
run time (the routed tasks must be directly downstream), and outside a DAG run: plan across the regions,
defer to the chosen start, resume on a fresh instance, branch, one ledger entry, the ``greenflow_route`` XCom.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from greenflow.airflow.carbon_aware_base import ENTRY_XCOM_KEY
from greenflow.airflow.operators.gate import GreenGateOperator
from greenflow.airflow.routed import ROUTE_XCOM_KEY
from greenflow.airflow.triggers.window import CarbonWindowTrigger
from greenflow.errors import InvalidInput
from greenflow.ledger import Entry, Identity, Ledger

ROUTES = {"GB": "train_gb", "ES": "train_es", "US-CAL-CISO": "train_us"}
# A March 2023 night in the shipped traces: GB dirty until the next evening, Spain's solar morning ahead.
NIGHT = datetime(2023, 3, 17, 23, tzinfo=UTC)


def _route(now: datetime = NIGHT, speed: float | None = 36_000, **overrides: Any) -> GreenGateOperator:
    options: dict[str, Any] = {"now": now.isoformat()}
    if speed is not None:
        options |= {"speed": speed, "replay_started_at": datetime.now(UTC).isoformat()}
    args: dict[str, Any] = {
        "task_id": "choose_region",
        "regions": ROUTES,
        "provider": "trace",
        "provider_options": options,
        "expected_duration": "2h",
        "max_delay": "12h",
        "min_savings": 5,
        # The shipped GB trace holds two forecast snapshots a day: at 23:00 the latest is 10.5 h old.
        "max_staleness": "14h",
    }
    return GreenGateOperator(**{**args, **overrides})


@pytest.fixture
def branched(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The branches taken (Airflow's do_branch needs a real task instance; what it does is Airflow's)."""
    taken: list[Any] = []

    def record(self: GreenGateOperator, context: Any, branches: Any) -> Any:
        taken.append(branches)
        return branches

    monkeypatch.setattr(GreenGateOperator, "do_branch", record)
    return taken


def _routed(operator: GreenGateOperator) -> GreenGateOperator:
    """``operator`` inside a DAG with every routed task directly downstream."""
    from airflow.providers.standard.operators.empty import EmptyOperator

    with DAG("unit_dag", schedule=None, start_date=datetime(2024, 1, 1, tzinfo=UTC)):
        operator >> [EmptyOperator(task_id=task_id) for task_id in ROUTES.values()]  # type: ignore[func-returns-value]
    return operator


def _entries(ledger: Ledger, task_id: str) -> list[Entry]:
    return [e for e in ledger.entries() if e.task_id == task_id]


# -- parse time ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "message", "fix"),
    [
        ({"regions": {}}, "regions={} is not a mapping", "first region is home"),
        ({"regions": {"GB": 3}}, "regions['GB']=3 is not a task id", "downstream task"),
        ({"regions": {"GB": "a", "ES": "a"}}, "'GB' and 'ES' both route to task 'a'", "its own task"),
        ({"regions": {"GB": "a", "XX": "b"}}, "no shipped trace for region 'XX'", "ES"),
        ({"rules": [{"branch": "a", "when": {}}]}, "both rules/otherwise and a regions", "another"),
        ({"otherwise": "a"}, "both rules/otherwise and a regions", "another"),
        ({"region": "GB"}, "region='GB' given with a regions mapping", "first key"),
        ({"budget": "gpu"}, "does not take a budget", "routed tasks"),
        ({"estimate": "20g"}, "reserves nothing", "remove them"),
        ({"expected_energy": "20g"}, "expected_energy='20g' is not a positive energy", "3kWh"),
        ({"max_delay": "-1h"}, "max_delay='-1h' is negative", "zero or more"),
    ],
)
def test_a_bad_route_fails_at_parse_time_naming_the_value_and_the_fix(
    overrides: dict[str, Any], message: str, fix: str
) -> None:
    with pytest.raises(InvalidInput) as error:
        _route(**overrides)
    assert message in error.value.message and fix in (error.value.fix or "")


def test_the_gate_needs_rules_or_a_regions_mapping() -> None:
    with pytest.raises(InvalidInput, match="needs rules= \\(governance\\) or a regions"):
        GreenGateOperator(task_id="gate", region="GB", provider="trace")
    with pytest.raises(InvalidInput, match="expected_energy applies to a regions"):
        GreenGateOperator(
            task_id="gate", rules=[{"branch": "a", "when": {}}], region="GB", provider="trace", expected_energy="1kWh"
        )


def test_a_routed_task_that_is_not_directly_downstream_fails_the_run(make_context: Any, gf_ledger: Ledger) -> None:
    from airflow.providers.standard.operators.empty import EmptyOperator

    with DAG("unit_dag", schedule=None, start_date=datetime(2024, 1, 1, tzinfo=UTC)):
        route = _route()
        gb, es = EmptyOperator(task_id="train_gb"), EmptyOperator(task_id="train_es")
        route >> [gb, es]  # type: ignore[func-returns-value]
        es >> EmptyOperator(task_id="train_us")  # downstream of the route, but not directly
    with pytest.raises(AirflowFailException, match=r"\['train_us'\], which are not directly downstream"):
        route.execute(make_context(task_id="choose_region"))
    assert gf_ledger.entries() == []  # nothing planned or recorded for a broken DAG


# -- run time ------------------------------------------------------------------------------------------
def test_defers_to_the_greener_region_then_branches_there_with_one_entry(
    gf_ledger: Ledger, make_context: Any, branched: list[Any]
) -> None:
    context = make_context(task_id="choose_region")
    with pytest.raises(TaskDeferred) as deferred:
        _routed(_route(expected_energy="3kWh")).execute(context)
    trigger = deferred.value.trigger
    assert isinstance(trigger, CarbonWindowTrigger) and deferred.value.method_name == "execute_complete"
    planned = trigger.decision
    assert planned["action"] == "defer" and planned["region"] in ROUTES
    assert planned["region"] != "GB"  # the traces' home grid is the dirtiest of the three that night
    assert gf_ledger.entries() == [] and branched == []  # the wait holds nothing and records nothing yet

    # The trigger fires at the start: a fresh instance resumes from the event alone.
    fired = {**planned, "wake_at": (datetime.now(UTC) - timedelta(seconds=1)).isoformat()}
    event = {"decision": fired, "fired": "planned_start", "refreshes": 3, "moved_earlier_from": None}
    _routed(_route(expected_energy="3kWh")).execute_complete(context, event)

    chosen_task = ROUTES[planned["region"]]
    assert branched == [chosen_task]
    [entry] = _entries(gf_ledger, "choose_region")
    assert entry.decision == "deferred" and entry.region == planned["region"]
    assert entry.planned_start.isoformat() == planned["start_at"] and entry.energy_kwh is None
    route = entry.extra["route"]
    assert route["resumed"] == {"fired": "planned_start", "refreshes": 3, "moved_earlier_from": None}
    assert [a["region"] for a in route["alternatives"]] == list(ROUTES)
    chosen = next(a for a in route["alternatives"] if a["region"] == planned["region"])
    assert all(chosen["expected_g"] <= a["expected_g"] for a in route["alternatives"])
    assert context["ti"].xcoms[ROUTE_XCOM_KEY] == {
        "region": planned["region"],
        "task_id": chosen_task,
        "start_at": planned["start_at"],
        "entry_id": entry.entry_id,
    }
    assert context["ti"].xcoms[ENTRY_XCOM_KEY] == entry.entry_id


def test_branches_at_once_when_the_best_window_is_now(
    gf_ledger: Ledger, make_context: Any, branched: list[Any]
) -> None:
    # Midday in Spain: its solar window is open now, so the route branches without deferring.
    noon = datetime(2023, 3, 18, 12, tzinfo=UTC)
    context = make_context(task_id="choose_region")
    assert _routed(_route(noon, speed=None)).execute(context) == "train_es"
    assert branched == ["train_es"]
    [entry] = _entries(gf_ledger, "choose_region")
    assert entry.decision == "ran_now" and entry.region == "ES" and entry.deferred_seconds == 0
    assert "resumed" not in entry.extra["route"]


def test_below_the_minimum_it_starts_now_in_the_greenest_region_now(
    gf_ledger: Ledger, make_context: Any, branched: list[Any]
) -> None:
    # Waiting must beat the best start *now* in any region by min_savings (95 % is out of reach): it starts
    # at once, in the region greenest now (moving region costs no delay), not at home.
    _routed(_route(speed=None, min_savings=95)).execute(make_context(task_id="choose_region"))
    [entry] = _entries(gf_ledger, "choose_region")
    alternatives = entry.extra["route"]["alternatives"]
    greenest_now = min(alternatives, key=lambda a: a["now_gco2_per_kwh"])["region"]
    assert greenest_now != "GB" and entry.region == greenest_now and branched == [ROUTES[greenest_now]]
    assert entry.decision == "ran_now" and "below the 95 % minimum" in entry.extra["decision_reason"]


def test_expected_emissions_are_unknown_without_an_energy_figure(
    gf_ledger: Ledger, make_context: Any, branched: list[Any]
) -> None:
    _routed(_route(speed=None)).execute(make_context(task_id="choose_region"))
    route = _entries(gf_ledger, "choose_region")[0].extra["route"]
    assert route["expected_energy_kwh"] is None and "no measured attempt" in route["energy_source"]
    assert all(a["expected_g"] is None and a["expected_gco2_per_kwh"] is not None for a in route["alternatives"])


def test_expected_emissions_use_the_routed_tasks_measured_history(
    gf_ledger: Ledger, make_context: Any, branched: list[Any]
) -> None:
    for run, kwh in (("r1", 2.0), ("r2", 4.0)):
        gf_ledger.append(Entry.for_attempt(Identity("airflow", "unit_dag", run, "train_es"), "ran_now", energy_kwh=kwh))
    _routed(_route(speed=None)).execute(make_context(task_id="choose_region"))
    route = _entries(gf_ledger, "choose_region")[0].extra["route"]
    assert route["expected_energy_kwh"] == 3.0 and "median of 2 measured attempts" in route["energy_source"]
    for option in route["alternatives"]:
        assert option["expected_g"] == pytest.approx(3.0 * option["expected_gco2_per_kwh"])
