"""GreenGateOperator: the carbon-aware gate in front of downstream paths, in one of two modes.

* **Governance** (``rules=``): a branch whose policy is data (:mod:`greenflow.governance`): it reads the
  grid's intensity (through the planner, with the same arguments as :class:`CarbonAwareOperator`) and the
  budget's state, picks the first downstream path whose conditions hold, e.g. full validation when green
  and within budget, a reduced one when dirty or tight, none when spent, and records the choice with its
  inputs and the policy in the ledger.
* **Spatial shifting** (``regions={region: task_id}``): the planner chooses the greenest (region, start)
  over the mapping's regions (the first is home); the gate waits for that start as a deferral (no worker
  slot held), then branches to the chosen region's task and skips the others. One ledger entry records the
  choice with every region's expected intensity and emissions (:mod:`.region_branch`).

Both modes live in one operator because they share everything but the choice itself (the carbon-aware
arguments, the plan, the ledger entry, branching); the routing specifics are in :mod:`.region_branch`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk import BaseBranchOperator
from airflow.sdk.exceptions import AirflowFailException

from greenflow.airflow.carbon_aware_base import CarbonAwareBaseOperator
from greenflow.airflow.operators.region_branch import RegionRoutes, RouteEnergy, route_record
from greenflow.airflow.routed import ROUTE_XCOM_KEY
from greenflow.check_entries import record_check
from greenflow.errors import InvalidInput
from greenflow.governance import GateInputs, GatePolicy
from greenflow.ledger import BudgetStatus
from greenflow.lifecycle import Decision, Lifecycle


class GreenGateOperator(CarbonAwareBaseOperator, BaseBranchOperator):
    """Picks a downstream path by grid intensity and budget, or by region; every choice is a ledger entry.

    :param rules: governance mode: ordered ``{"branch": task_id | [task_ids], "when": {...}, "outcome": ...}``
        dicts (see :mod:`greenflow.governance`).
    :param otherwise: governance mode: the path when no rule holds (a task id, ids, a dict with
        ``outcome``, or ``None`` to skip every path).
    :param regions: spatial mode: ``{region: downstream task id}``, home region first. (A plain list keeps
        the base meaning, more regions to plan over, in governance mode.)
    :param expected_energy: spatial mode: the routed task's energy (``"3kWh"``), to state each region's
        expected emissions; default: the routed tasks' measured history, else unknown.

    Takes the carbon-aware arguments (``provider``, ``expected_duration`` of the gated work,
    ``max_delay``/``deadline``, ``min_savings``; ``region`` and ``budget`` in governance mode only); it
    reserves nothing, so ``estimate``/``on_budget_exceeded`` are refused. Returns the chosen task ids;
    spatial mode also pushes XCom ``greenflow_route`` = ``{"region", "task_id", "start_at", "entry_id"}``.
    """

    template_fields = ("provider_options",)
    reserves_budget = False
    ui_color = "#b7e4c7"

    def __init__(
        self,
        *,
        rules: Sequence[Mapping[str, Any]] | None = None,
        otherwise: str | Sequence[str] | Mapping[str, Any] | None = None,
        regions: Mapping[str, str] | Sequence[str] = (),
        expected_energy: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.routes: RegionRoutes | None = None
        self.policy: GatePolicy | None = None
        self.route_energy: RouteEnergy | None = None
        if isinstance(regions, Mapping):
            _check_route_arguments(rules, otherwise, kwargs)
            self.routes = RegionRoutes.parse(regions)
            self.route_energy = RouteEnergy.declared(expected_energy)
            kwargs["region"], regions = self.routes.home, self.routes.regions[1:]
        elif rules is None:
            raise InvalidInput(
                "GreenGateOperator needs rules= (governance) or a regions={region: task_id} mapping (spatial)",
                fix="give one: rules=[{'branch': ..., 'when': {...}}] or regions={'GB': 'train_gb', ...}",
            )
        elif expected_energy is not None:
            raise InvalidInput(
                "expected_energy applies to a regions={region: task_id} route only",
                fix="remove it (the gated tasks estimate their own energy)",
            )
        # The base validates region names for the provider, durations and options at parse time.
        super().__init__(regions=regions, **kwargs)
        if rules is not None:
            self.policy = GatePolicy.parse(rules, otherwise)
            if self.policy.needs_budget and not self.spec_args.get("budget"):
                raise InvalidInput(
                    "the gate's rules read a budget but no budget is named",
                    fix="pass budget='name' or drop min_remaining/max_share_spent from the rules",
                )

    # -- spatial mode --------------------------------------------------------------------------------
    def execute(self, context: Any) -> Any:
        """Governance: choose and branch. Spatial: plan across regions, defer to the start, then branch."""
        if self.routes is None:
            return super().execute(context)
        self._check_downstream()
        lifecycle = self.carbon_lifecycle(context)
        decision = self.defer_to_window(lifecycle, self.plan(lifecycle))
        return self._route(context, lifecycle, decision, resumed=None)

    def execute_complete(self, context: Any, event: Mapping[str, Any]) -> Any:
        """Resume at the chosen start (a fresh instance: the decision comes from the trigger's event)."""
        self._check_downstream()
        lifecycle = self.carbon_lifecycle(context)
        decision = self.decision_from_event(lifecycle, event)
        decision = self.defer_to_window(lifecycle, decision)  # only when the outage policy still says wait
        resumed = {k: event.get(k) for k in ("fired", "refreshes", "moved_earlier_from")}
        return self._route(context, lifecycle, decision, resumed=resumed)

    def _check_downstream(self) -> None:
        assert self.routes is not None
        try:
            self.routes.check_downstream(self.downstream_task_ids, self.task_id)
        except InvalidInput as error:  # a DAG mistake: retrying cannot help
            raise AirflowFailException(f"greenflow: {error.one_line()}") from error

    def _route(
        self, context: Any, lifecycle: Lifecycle, decision: Decision, *, resumed: Mapping[str, Any] | None
    ) -> Any:
        assert self.routes is not None
        energy = self.route_energy or RouteEnergy.from_history(
            lifecycle.ledger, lifecycle.identity.workflow_id, self.routes
        )
        record = route_record(self.routes, decision, energy, pue=lifecycle.spec.pue, resumed=resumed)
        entry = record_check(
            not_metered="not metered: the route chooses the region; the routed task meters and records its own run",
            lifecycle=lifecycle,
            decision=decision,
            extra={"route": record},
        )
        self.publish_entry(context, entry)
        self.log.info(
            "greenflow route: %s in %s from %s (home %s)",
            record["task_id"],
            record["region"],
            record["start_at"],
            self.routes.home,
        )
        context["ti"].xcom_push(
            key=ROUTE_XCOM_KEY,
            value={
                "region": record["region"],
                "task_id": record["task_id"],
                "start_at": record["start_at"],
                "entry_id": entry.entry_id,
            },
        )
        return self.do_branch(context, record["task_id"])

    # -- governance mode -----------------------------------------------------------------------------
    def choose_branch(self, context: Any) -> list[str] | None:
        """Read intensity and budget, apply the policy, record the choice."""
        assert self.policy is not None  # governance mode
        lifecycle = self.carbon_lifecycle(context)
        decision = self.plan(lifecycle)
        plan = decision.plan or {}
        now_intensity = plan.get("now_gco2_per_kwh")
        inputs_green = None if decision.action == "retry" or not plan else decision.action == "run_now"
        status: BudgetStatus | None = None
        budget = self.spec_args.get("budget")
        if budget:
            # The budget itself, or a spent budget that also covers this task (team, tags, organisation).
            status = lifecycle.ledger.budgets.binding_status(budget, lifecycle.attempt)
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
        gate_record: dict[str, Any] = {
            "choice": choice.to_dict(),
            "inputs": inputs.to_dict(),
            "policy": self.policy.to_dict(),
        }
        if decision.deferred:
            # The plan's later start is evidence of "not green now", not a wait: the gate branches at once.
            gate_record["plan_start"] = decision.start_at.isoformat()
            gate_record["plan_reason"] = decision.reason
        entry = record_check(
            choice.outcome,
            not_metered="not metered: the gate chooses downstream work and runs none itself",
            lifecycle=lifecycle,
            decision=decision,
            at_once=True,  # a governance gate branches when it runs: the plan's later start is not a wait
            let_through=bool(choice.branch),
            extra={"gate": gate_record},
        )
        self.publish_entry(context, entry)
        return list(choice.branch) if choice.branch else None


def _check_route_arguments(rules: Any, otherwise: Any, kwargs: Mapping[str, Any]) -> None:
    """Refuse what a regions={region: task_id} route cannot use, naming the fix."""
    if rules is not None or otherwise is not None:
        raise InvalidInput(
            "GreenGateOperator got both rules/otherwise and a regions={region: task_id} mapping",
            fix="use one gate for the governance rules and another for the region route",
        )
    if kwargs.get("region") is not None:
        raise InvalidInput(
            f"region={kwargs['region']!r} given with a regions mapping",
            fix="drop region=: the first key of regions is the home region",
        )
    if kwargs.get("budget") is not None:
        raise InvalidInput(
            "a region route does not take a budget (it runs no work)",
            fix="put budget= on the routed tasks, which reserve and settle their own estimates",
        )
