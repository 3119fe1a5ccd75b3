"""Budget gates for Prefect flows, the ``greenflow.budget.exhausted`` event, and the governance gate.

* :func:`carbon_budget_gate` stops downstream work once a budget is spent: ``fail`` raises
  :class:`~greenflow.errors.BudgetExceeded` (the flow stops there; tasks submitted with
  ``wait_for=[budget_gate_task.submit(...)]`` never start), ``skip`` ends the gate's task run
  ``Completed`` (named ``Skipped``, with a message) and returns ``False`` so the flow stays green
  without starting the GPU work, ``wait`` waits in process for the budget's next period, bounded by
  ``max_wait``.
* Whenever greenflow finds a budget exhausted it emits the Prefect event ``greenflow.budget.exhausted``
  with the budget as its resource (``greenflow.budget.<name>``); an automation can pause a work pool on
  it (:func:`pause_work_pool_on_exhaustion`), a hard gate for every deployment in the pool.
* :func:`governance_gate` chooses ``full`` / ``reduced`` / ``skipped`` validation from the budget and
  the grid's intensity, and writes every choice to the ledger.

Inside a flow both gates run as Prefect tasks (visible in the UI, with the reason as the state
message); outside a flow they run inline.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, cast

from prefect import Task, task
from prefect.cache_policies import NO_CACHE

from greenflow.check_entries import record_check
from greenflow.clock import parse_duration, utcnow
from greenflow.errors import BudgetExceeded, InvalidInput
from greenflow.governance import GateInputs, GatePolicy
from greenflow.ledger import BudgetStatus, Identity, Ledger
from greenflow.lifecycle import Decision, Lifecycle
from greenflow.prefect.connections import CredentialsOption, LedgerOption, resolve_ledger, resolve_provider
from greenflow.prefect.run_context import current_run, run_logger
from greenflow.spec import CarbonSpec
from greenflow.units import Quantity, parse_quantity

if TYPE_CHECKING:
    from prefect.automations import Automation
    from prefect.client.schemas.objects import State

BUDGET_EXHAUSTED_EVENT = "greenflow.budget.exhausted"
"""The Prefect event emitted when greenflow finds a budget spent."""
GateMode = Literal["fail", "skip", "wait"]
GATE_MODES: tuple[str, ...] = ("fail", "skip", "wait")
Choice = Literal["full", "reduced", "skipped"]
BUDGET_GATE = "carbon-budget-gate"
GOVERNANCE_GATE = "governance-gate"


# -- the event ---------------------------------------------------------------------------------------
def budget_resource(name: str) -> dict[str, str]:
    """The Prefect resource that stands for a greenflow budget."""
    return {"prefect.resource.id": f"greenflow.budget.{name}", "prefect.resource.name": name}


def emit_budget_exhausted(status: BudgetStatus) -> None:
    """Emit ``greenflow.budget.exhausted`` for ``status``'s budget (related to the current run, if any)."""
    from prefect.events import emit_event

    emit_event(BUDGET_EXHAUSTED_EVENT, resource=budget_resource(status.budget.name), payload=status.to_dict())


def notify_budget(ledger: Ledger, name: str) -> BudgetStatus:
    """Read the budget, update its progress artifact and emit the event if it is spent."""
    from greenflow.prefect.artifacts import publish_budget_artifact

    # A spent budget that counts the same work (same scope, or scope all) closes the gate too.
    status = ledger.budgets.binding_status(name)
    publish_budget_artifact(status)
    if status.exhausted:
        emit_budget_exhausted(status)
    return status


def pause_work_pool_on_exhaustion(
    work_pool_name: str | None = None, *, budget: str | None = None, name: str | None = None
) -> Automation:
    """Create the automation that pauses a work pool when a budget is spent.

    ``work_pool_name`` selects the pool; without it the pool is inferred from the run that spent the
    budget. ``budget`` limits the automation to one budget. Pausing the pool stops every deployment in
    it, including runs already scheduled (pausing a deployment would not: its scheduled runs still start).
    """
    from prefect.automations import Automation
    from prefect.client.orchestration import get_client
    from prefect.events.actions import PauseWorkPool
    from prefect.events.schemas.automations import EventTrigger, Posture

    if work_pool_name is not None:
        with get_client(sync_client=True) as client:
            pool_id = client.read_work_pool(work_pool_name).id
        action = PauseWorkPool(source="selected", work_pool_id=pool_id)
    else:
        action = PauseWorkPool(source="inferred", work_pool_id=None)
    resource = f"greenflow.budget.{budget}" if budget else "greenflow.budget.*"
    match: dict[str, str | list[str]] = {"prefect.resource.id": resource}
    automation = Automation(
        name=name or f"greenflow: pause {work_pool_name or 'the work pool'} when {budget or 'a budget'} is spent",
        description="Created by greenflow: a spent carbon budget stops the pool's work until someone resumes it.",
        trigger=EventTrigger(
            expect={BUDGET_EXHAUSTED_EVENT}, match=match, posture=Posture.Reactive, threshold=1, within=timedelta(0)
        ),
        actions=[action],
    )
    created: Automation = automation.create(_sync=True)  # type: ignore[call-arg, assignment]  # sync in async code too
    return created


# -- the budget gate ---------------------------------------------------------------------------------
def carbon_budget_gate(
    budget: str,
    mode: GateMode = "fail",
    *,
    estimate: str | None = None,
    max_wait: str | timedelta = "12h",
    poll_every: str | timedelta = "1m",
    ledger: LedgerOption = None,
    wait_for: Iterable[Any] | None = None,
) -> bool:
    """Stop downstream work when ``budget`` is spent; ``True`` when the work may go on.

    The gate is closed when the budget is exhausted, or, with ``estimate`` (``"20g"``, ``"0.5kWh"``, in
    the budget's unit), when what is left cannot cover it. ``fail`` raises ``BudgetExceeded``; ``skip``
    returns ``False`` (the gate's task run ends ``Completed`` with the reason); ``wait`` waits in process
    for the next period and raises if it does not start within ``max_wait`` (the deadline wins).
    Every closed gate is written to the ledger as ``skipped_budget``.
    """
    from prefect.context import FlowRunContext, TaskRunContext

    _check_gate_inputs(mode, estimate, max_wait, poll_every)
    if FlowRunContext.get() is None or TaskRunContext.get() is not None:
        return _budget_gate(budget, mode, estimate, max_wait, poll_every, ledger)[0]
    state = cast(
        "State[Any]",
        budget_gate_task(budget, mode, estimate, max_wait, poll_every, ledger, return_state=True, wait_for=wait_for),
    )
    return bool(state.result())  # raises the gate's BudgetExceeded when it failed


def _budget_gate_state(
    budget: str,
    mode: GateMode = "fail",
    estimate: str | None = None,
    max_wait: str | timedelta = "12h",
    poll_every: str | timedelta = "1m",
    ledger: LedgerOption = None,
) -> State[bool]:
    """The gate as a Prefect task: ``Completed`` (open), ``Completed`` named ``Skipped``, or an exception."""
    from prefect.states import Completed

    _check_gate_inputs(mode, estimate, max_wait, poll_every)
    is_open, message = _budget_gate(budget, mode, estimate, max_wait, poll_every, ledger)
    return Completed(message=message, name="Completed" if is_open else "Skipped", data=is_open)


def _check_gate_inputs(mode: str, estimate: str | None, max_wait: str | timedelta, poll_every: str | timedelta) -> None:
    if mode not in GATE_MODES:
        raise InvalidInput(f"mode={mode!r} is not one of {', '.join(GATE_MODES)}", fix="use fail, skip or wait")
    if estimate is not None:
        _estimate(estimate)
    parse_duration(max_wait, "max_wait")
    if parse_duration(poll_every, "poll_every") <= timedelta(0):
        raise InvalidInput(f"poll_every={poll_every!r} is not positive", fix="give e.g. 1m")


def _estimate(text: str) -> Quantity:
    quantity = parse_quantity(text, name="estimate")
    if quantity.value < 0:
        raise InvalidInput(f"estimate={text!r} is negative", fix="give e.g. 20g or 0.5kWh")
    return quantity


def _budget_gate(
    budget: str,
    mode: str,
    estimate: str | None,
    max_wait: str | timedelta,
    poll_every: str | timedelta,
    ledger_option: LedgerOption,
) -> tuple[bool, str]:
    """(open, message); raises :class:`BudgetExceeded` in ``fail`` mode or when ``wait`` runs out of time."""
    import time

    logger = run_logger()
    ledger = resolve_ledger(ledger_option)
    need = None if estimate is None else _estimate(estimate)
    started = utcnow()
    deadline = started + parse_duration(max_wait, "max_wait")
    poll = parse_duration(poll_every, "poll_every")
    status = notify_budget(ledger, budget)
    closed_reason = _closed(status, need)
    if closed_reason is None:
        return True, f"greenflow: budget {budget!r} is open: {_spent_line(status)}"
    if mode == "wait" and status.period_end <= deadline:
        rolling = status.budget.period.kind == "rolling"
        logger.warning(
            "greenflow: %s; waiting %s (max_wait until %s)",
            closed_reason,
            "for spending to leave the rolling period"
            if rolling
            else f"for the next period at {status.period_end.isoformat()}",
            deadline.isoformat(),
        )
        while utcnow() < deadline:
            time.sleep(max(min((deadline - utcnow()).total_seconds(), poll.total_seconds()), 0.0))
            status = ledger.budgets.binding_status(budget)
            reason = _closed(status, need)
            if reason is None:
                waited = (utcnow() - started).total_seconds()
                return True, f"greenflow: budget {budget!r} open again after {waited:.0f}s: {_spent_line(status)}"
            logger.info("greenflow: %s; %ss left to wait", reason, round((deadline - utcnow()).total_seconds()))
        closed_reason = _closed(status, need) or closed_reason
    message = f"greenflow: {closed_reason}"
    if mode == "wait":
        message += f"; the next period ({status.period_end.isoformat()}) starts after max_wait ({deadline.isoformat()})"
    _record_closed_gate(ledger, status, message, mode, need, started)
    if mode == "skip":
        logger.warning("%s: skipping the work behind this gate", message)
        return False, f"{message}: work skipped"
    raise BudgetExceeded(
        message, fix="wait for the next period, raise the limit with `greenflow budget set`, or use mode='skip'"
    )


def _closed(status: BudgetStatus, need: Quantity | None) -> str | None:
    name = status.budget.name
    if status.exhausted:
        return f"budget {name!r} is spent ({_spent_line(status)})"
    if need is not None:
        if need.unit != status.budget.unit:
            raise InvalidInput(
                f"estimate {need} is not in budget {name!r}'s unit ({status.budget.unit})",
                fix=f"give the estimate in {status.budget.unit}",
            )
        if need.value > status.remaining:
            return f"budget {name!r} cannot cover {status.format(need.value)} ({_spent_line(status)})"
    return None


def _spent_line(status: BudgetStatus) -> str:
    return (
        f"{status.format(status.spent)} of {status.format(status.budget.limit.value)} spent or reserved "
        f"({status.share_spent:.0%}), period ends {status.period_end.isoformat()}"
    )


def _record_closed_gate(
    ledger: Ledger, status: BudgetStatus, message: str, mode: str, need: Quantity | None, requested_at: datetime
) -> None:
    record_check(
        "skipped_budget",
        not_metered="not run: the budget gate was closed; the work behind it did not start",
        ledger=ledger,
        identity=_gate_identity(BUDGET_GATE),
        requested_at=requested_at,
        budget=status.budget.name,
        policy={"gate": "carbon_budget_gate", "mode": mode, "estimate": None if need is None else str(need)},
        error=message,
        extra={"gate": {"kind": "budget", "status": status.to_dict()}},
    )


# -- the governance gate -----------------------------------------------------------------------------
def governance_gate(
    *,
    budget: str | None = None,
    region: str | None = None,
    provider: str = "ukgrid",
    provider_options: dict[str, Any] | None = None,
    credentials: CredentialsOption = None,
    expected_duration: str | timedelta = "1h",
    reduce_above: float | None = None,
    reduce_when_spent: float = 0.8,
    on_provider_error: str = "run",
    ledger: LedgerOption = None,
    wait_for: Iterable[Any] | None = None,
) -> Choice:
    """Choose ``"full"``, ``"reduced"`` or ``"skipped"`` validation; the choice is written to the ledger.

    * ``skipped`` when ``budget`` is spent (entry ``skipped_budget``);
    * ``reduced`` when the grid in ``region`` is dirtier than ``reduce_above`` gCO2e/kWh over the next
      ``expected_duration``, or when at least ``reduce_when_spent`` of the budget is spent (entry
      ``degraded``);
    * ``full`` otherwise (entry ``ran_now``).

    Without a forecast (provider down, ``on_provider_error="run"``) the choice rests on the budget alone,
    and the entry says so.
    """
    from prefect.context import FlowRunContext, TaskRunContext

    _check_governance_inputs(region, provider, provider_options, expected_duration, reduce_above, reduce_when_spent)
    args = (budget, region, provider, provider_options, credentials, expected_duration, reduce_above)
    rest = (reduce_when_spent, on_provider_error, ledger)
    if FlowRunContext.get() is None or TaskRunContext.get() is not None:
        return _governance(*args, *rest)[0]
    state = cast("State[Any]", governance_gate_task(*args, *rest, return_state=True, wait_for=wait_for))
    choice: Choice = state.result()
    return choice


def _check_governance_inputs(
    region: str | None,
    provider: str,
    provider_options: dict[str, Any] | None,
    expected_duration: str | timedelta,
    reduce_above: float | None,
    reduce_when_spent: float,
) -> None:
    GatePolicy.tiered(reduce_above=reduce_above, reduce_when_spent=reduce_when_spent)  # validates both
    _governance_spec(region, provider, provider_options, expected_duration, "run")


def _governance_spec(
    region: str | None,
    provider: str,
    provider_options: dict[str, Any] | None,
    expected_duration: str | timedelta,
    on_provider_error: str,
) -> CarbonSpec:
    return CarbonSpec.build(
        region=region,
        provider=provider,
        provider_options=provider_options,
        expected_duration=expected_duration,
        max_delay=0,
        on_provider_error=on_provider_error,
    )


def _governance_state(
    budget: str | None,
    region: str | None,
    provider: str,
    provider_options: dict[str, Any] | None,
    credentials: CredentialsOption,
    expected_duration: str | timedelta,
    reduce_above: float | None,
    reduce_when_spent: float,
    on_provider_error: str,
    ledger: LedgerOption,
) -> State[str]:
    """The governance gate as a Prefect task: ``Completed`` named after the choice, the reason as message."""
    from prefect.states import Completed

    choice, reason = _governance(
        budget,
        region,
        provider,
        provider_options,
        credentials,
        expected_duration,
        reduce_above,
        reduce_when_spent,
        on_provider_error,
        ledger,
    )
    names = {"full": "Completed", "reduced": "Reduced", "skipped": "Skipped"}
    return Completed(message=f"greenflow: {choice} validation: {reason}", name=names[choice], data=choice)


def _governance(
    budget: str | None,
    region: str | None,
    provider: str,
    provider_options: dict[str, Any] | None,
    credentials: CredentialsOption,
    expected_duration: str | timedelta,
    reduce_above: float | None,
    reduce_when_spent: float,
    on_provider_error: str,
    ledger_option: LedgerOption,
) -> tuple[Choice, str]:
    ledger = resolve_ledger(ledger_option)
    identity = _gate_identity(GOVERNANCE_GATE)
    spec = _governance_spec(region, provider, provider_options, expected_duration, on_provider_error)
    intensity: float | None = None
    source: str | None = None
    forecast_note: str | None = None
    decision: Decision | None = None
    lifecycle: Lifecycle | None = None
    if region is not None:
        lifecycle = Lifecycle(spec, identity, ledger=ledger, provider=resolve_provider(spec, credentials))
        decision = lifecycle.plan()
        plan = decision.plan or {}
        intensity = plan.get("expected_gco2_per_kwh")
        source = f"forecast from {provider}" if intensity is not None else None
        forecast_note = decision.forecast_note or (None if intensity is not None else decision.reason)
    status = notify_budget(ledger, budget) if budget is not None else None
    policy = GatePolicy.tiered(reduce_above=reduce_above, reduce_when_spent=reduce_when_spent)
    inputs = GateInputs(intensity_now=intensity, green_now=None, budget=None if status is None else status.to_dict())
    chosen = policy.choose(inputs, status)
    choice = cast(Choice, (chosen.branch or ("full",))[0])
    reason = _governance_reason(choice, policy, inputs, status, budget, region)
    if region is not None and intensity is None:
        reason += f"; no intensity for {region} ({forecast_note}): decided on the budget alone"
    gate = {
        "kind": "governance",
        "choice": choice,
        "reason": reason,
        "budget_status": None if status is None else status.to_dict(),
        "rule": chosen.to_dict(),
        "inputs": inputs.to_dict(),
        "policy": policy.to_dict(),
    }
    rule = {
        "gate": "governance_gate",
        "reduce_above_g_per_kwh": reduce_above,
        "reduce_when_spent": reduce_when_spent,
        "region": region,
        "provider": provider,
    }
    common: dict[str, Any] = {
        "not_metered": "a gate's decision: nothing is metered here; the work it lets through records its own entry",
        "let_through": choice != "skipped",
        "budget": budget,
        "policy": rule,
        "intensity_g_per_kwh": intensity,
        "intensity_source": source,
    }
    if lifecycle is not None and decision is not None:
        # Planned on the forecast: the entry carries the forecast and the plan in the lifecycle's clock (a
        # replay's trace time, marked so); the gate acts at once, so the plan's later window is no wait.
        record_check(
            chosen.outcome, lifecycle=lifecycle, decision=decision, at_once=True, extra={"gate": gate}, **common
        )
    else:
        record_check(
            chosen.outcome,
            ledger=ledger,
            identity=identity,
            extra={"gate": gate, "decision_reason": reason},
            **common,
        )
    run_logger().info("greenflow: governance gate chose %s validation: %s", choice, reason)
    return choice, reason


def _governance_reason(
    choice: Choice,
    policy: GatePolicy,
    inputs: GateInputs,
    status: BudgetStatus | None,
    budget: str | None,
    region: str | None,
) -> str:
    """Why the policy chose ``choice``: every reduce condition that held, or the inputs of a full run."""
    if choice == "skipped" and status is not None:
        return f"budget {budget!r} is spent ({_spent_line(status)})"
    if choice == "reduced":
        held = [
            text
            for rule in policy.holding(inputs, status)
            if rule.branch == ("reduced",)
            for text in rule.explain(inputs, status)
        ]
        return "; ".join(held)
    parts = []
    if inputs.intensity_now is not None:
        parts.append(f"grid in {region} at {inputs.intensity_now:.0f} gCO2e/kWh")
    if status is not None:
        parts.append(f"budget {budget!r} {status.share_spent:.0%} spent")
    return ", ".join(parts) or "no budget or region to limit it"


def _gate_identity(gate: str) -> Identity:
    """The gate's own attempt: its task run, or a fresh id when it runs inline (never the caller's task,
    whose own entry would otherwise be taken for a duplicate of the gate's)."""
    from prefect.context import TaskRunContext

    run = current_run(_gate_identity)
    task_ctx = TaskRunContext.get()
    if task_ctx is not None and task_ctx.task.name == gate:
        return run.identity
    base = run.identity
    return Identity(base.orchestrator, base.workflow_id, base.run_id, f"{gate}-{uuid.uuid4().hex[:8]}")


# NO_CACHE: a gate must look at the budget every time it runs, never reuse an earlier answer.
budget_gate_task: Task[..., Any] = task(name=BUDGET_GATE, cache_policy=NO_CACHE)(_budget_gate_state)
"""The budget gate as a Prefect task, for ``.submit(...)`` and ``wait_for=[...]`` chains (its future's
result is what :func:`carbon_budget_gate` returns)."""
governance_gate_task: Task[..., Any] = task(name=GOVERNANCE_GATE, cache_policy=NO_CACHE)(_governance_state)
"""The governance gate as a Prefect task (its future's result is the choice)."""
