"""The governance gate's policy, as data: ordered rules from conditions on intensity and budget to a path.

::

    rules=[
        {"branch": "full_validation", "when": {"green_now": True, "min_remaining": "200g"}},
        {"branch": "reduced_validation", "when": {"min_remaining": "20g"}},
    ],
    otherwise="skip_validation",          # or None: skip every path

The first rule whose conditions all hold wins; with none, ``otherwise``. Conditions:

* ``max_intensity``: intensity of starting now (gCO2e/kWh, the plan's ``now``) at most this;
* ``green_now``: the planner says now is the window (true) or a later window is greener (false);
* ``min_remaining``: the budget has at least this left, in its unit (``"200g"``, ``"0.5kWh"``);
* ``max_share_spent``: the budget's spent share (0-1) at most this.

An unknown value (no forecast, no budget) fails a condition that needs it, and the recorded inputs say so.
Each rule's ledger ``outcome`` defaults to ``ran_now`` for the first rule, ``degraded`` for later ones and
``skipped_budget`` for ``otherwise``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, cast

from greenflow.airflow.budget_room import has_room
from greenflow.errors import InvalidInput
from greenflow.ledger import DECISIONS, BudgetStatus
from greenflow.ledger.entry import Decision as Outcome
from greenflow.units import parse_quantity

CONDITIONS = ("max_intensity", "green_now", "min_remaining", "max_share_spent")
_RULE_KEYS = ("branch", "when", "outcome")
_OUTCOMES = tuple(d for d in DECISIONS if d in ("ran_now", "degraded", "skipped_budget"))


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
        failed: list[str] = []
        for name, wanted in self.when.items():
            if not _holds(name, wanted, inputs, status):
                failed.append(f"{name}={wanted!r}")
        return failed

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe."""
        return {"branch": list(self.branch) if self.branch else None, "when": dict(self.when), "outcome": self.outcome}


@dataclass(frozen=True)
class GateChoice:
    """The path taken, the rule behind it and why the earlier rules did not apply."""

    branch: tuple[str, ...] | None
    rule: int | None
    outcome: Outcome
    rejected: dict[int, list[str]]

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
    """Ordered rules plus a fallback; validated when the DAG is parsed."""

    rules: tuple[GateRule, ...]
    otherwise: GateRule

    @classmethod
    def parse(
        cls, rules: Sequence[Mapping[str, Any]], otherwise: str | Sequence[str] | Mapping[str, Any] | None
    ) -> GatePolicy:
        """Build from the DAG's dicts; bad keys, values or outcomes raise :class:`InvalidInput`."""
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

    @property
    def needs_budget(self) -> bool:
        """True when some rule reads the budget."""
        return any(name in ("min_remaining", "max_share_spent") for rule in self.rules for name in rule.when)

    def choose(self, inputs: GateInputs, status: BudgetStatus | None) -> GateChoice:
        """The first rule that holds, else ``otherwise``."""
        rejected: dict[int, list[str]] = {}
        for index, rule in enumerate(self.rules):
            failed = rule.failed_conditions(inputs, status)
            if not failed:
                return GateChoice(rule.branch, index, rule.outcome, rejected)
            rejected[index] = failed
        return GateChoice(self.otherwise.branch, None, self.otherwise.outcome, rejected)

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


def _check_condition(name: str, value: Any, where: str) -> None:
    if name not in CONDITIONS:
        raise InvalidInput(f"{where}: unknown condition {name!r}", fix=f"use {', '.join(CONDITIONS)}")
    if name == "green_now" and not isinstance(value, bool):
        raise InvalidInput(f"{where}: green_now={value!r}", fix="give True or False")
    if name == "max_intensity" and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
        raise InvalidInput(f"{where}: max_intensity={value!r}", fix="give gCO2e/kWh, e.g. 150")
    if name == "max_share_spent" and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
        raise InvalidInput(f"{where}: max_share_spent={value!r}", fix="give a share of the limit, e.g. 0.8")
    if name == "min_remaining":
        parse_quantity(value, name=f"{where}: min_remaining")


def _holds(name: str, wanted: Any, inputs: GateInputs, status: BudgetStatus | None) -> bool:
    if name == "max_intensity":
        return inputs.intensity_now is not None and inputs.intensity_now <= float(wanted)
    if name == "green_now":
        return inputs.green_now is not None and inputs.green_now == wanted
    if status is None:
        return False
    if name == "max_share_spent":
        return status.share_spent <= float(wanted)
    return has_room(status, str(wanted))
