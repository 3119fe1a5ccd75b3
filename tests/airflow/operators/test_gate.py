"""GreenGateOperator: picks a path from the intensity now and the budget, records the choice and its inputs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from greenflow.airflow.carbon_aware_base import ENTRY_XCOM_KEY
from greenflow.airflow.operators.gate import GreenGateOperator
from greenflow.errors import InvalidInput
from greenflow.ledger import Budget, Ledger

RULES = [
    {"branch": "full", "when": {"max_intensity": 200, "min_remaining": "100g"}},
    {"branch": "reduced", "when": {"min_remaining": "10g"}},
]


def _gate(now: str, **overrides: Any) -> GreenGateOperator:
    args: dict[str, Any] = {
        "task_id": "gate",
        "rules": RULES,
        "otherwise": None,
        "region": "ES",
        "provider": "trace",
        "provider_options": {"now": now},
        "expected_duration": "1h",
        "max_delay": "12h",
        "budget": "validation",
    }
    return GreenGateOperator(**{**args, **overrides})


@pytest.mark.parametrize(
    ("now", "spent", "expected", "outcome"),
    [
        ("2022-06-01T13:00Z", 0.0, ["full"], "ran_now"),  # Spanish solar noon: clean
        ("2022-06-01T22:00Z", 0.0, ["reduced"], "degraded"),  # night: over 300 g/kWh
        ("2022-06-01T13:00Z", 295.0, None, "skipped_budget"),  # budget all but spent
    ],
)
def test_choice_follows_intensity_and_budget(
    gf_ledger: Ledger, make_context: Any, now: str, spent: float, expected: list[str] | None, outcome: str
) -> None:
    gf_ledger.budgets.set(Budget.parse("validation", "300g", "day"))
    if spent:
        from greenflow.ledger import Identity

        gf_ledger.budgets.reserve("validation", Identity("airflow", "d", "r", "other"), spent, estimate_source="test")
    context = make_context(task_id="gate")
    assert _gate(now).choose_branch(context) == expected

    [entry] = [e for e in gf_ledger.entries() if e.task_id == "gate"]
    assert entry.decision == outcome
    assert context["ti"].xcoms[ENTRY_XCOM_KEY] == entry.entry_id
    gate = entry.extra["gate"]
    assert gate["choice"]["branch"] == expected
    assert gate["inputs"]["intensity_now"] is not None
    assert gate["inputs"]["budget"]["spent"] == pytest.approx(spent)
    assert gate["policy"]["rules"][0]["when"] == RULES[0]["when"]
    assert entry.energy_kwh is None and "runs none itself" in entry.measurement_notes["reason"]
    assert entry.forecast_hash  # the decision's forecast is kept, as for every greenflow decision


def test_rules_that_read_a_budget_need_one() -> None:
    with pytest.raises(InvalidInput, match="read a budget but no budget is named"):
        _gate("2022-06-01T13:00Z", budget=None)


def test_the_intensity_rules_work_without_a_budget(gf_ledger: Ledger, make_context: Any, midnight: datetime) -> None:
    gate = _gate(midnight.isoformat(), budget=None, rules=[{"branch": "full", "when": {"green_now": True}}])
    assert gate.choose_branch(make_context(task_id="gate")) is None  # midnight: a greener window is coming
    [entry] = gf_ledger.entries()
    assert entry.extra["gate"]["inputs"]["green_now"] is False and entry.budget is None


def test_a_gate_that_branches_at_once_records_no_wait(gf_ledger: Ledger, make_context: Any, midnight: datetime) -> None:
    """Issue 15: the plan said "wait until noon", the gate branched at 01:55; the entry said it waited 10 h."""
    gate = _gate(midnight.isoformat(), budget=None, rules=[{"branch": "full", "when": {"green_now": True}}])
    gate.choose_branch(make_context(task_id="gate"))
    [entry] = gf_ledger.entries()
    assert entry.decision != "deferred"
    assert entry.deferred_seconds == 0
    assert (
        entry.planned_start == entry.requested_at == entry.actual_start
    )  # it started when it branched (a fixed clock)
    assert "branched at once" in entry.extra["decision_reason"]
    # The plan's later start stays as evidence of why the gate judged "not green now", labelled as such.
    plan_start = datetime.fromisoformat(entry.extra["gate"]["plan_start"])
    assert plan_start > entry.actual_start
