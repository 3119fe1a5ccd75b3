"""The governance gate's policy, as data: ordered rules from conditions on intensity and budget to a path.

Orchestrator-free: Airflow's ``GreenGateOperator`` and Prefect's ``governance_gate`` both choose through
:class:`GatePolicy`; they only supply the inputs (the plan's intensity, the budget's status) and act on
the choice (branch, or return a label).

::

    rules=[
        {"branch": "full_validation", "when": {"green_now": True, "min_remaining": "200g"}},
        {"branch": "reduced_validation", "when": {"min_remaining": "20g"}},
    ],
    otherwise="skip_validation",          # or None: skip every path

The first rule whose conditions all hold wins; with none, ``otherwise``. Conditions:

* ``max_intensity``: intensity of starting now (gCO2e/kWh, the plan's ``now``) at most this;
* ``above_intensity``: that intensity strictly above this;
* ``green_now``: the planner says now is the window (true) or a later window is greener (false);
* ``min_remaining``: the budget is not exhausted and has at least this left, in its unit (``"200g"``);
* ``max_share_spent`` / ``min_share_spent``: the budget's spent share (0-1) at most / at least this;
* ``exhausted``: the budget is spent (true) or not (false).

An unknown value (no forecast, no budget) fails a condition that needs it, and the recorded inputs say so.
Each rule's ledger ``outcome`` defaults to ``ran_now`` for the first rule, ``degraded`` for later ones and
``skipped_budget`` for ``otherwise``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, cast

from greenflow.errors import InvalidInput
from greenflow.ledger import DECISIONS, BudgetStatus
from greenflow.ledger.entry import Decision as Outcome
from greenflow.units import parse_quantity

CONDITIONS = (
    "max_intensity",
    "above_intensity",
    "green_now",
    "min_remaining",
    "max_share_spent",
    "min_share_spent",
    "exhausted",
)
BUDGET_CONDITIONS = frozenset({"min_remaining", "max_share_spent", "min_share_spent", "exhausted"})
_RULE_KEYS = ("branch", "when", "outcome")
_OUTCOMES = tuple(d for d in DECISIONS if d in ("ran_now", "degraded", "skipped_budget"))


# -- the budget's room: one rule for the gate, the budget sensor and its trigger ------------------------
def check_min_remaining(text: str | None) -> str | None:
    """Validate ``min_remaining`` (``"50g"``, ``"0.2kWh"``) at parse time; returns it unchanged."""
    if text is not None and parse_quantity(text, name="min_remaining").value < 0:
        raise InvalidInput(f"min_remaining={text!r} is negative", fix="give e.g. 50g or 0.2kWh")
    return text


def has_room(status: BudgetStatus, min_remaining: str | None) -> bool:
    """True when the budget is not exhausted and (if given) at least ``min_remaining`` is left."""
    if status.exhausted:
        return False
    if min_remaining is None:
        return True
    needed = parse_quantity(min_remaining, name="min_remaining")
    if needed.unit != status.budget.unit:
        raise InvalidInput(
            f"min_remaining={min_remaining!r} is in {needed.unit} but budget {status.budget.name!r} counts "
            f"{status.budget.unit}",
            fix=f"give min_remaining in {status.budget.unit}",
        )
    return status.remaining >= needed.value


# -- the policy -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GateInputs:
    """What the gate knew when it chose (recorded in the ledger entry)."""

    intensity_now: float | None
    green_now: bool | None
    budget: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe."""
        return asdict(self)


@dataclass(frozen=True)
class GateRule:
    """One path and the conditions under which the gate takes it."""

    branch: tuple[str, ...] | None
    when: Mapping[str, Any] = field(default_factory=dict)
    outcome: Outcome = "ran_now"

    def failed_conditions(self, inputs: GateInputs, status: BudgetStatus | None) -> list[str]:
        """The conditions that do not hold (empty: the rule applies)."""
        return [f"{name}={wanted!r}" for name, wanted in self.when.items() if not _holds(name, wanted, inputs, status)]

    def explain(self, inputs: GateInputs, status: BudgetStatus | None) -> list[str]:
        """Each condition of the rule with the value it was checked against (for a log line or a reason)."""
        return [_describe(name, wanted, inputs, status) for name, wanted in self.when.items()]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe."""
        return {"branch": list(self.branch) if self.branch else None, "when": dict(self.when), "outcome": self.outcome}


@dataclass(frozen=True)
class GateChoice:
    """The path taken, the rule behind it, why the earlier rules did not apply, and what held."""

    branch: tuple[str, ...] | None
    rule: int | None
    outcome: Outcome
    rejected: dict[int, list[str]]
    because: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (for the ledger entry)."""
        return {
            "branch": list(self.branch) if self.branch else None,
            "rule": self.rule if self.rule is not None else "otherwise",
            "outcome": self.outcome,
            "rejected": {str(k): v for k, v in self.rejected.items()},
        }


@dataclass(frozen=True)
class GatePolicy:
    """Ordered rules plus a fallback; validated when built (in Airflow, when the DAG is parsed)."""

    rules: tuple[GateRule, ...]
    otherwise: GateRule

    @classmethod
    def parse(
        cls, rules: Sequence[Mapping[str, Any]], otherwise: str | Sequence[str] | Mapping[str, Any] | None
    ) -> GatePolicy:
        """Build from plain dicts; bad keys, values or outcomes raise :class:`InvalidInput`."""
        if not rules:
            raise InvalidInput("the gate has no rules", fix="give at least one {'branch': ..., 'when': {...}}")
        parsed = tuple(_rule(raw, index, "ran_now" if index == 0 else "degraded") for index, raw in enumerate(rules))
        fallback_raw: Mapping[str, Any] = otherwise if isinstance(otherwise, Mapping) else {"branch": otherwise}
        fallback = _rule({"when": {}, **fallback_raw}, None, "skipped_budget")
        if fallback.when:
            raise InvalidInput(
                "otherwise has conditions", fix="otherwise applies when no rule does: give only branch/outcome"
            )
        return cls(parsed, fallback)

    @classmethod
    def tiered(cls, *, reduce_above: float | None, reduce_when_spent: float) -> GatePolicy:
        """``skipped`` when the budget is spent, ``reduced`` when it is ``reduce_when_spent`` spent or the
        intensity is above ``reduce_above``, else ``full`` (an unknown intensity does not reduce)."""
        if isinstance(reduce_when_spent, bool) or not 0 < reduce_when_spent <= 1:
            raise InvalidInput(
                f"reduce_when_spent={reduce_when_spent!r} is not a share of the budget", fix="give a number in (0, 1]"
            )
        rules: list[dict[str, Any]] = [
            {"branch": "skipped", "when": {"exhausted": True}, "outcome": "skipped_budget"},
            {"branch": "reduced", "when": {"min_share_spent": reduce_when_spent}, "outcome": "degraded"},
        ]
        if reduce_above is not None:
            rules.append({"branch": "reduced", "when": {"above_intensity": reduce_above}, "outcome": "degraded"})
        return cls.parse(rules, {"branch": "full", "outcome": "ran_now"})

    @property
    def needs_budget(self) -> bool:
        """True when some rule reads the budget."""
        return any(name in BUDGET_CONDITIONS for rule in self.rules for name in rule.when)

    def choose(self, inputs: GateInputs, status: BudgetStatus | None) -> GateChoice:
        """The first rule that holds, else ``otherwise``."""
        rejected: dict[int, list[str]] = {}
        for index, rule in enumerate(self.rules):
            failed = rule.failed_conditions(inputs, status)
            if not failed:
                return GateChoice(rule.branch, index, rule.outcome, rejected, tuple(rule.explain(inputs, status)))
            rejected[index] = failed
        return GateChoice(self.otherwise.branch, None, self.otherwise.outcome, rejected)

    def holding(self, inputs: GateInputs, status: BudgetStatus | None) -> list[GateRule]:
        """Every rule whose conditions hold (the first is the one chosen), e.g. to state all reasons."""
        return [rule for rule in self.rules if not rule.failed_conditions(inputs, status)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (the policy is recorded with every choice)."""
        return {"rules": [r.to_dict() for r in self.rules], "otherwise": self.otherwise.to_dict()}


def _rule(raw: Mapping[str, Any], index: int | None, default_outcome: Outcome) -> GateRule:
    where = "otherwise" if index is None else f"rule {index}"
    if not isinstance(raw, Mapping):
        raise InvalidInput(f"{where} is {raw!r}, not a dict", fix="write {'branch': 'task_id', 'when': {...}}")
    unknown = sorted(set(raw) - set(_RULE_KEYS))
    if unknown:
        raise InvalidInput(f"{where} has unknown keys {unknown}", fix=f"use {', '.join(_RULE_KEYS)}")
    branch = _branch(raw.get("branch"), where)
    if index is not None and branch is None:
        raise InvalidInput(f"{where} names no branch", fix="give the task id (or ids) to run")
    when = dict(raw.get("when") or {})
    for name, value in when.items():
        _check_condition(name, value, where)
    outcome = raw.get("outcome", default_outcome)
    if outcome not in _OUTCOMES:
        raise InvalidInput(f"{where}: outcome={outcome!r}", fix=f"use one of {', '.join(_OUTCOMES)}")
    return GateRule(branch, when, cast(Outcome, outcome))


def _branch(value: Any, where: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str) and value:
        return (value,)
    if isinstance(value, Sequence) and value and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    raise InvalidInput(f"{where}: branch={value!r}", fix="give a task id, a list of task ids, or None")


_NUMBER_FIXES = {
    "max_intensity": "give gCO2e/kWh, e.g. 150",
    "above_intensity": "give gCO2e/kWh, e.g. 250",
    "max_share_spent": "give a share of the limit, e.g. 0.8",
    "min_share_spent": "give a share of the limit, e.g. 0.8",
}


def _check_condition(name: str, value: Any, where: str) -> None:
    if name not in CONDITIONS:
        raise InvalidInput(f"{where}: unknown condition {name!r}", fix=f"use {', '.join(CONDITIONS)}")
    if name in ("green_now", "exhausted") and not isinstance(value, bool):
        raise InvalidInput(f"{where}: {name}={value!r}", fix="give True or False")
    if name in _NUMBER_FIXES and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
        raise InvalidInput(f"{where}: {name}={value!r}", fix=_NUMBER_FIXES[name])
    if name == "min_remaining":
        parse_quantity(value, name=f"{where}: min_remaining")


def _holds(name: str, wanted: Any, inputs: GateInputs, status: BudgetStatus | None) -> bool:
    intensity = inputs.intensity_now
    if name == "max_intensity":
        return intensity is not None and intensity <= float(wanted)
    if name == "above_intensity":
        return intensity is not None and intensity > float(wanted)
    if name == "green_now":
        return inputs.green_now is not None and inputs.green_now == wanted
    if status is None:
        return False
    if name == "exhausted":
        return bool(status.exhausted == wanted)
    if name == "max_share_spent":
        return status.share_spent <= float(wanted)
    if name == "min_share_spent":
        return status.share_spent >= float(wanted)
    return has_room(status, str(wanted))


def _describe(name: str, wanted: Any, inputs: GateInputs, status: BudgetStatus | None) -> str:
    intensity = "unknown" if inputs.intensity_now is None else f"{inputs.intensity_now:.0f} gCO2e/kWh"
    if name == "max_intensity":
        return f"intensity {intensity}, at most {float(wanted):g}"
    if name == "above_intensity":
        return f"intensity {intensity}, above {float(wanted):g}"
    if name == "green_now":
        return f"green now: {inputs.green_now} (wanted {wanted})"
    if status is None:
        return f"{name}={wanted!r}: no budget"
    budget = status.budget.name
    if name == "exhausted":
        return f"budget {budget!r} {'is' if status.exhausted else 'is not'} spent"
    if name in ("max_share_spent", "min_share_spent"):
        bound = "at most" if name == "max_share_spent" else "at least"
        return f"budget {budget!r} is {status.share_spent:.0%} spent ({bound} {float(wanted):.0%})"
    return f"budget {budget!r} has {status.format(status.remaining)} left (at least {wanted})"
