"""The gate's policy as data: parsed and checked at parse time, first matching rule wins, unknowns fail."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from greenflow.airflow.operators.gate_policy import GateInputs, GatePolicy
from greenflow.errors import InvalidInput
from greenflow.ledger import Budget, BudgetStatus

RULES: list[dict[str, Any]] = [
    {"branch": "full", "when": {"green_now": True, "max_intensity": 150, "min_remaining": "100g"}},
    {"branch": ["reduced", "report"], "when": {"min_remaining": "10g"}},
]


def _status(spent: float, limit: str = "300g") -> BudgetStatus:
    now = datetime.now(UTC)
    return BudgetStatus(Budget.parse("val", limit, "day"), now, now, now, spent, 0.0, 0)


def test_green_and_in_budget_takes_the_first_path() -> None:
    choice = GatePolicy.parse(RULES, "skip").choose(GateInputs(120.0, True), _status(50))
    assert choice.branch == ("full",) and choice.rule == 0 and choice.outcome == "ran_now"


def test_dirty_grid_degrades_and_says_why() -> None:
    choice = GatePolicy.parse(RULES, "skip").choose(GateInputs(320.0, False), _status(50))
    assert choice.branch == ("reduced", "report") and choice.outcome == "degraded"
    assert choice.rejected == {0: ["green_now=True", "max_intensity=150"]}


def test_a_spent_budget_falls_through_to_otherwise() -> None:
    choice = GatePolicy.parse(RULES, None).choose(GateInputs(120.0, True), _status(295))
    assert choice.branch is None and choice.rule is None and choice.outcome == "skipped_budget"


def test_unknown_intensity_fails_the_condition_that_needs_it() -> None:
    choice = GatePolicy.parse(RULES, "skip").choose(GateInputs(None, None), _status(0))
    assert choice.rule == 1


def test_outcomes_can_be_declared() -> None:
    policy = GatePolicy.parse(
        [{"branch": "a", "when": {}, "outcome": "degraded"}], {"branch": "b", "outcome": "ran_now"}
    )
    assert policy.rules[0].outcome == "degraded" and policy.otherwise.outcome == "ran_now"


def test_a_budget_in_another_unit_is_an_error_naming_both() -> None:
    with pytest.raises(InvalidInput, match="is in gCO2e but budget 'val' counts kWh"):
        GatePolicy.parse(RULES[1:], None).choose(GateInputs(1.0, True), _status(0.1, limit="1kWh"))


@pytest.mark.parametrize(
    ("rules", "otherwise", "message"),
    [
        ([], None, "no rules"),
        ([{"branch": "a", "when": {"max_intesity": 100}}], None, "unknown condition 'max_intesity'"),
        ([{"branch": "a", "when": {"green_now": "yes"}}], None, "green_now='yes'"),
        ([{"branch": "a", "when": {"min_remaining": "lots"}}], None, "min_remaining"),
        ([{"branch": "a", "when": {"max_intensity": -1}}], None, "max_intensity=-1"),
        ([{"when": {}}], None, "names no branch"),
        ([{"branch": "a", "if": {}}], None, "unknown keys ['if']"),
        ([{"branch": "a", "outcome": "deferred"}], None, "outcome='deferred'"),
        ([{"branch": "a"}], {"branch": "b", "when": {"green_now": True}}, "otherwise has conditions"),
    ],
)
def test_bad_policies_are_refused(rules: list[dict[str, Any]], otherwise: Any, message: str) -> None:
    with pytest.raises(InvalidInput) as error:
        GatePolicy.parse(rules, otherwise)
    assert message in str(error.value)
