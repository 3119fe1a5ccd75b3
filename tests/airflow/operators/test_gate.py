"""GreenGateOperator: picks a path from the intensity now and the budget, records the choice and its inputs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
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
    assert entry.planned_start == entry.requested_at  # it planned nothing later than its request
    assert "acted at once" in entry.extra["decision_reason"]
    # The plan's later start stays as evidence of why the gate judged "not green now", labelled as such.
    plan_start = datetime.fromisoformat(entry.extra["gate"]["plan_start"])
    assert plan_start > entry.requested_at
    # No rule held and otherwise is None: no path was taken, so no work started.
    assert entry.actual_start is None


def test_a_gate_that_takes_a_path_started_it_when_it_branched(
    gf_ledger: Ledger, make_context: Any, midnight: datetime
) -> None:
    """The plan said "wait until noon"; the gate took the reduced path at once: that is its start."""
    gate = _gate(
        midnight.isoformat(),
        budget=None,
        rules=[{"branch": "full", "when": {"green_now": True}}],
        otherwise={"branch": "reduced", "outcome": "degraded"},
    )
    assert gate.choose_branch(make_context(task_id="gate")) == ["reduced"]
    [entry] = gf_ledger.entries()
    assert entry.decision == "degraded" and entry.deferred_seconds == 0
    assert entry.actual_start == entry.requested_at == entry.planned_start  # a fixed clock: no time passes


def _ages(value: object) -> list[float]:
    """Every ``age_seconds`` recorded anywhere in an entry's JSON."""
    if isinstance(value, dict):
        found = [float(v) for k, v in value.items() if k == "age_seconds" and v is not None]
        return found + [age for v in value.values() for age in _ages(v)]
    if isinstance(value, list):
        return [age for v in value for age in _ages(v)]
    return []


def test_a_replayed_gate_records_the_real_wait_in_the_trace_clock(
    gf_ledger: Ledger, make_context: Any, midnight: datetime
) -> None:
    """Issue 15, as reported: a replayed gate branched at 01:55 (trace time); its entry said deferred_seconds=36000,
    planned 11:55. The entry records what the gate did: no wait, started when it asked, marked as a replay."""
    options = {"now": midnight.isoformat(), "speed": 36_000, "replay_started_at": datetime.now(UTC).isoformat()}
    gate = _gate(
        midnight.isoformat(),
        budget=None,
        rules=[{"branch": "full", "when": {"green_now": True}}],
        otherwise={"branch": "reduced", "outcome": "degraded"},
        provider_options=options,
    )
    assert gate.choose_branch(make_context(task_id="gate")) == ["reduced"]
    [entry] = gf_ledger.entries()
    assert entry.decision == "degraded" and entry.deferred_seconds == 0
    assert entry.actual_start == entry.requested_at == entry.planned_start  # the trace's time it asked at
    assert midnight <= entry.actual_start < midnight + timedelta(hours=1)  # not the plan's noon
    assert datetime.fromisoformat(entry.extra["gate"]["plan_start"]) > entry.actual_start + timedelta(hours=6)
    assert entry.extra["replay"]["speed"] == 36_000  # its times are the trace's, and it says so
    ages = _ages(entry.policy) + _ages(entry.extra)
    assert ages and all(0 <= age < 3600 for age in ages)  # the forecast was fetched just now
