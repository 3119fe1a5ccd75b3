"""GreenGateOperator: the carbon-aware governance gate for validation and evaluation pipelines.

A branch operator whose policy is data (:mod:`.gate_policy`): it reads the grid's intensity (through the
planner, with the same arguments as :class:`CarbonAwareOperator`) and the budget's state, picks the first
downstream path whose conditions hold, e.g. full validation when green and within budget, a reduced one
when dirty or tight, none when spent, and records the choice with its inputs and the policy in the ledger.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk import BaseBranchOperator

from greenflow.airflow.carbon_aware_base import CarbonAwareBaseOperator
from greenflow.airflow.decision_entry import record_decision
from greenflow.airflow.operators.gate_policy import GateInputs, GatePolicy
from greenflow.errors import InvalidInput
from greenflow.ledger import BudgetStatus


class GreenGateOperator(CarbonAwareBaseOperator, BaseBranchOperator):
    """Picks a downstream path by grid intensity and budget; every choice is a ledger entry.

    :param rules: ordered ``{"branch": task_id | [task_ids], "when": {...}, "outcome": ...}`` dicts.
    :param otherwise: the path when no rule holds (a task id, ids, a dict with ``outcome``, or ``None``
        to skip every path).

    Takes the carbon-aware arguments (``region``, ``provider``, ``expected_duration`` of the gated work,
    ``max_delay``/``deadline`` for "is a greener window coming", ``budget`` for the budget conditions);
    it reserves nothing, so ``estimate``/``on_budget_exceeded`` are refused. Returns the chosen task ids.
    """

    template_fields = ("provider_options",)
    reserves_budget = False
    ui_color = "#b7e4c7"

    def __init__(
        self,
        *,
        rules: Sequence[Mapping[str, Any]],
        otherwise: str | Sequence[str] | Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.policy = GatePolicy.parse(rules, otherwise)
        if self.policy.needs_budget and not self.spec_args.get("budget"):
            raise InvalidInput(
                "the gate's rules read a budget but no budget is named",
                fix="pass budget='name' or drop min_remaining/max_share_spent from the rules",
            )

    def choose_branch(self, context: Any) -> list[str] | None:
        """Read intensity and budget, apply the policy, record the choice."""
        lifecycle = self.carbon_lifecycle(context)
        decision = self.plan(lifecycle)
        plan = decision.plan or {}
        now_intensity = plan.get("now_gco2_per_kwh")
        inputs_green = None if decision.action == "retry" or not plan else decision.action == "run_now"
        status: BudgetStatus | None = None
        budget = self.spec_args.get("budget")
        if budget:
            status = lifecycle.ledger.budgets.status(budget)
        inputs = GateInputs(
            intensity_now=None if now_intensity is None else float(now_intensity),
            green_now=inputs_green,
            budget=status.to_dict() if status else None,
        )
        choice = self.policy.choose(inputs, status)
        self.log.info(
            "greenflow gate: %s (rule %s; inputs %s; rejected %s)",
            list(choice.branch) if choice.branch else "no path",
            choice.rule if choice.rule is not None else "otherwise",
            inputs.to_dict(),
            choice.rejected,
        )
        entry = record_decision(
            lifecycle,
            decision,
            choice.outcome,
            reason="not metered: the gate chooses downstream work and runs none itself",
            extra={"gate": {"choice": choice.to_dict(), "inputs": inputs.to_dict(), "policy": self.policy.to_dict()}},
            actual_start=lifecycle.now(),
        )
        self.publish_entry(context, entry)
        return list(choice.branch) if choice.branch else None
