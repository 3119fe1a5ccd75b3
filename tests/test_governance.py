"""The governance policy as data (core, no orchestrator): parsed and checked when built, first matching rule
wins, unknown inputs fail the conditions that need them, and the tiered full / reduced / skipped policy."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from greenflow.errors import InvalidInput
from greenflow.governance import GateInputs, GatePolicy, check_min_remaining, has_room
from greenflow.ledger import Budget, BudgetStatus

RULES: list[dict[str, Any]] = [
    {"branch": "full", "when": {"green_now": True, "max_intensity": 150, "min_remaining": "100g"}},
    {"branch": ["reduced", "report"], "when": {"min_remaining": "10g"}},
]


def _status(spent: float, limit: str = "300g") -> BudgetStatus:
    now = datetime.now(UTC)
    return BudgetStatus(Budget.parse("val", limit, "day"), now, now, now, spent, 0.0, 0)


# -- rules -------------------------------------------------------------------------------------------
def test_green_and_in_budget_takes_the_first_path() -> None:
    choice = GatePolicy.parse(RULES, "skip").choose(GateInputs(120.0, True), _status(50))
    assert choice.branch == ("full",) and choice.rule == 0 and choice.outcome == "ran_now"
    assert "intensity 120 gCO2e/kWh, at most 150" in choice.because


def test_dirty_grid_degrades_and_says_why() -> None:
    choice = GatePolicy.parse(RULES, "skip").choose(GateInputs(320.0, False), _status(50))
    assert choice.branch == ("reduced", "report") and choice.outcome == "degraded"
    assert choice.rejected == {0: ["green_now=True", "max_intensity=150"]}


def test_a_spent_budget_falls_through_to_otherwise() -> None:
    choice = GatePolicy.parse(RULES, None).choose(GateInputs(120.0, True), _status(295))
    assert choice.branch is None and choice.rule is None and choice.outcome == "skipped_budget"
    assert choice.to_dict()["rule"] == "otherwise"


def test_unknown_intensity_fails_the_condition_that_needs_it() -> None:
    choice = GatePolicy.parse(RULES, "skip").choose(GateInputs(None, None), _status(0))
    assert choice.rule == 1


def test_budget_conditions_fail_without_a_budget() -> None:
    policy = GatePolicy.parse([{"branch": "a", "when": {"exhausted": False}}], "b")
    assert policy.needs_budget
    assert policy.choose(GateInputs(100.0, True), None).branch == ("b",)


def test_outcomes_can_be_declared() -> None:
    policy = GatePolicy.parse(
        [{"branch": "a", "when": {}, "outcome": "degraded"}], {"branch": "b", "outcome": "ran_now"}
    )
    assert policy.rules[0].outcome == "degraded" and policy.otherwise.outcome == "ran_now"


def test_the_policy_round_trips_as_data() -> None:
    policy = GatePolicy.parse(RULES, {"branch": "skip", "outcome": "skipped_budget"})
    data = policy.to_dict()
    assert GatePolicy.parse(data["rules"], data["otherwise"]) == policy


def test_a_budget_in_another_unit_is_an_error_naming_both() -> None:
    with pytest.raises(InvalidInput, match="is in gCO2e but budget 'val' counts kWh"):
        GatePolicy.parse(RULES[1:], None).choose(GateInputs(1.0, True), _status(0.1, limit="1kWh"))


@pytest.mark.parametrize(
    ("rules", "otherwise", "message"),
    [
        ([], None, "no rules"),
        ([{"branch": "a", "when": {"max_intesity": 100}}], None, "unknown condition 'max_intesity'"),
        ([{"branch": "a", "when": {"green_now": "yes"}}], None, "green_now='yes'"),
        ([{"branch": "a", "when": {"exhausted": 1}}], None, "exhausted=1"),
        ([{"branch": "a", "when": {"min_remaining": "lots"}}], None, "min_remaining"),
        ([{"branch": "a", "when": {"max_intensity": -1}}], None, "max_intensity=-1"),
        ([{"branch": "a", "when": {"above_intensity": "high"}}], None, "above_intensity='high'"),
        ([{"branch": "a", "when": {"min_share_spent": True}}], None, "min_share_spent=True"),
        ([{"when": {}}], None, "names no branch"),
        ([{"branch": "a", "if": {}}], None, "unknown keys ['if']"),
        ([{"branch": "a", "outcome": "deferred"}], None, "outcome='deferred'"),
        ([{"branch": "a"}], {"branch": "b", "when": {"green_now": True}}, "otherwise has conditions"),
        (["a"], None, "rule 0 is 'a', not a dict"),
    ],
)
def test_bad_policies_are_refused(rules: list[Any], otherwise: Any, message: str) -> None:
    with pytest.raises(InvalidInput) as error:
        GatePolicy.parse(rules, otherwise)
    assert message in str(error.value) and error.value.fix


# -- the tiered policy (Prefect's governance_gate) ----------------------------------------------------
@pytest.mark.parametrize(
    ("intensity", "spent", "expected", "outcome"),
    [
        (120.0, 10.0, "full", "ran_now"),
        (320.0, 0.0, "reduced", "degraded"),  # dirty grid
        (120.0, 85.0, "reduced", "degraded"),  # 85 % spent, reduce at 80 %
        (120.0, 80.0, "reduced", "degraded"),  # exactly at the share: reduce
        (None, 10.0, "full", "ran_now"),  # no forecast: decided on the budget alone
        (120.0, 100.0, "skipped", "skipped_budget"),
    ],
)
def test_tiered_policy(intensity: float | None, spent: float, expected: str, outcome: str) -> None:
    policy = GatePolicy.tiered(reduce_above=250, reduce_when_spent=0.8)
    choice = policy.choose(GateInputs(intensity, None), _status(spent, limit="100g"))
    assert choice.branch == (expected,) and choice.outcome == outcome


def test_tiered_policy_without_a_budget_reads_the_intensity_only() -> None:
    policy = GatePolicy.tiered(reduce_above=250, reduce_when_spent=0.8)
    assert policy.choose(GateInputs(320.0, None), None).branch == ("reduced",)
    assert policy.choose(GateInputs(120.0, None), None).branch == ("full",)


def test_every_reason_to_reduce_is_stated() -> None:
    policy = GatePolicy.tiered(reduce_above=250, reduce_when_spent=0.8)
    inputs, status = GateInputs(320.0, None), _status(85.0, limit="100g")
    reasons = [text for rule in policy.holding(inputs, status) for text in rule.explain(inputs, status)]
    assert reasons == ["budget 'val' is 85% spent (at least 80%)", "intensity 320 gCO2e/kWh, above 250"]


@pytest.mark.parametrize(("above", "share", "message"), [(None, 0.0, "reduce_when_spent=0.0"), (-5, 0.8, "-5")])
def test_tiered_policy_refuses_bad_thresholds(above: float | None, share: float, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        GatePolicy.tiered(reduce_above=above, reduce_when_spent=share)


# -- budget room --------------------------------------------------------------------------------------
def test_room_means_not_exhausted_and_enough_left() -> None:
    assert has_room(_status(50), None) and has_room(_status(50), "250g")
    assert not has_room(_status(50), "251g")
    assert not has_room(_status(300), None)


def test_min_remaining_is_checked_when_declared() -> None:
    assert check_min_remaining("50g") == "50g" and check_min_remaining(None) is None
    with pytest.raises(InvalidInput, match="min_remaining='-5g' is negative"):
        check_min_remaining("-5g")
