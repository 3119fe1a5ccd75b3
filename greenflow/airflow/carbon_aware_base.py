"""What every planning greenflow operator shares: its carbon-aware arguments and the lifecycle's steps.

The arguments are the options table's Airflow rows (:data:`greenflow.options.OPTIONS`: names, defaults,
parsing, help). The steps are the core's state machine (:meth:`~greenflow.lifecycle.Lifecycle.advance`:
plan → reserve → wait → run, or skip, or fail). This class only translates them to Airflow: the attempt's
identity from the task context, the ledger and the provider from connections, a ``Wait`` as a deferral to
:class:`CarbonWindowTrigger` (no worker slot held), a ``Skip`` as a skipped or failed task, a ``Fail`` as a
failed task.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar, NoReturn, TypeVar

from airflow.sdk import BaseOperator
from airflow.sdk.definitions.mappedoperator import OperatorPartial
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from greenflow.airflow.identity import identity_from_context, identity_to_dict
from greenflow.airflow.ledger_access import open_ledger
from greenflow.airflow.links.ledger import GreenflowLedgerLink
from greenflow.airflow.log_lines import describe_decision, describe_entry
from greenflow.airflow.mapped_validation import carbon_aware_partial
from greenflow.airflow.routed import RoutedLifecycle, route_for
from greenflow.airflow.settings import duration_option
from greenflow.airflow.settings import on_budget_exceeded as budget_refusal_setting
from greenflow.airflow.spec_params import (
    SPEC_ARGS,
    check_execution_timeout,
    runtime_spec,
    trigger_spec_kwargs,
    validate_at_parse,
)
from greenflow.airflow.triggers.window import CarbonWindowTrigger
from greenflow.errors import InvalidInput
from greenflow.ledger import Entry
from greenflow.lifecycle import ActiveSegment, Decision, Lifecycle, SegmentRun
from greenflow.options import options_for
from greenflow.steps import Fail, Run, Skip, Step, Wait
from greenflow.units import Quantity

ENTRY_XCOM_KEY = "greenflow_entry_id"
"""XCom key under which every greenflow task publishes the id of its attempt's ledger entry."""

R = TypeVar("R")


_DEFAULT: Mapping[str, Any] = {option.name: option.default_for("airflow") for option in options_for("airflow")}
"""Each Airflow option's default, from the options table (the operator's signature reads them here)."""


class _ConfiguredDefault(str):
    """The table's default of an option an Airflow setting may replace: equal to it, told apart by identity."""

    __slots__ = ()


# ``on_budget_exceeded``'s default is the table's ("skip"), but ``[greenflow] on_budget_exceeded`` replaces it
# for every task that does not choose: the signature's default is this very object, so a task that passes
# "skip" itself keeps it whatever the configuration says.
ON_BUDGET_EXCEEDED_DEFAULT = _ConfiguredDefault(_DEFAULT["on_budget_exceeded"])

# Arguments only Airflow has (connections), documented beside the table's.
_AIRFLOW_ARGS_DOC = (
    ":param provider_conn_id: Airflow connection with the provider's URL and credentials.\n"
    ":param ledger_conn_id: ``greenflow_ledger`` connection; default: the ``[greenflow]`` settings.\n"
)


def carbon_arguments_doc() -> str:
    """The ``:param:`` lines of the carbon-aware arguments, from the options table's help."""
    lines = [f":param {option.name}: {option.help}" for option in options_for("airflow")]
    return "\n".join(lines) + "\n" + _AIRFLOW_ARGS_DOC


class CarbonAwareBaseOperator(BaseOperator):
    """Base of greenflow's planning operators; see :class:`CarbonAwareOperator`.

    Takes every option of the options table's Airflow rows (docs/configuration.md), with the table's
    defaults (``on_budget_exceeded``: the ``[greenflow]`` setting, else the table's), and the connections:
    """

    # Which arguments make sense for the subclass: a sensor or a gate runs no work and reserves nothing.
    reserves_budget: ClassVar[bool] = True
    uses_budget: ClassVar[bool] = True
    # A task a GreenGateOperator routed to runs at the route's start instead of planning again (routed.py).
    follows_routes: ClassVar[bool] = False

    operator_extra_links = (GreenflowLedgerLink(),)

    # The carbon options stay explicit parameters here, not ``**options: Unpack[CarbonOptions]`` as in the
    # core and the Prefect decorator: Airflow's BaseOperatorMeta fills ``default_args`` only into the
    # parameters named in ``__init__``'s signature, so DAG-level carbon defaults would silently vanish.
    # Their defaults are read from the table; tests/airflow/operators/test_carbon_options.py keeps the names
    # equal to the table's Airflow rows.
    def __init__(
        self,
        *,
        region: str | None = _DEFAULT["region"],
        regions: Sequence[str] = _DEFAULT["regions"],
        provider: str = _DEFAULT["provider"],
        provider_options: Mapping[str, Any] | None = _DEFAULT["provider_options"],
        provider_conn_id: str | None = None,
        expected_duration: str | timedelta | float = _DEFAULT["expected_duration"],
        deadline: str | datetime | timedelta | None = _DEFAULT["deadline"],
        max_delay: str | timedelta | float | None = _DEFAULT["max_delay"],
        min_savings: float = _DEFAULT["min_savings"],
        threshold: float | None = _DEFAULT["threshold"],
        on_provider_error: str = _DEFAULT["on_provider_error"],
        max_staleness: str | timedelta = _DEFAULT["max_staleness"],
        forecast_correction: bool | str = _DEFAULT["forecast_correction"],
        interruptible: bool | str = _DEFAULT["interruptible"],
        resume_overhead: str | timedelta | float = _DEFAULT["resume_overhead"],
        min_segment: str | timedelta | float = _DEFAULT["min_segment"],
        grace: str | timedelta | float = _DEFAULT["grace"],
        budget: str | None = _DEFAULT["budget"],
        estimate: str | None = _DEFAULT["estimate"],
        on_budget_exceeded: str | None = ON_BUDGET_EXCEEDED_DEFAULT,
        pue: float | None = _DEFAULT["pue"],
        embodied: str | float | None = _DEFAULT["embodied"],
        functional_unit: str | None = _DEFAULT["functional_unit"],
        functional_units: float | None = _DEFAULT["functional_units"],
        tags: Sequence[str] = _DEFAULT["tags"],
        team: str | None = _DEFAULT["team"],
        sample_interval: float = _DEFAULT["sample_interval"],
        ledger_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        given = dict(locals())  # first: exactly the parameters, by name
        super().__init__(**kwargs)
        chosen = None if on_budget_exceeded is ON_BUDGET_EXCEEDED_DEFAULT else on_budget_exceeded
        self.refuse_inapplicable(budget=budget, estimate=estimate, on_budget_exceeded=chosen)
        self.spec_args: dict[str, Any] = {name: given[name] for name in SPEC_ARGS}
        self.provider_options = dict(provider_options or {})
        self.provider_conn_id = provider_conn_id
        self.ledger_conn_id = ledger_conn_id
        self.on_budget_exceeded = budget_refusal_setting(chosen) if self.reserves_budget else None
        # Parse time: a bad value fails the DAG import right here, with the options table's message.
        spec = validate_at_parse(self.spec_args, self.provider_options, provider_conn_id)
        check_execution_timeout(spec, self.execution_timeout)

    @classmethod
    def partial(cls, **kwargs: Any) -> OperatorPartial:
        """Airflow's ``partial()`` for mapping; ``expand()`` then validates the carbon-aware arguments.

        Arguments given here are checked when the DAG is parsed, with the messages ``__init__`` gives;
        arguments that are themselves mapped can only be checked per instance (a bad mapped value fails
        that instance with the same message). See :mod:`greenflow.airflow.mapped_validation`.
        """
        return carbon_aware_partial(cls, **kwargs)

    @classmethod
    def refuse_inapplicable(cls, *, budget: Any, estimate: Any, on_budget_exceeded: Any) -> None:
        """Refuse budget arguments the operator cannot use (a sensor or a gate runs no work)."""
        name = cls.__name__
        if budget is not None and not cls.uses_budget:
            raise InvalidInput(
                f"{name} does not take a budget (it runs no work)",
                fix="put budget= on the task doing the work, or gate on it with CarbonBudgetSensor",
            )
        if (estimate is not None or on_budget_exceeded is not None) and not cls.reserves_budget:
            raise InvalidInput(
                f"{name} reserves nothing, so estimate/on_budget_exceeded do not apply",
                fix="remove them (the tasks doing the work reserve their own estimates)",
            )

    # -- the lifecycle, from the task context ----------------------------------------------------------
    def carbon_lifecycle(self, context: Any) -> Lifecycle:
        """The core lifecycle for this attempt (rendered options, connection credentials, the ledger).

        For an operator that ``follows_routes``, started by a region route (XCom ``greenflow_route`` of a
        direct upstream task naming it), the lifecycle's plan is the route's: run at once, recorded as routed.
        """
        spec, provider = runtime_spec(self.spec_args, self.provider_options, self.provider_conn_id)
        identity, ledger = identity_from_context(context), open_ledger(self.ledger_conn_id)
        if self.follows_routes:
            try:
                route = route_for(self.task_id, self.upstream_task_ids, context["ti"], ledger, spec)
            except InvalidInput as error:  # a DAG mistake: retrying cannot help
                raise AirflowFailException(f"greenflow: {error.one_line()}") from error
            if route is not None:
                return RoutedLifecycle(route, spec, identity, ledger=ledger, provider=provider)
        return Lifecycle(spec, identity, ledger=ledger, provider=provider)

    def plan(self, lifecycle: Lifecycle) -> Decision:
        """Plan only (a poke, a governance gate: nothing waits or reserves) and log the decision."""
        decision = lifecycle.plan()
        self.log.info("greenflow plan: %s", describe_decision(decision))
        return decision

    def start(self, context: Any, lifecycle: Lifecycle) -> Decision:
        """Start the attempt: the decision to run under now, or defer, skip or fail the task.

        A routed task's second and later tries are retries of the route's decision (they run at once); any
        other try plans afresh.
        """
        retry_of = lifecycle.retry_of if isinstance(lifecycle, RoutedLifecycle) else None
        step = lifecycle.advance(retry_of=retry_of, reserve=self.reserves_budget)
        return self.follow(context, lifecycle, step)

    def resume(self, context: Any, lifecycle: Lifecycle, event: Mapping[str, Any]) -> Decision:
        """Resume after the trigger fired (a fresh operator instance: the decision comes from the event).

        The attempt waited, so it runs now; if it was waiting for a forecast (a provider outage), the core
        asks again first and its outage policy decides (run, wait again, or fail).
        """
        decision = Decision.from_dict(dict(event["decision"]))
        moved = event.get("moved_earlier_from")
        self.log.info(
            "greenflow: window trigger fired (%s after %s refreshes%s): %s",
            event.get("fired"),
            event.get("refreshes"),
            f", start moved earlier from {moved}" if moved else "",
            describe_decision(decision),
        )
        step = lifecycle.advance(decision, waited=True, reserve=self.reserves_budget)
        return self.follow(context, lifecycle, step)

    def follow(self, context: Any, lifecycle: Lifecycle, step: Step) -> Decision:
        """Translate a step: ``Run`` → its decision; ``Wait`` → defer; ``Skip`` → skip/fail; ``Fail`` → fail."""
        if isinstance(step, Run):
            self._log_plan(step.decision)
            return step.decision
        if isinstance(step, Wait):
            self._log_plan(step.decision)
            self.defer_until(lifecycle, step)
        if isinstance(step, Skip):
            self.publish_entry(context, step.entry)
            message = f"greenflow: budget {step.decision.budget!r} refused the attempt: {step.refusal.one_line()}"
            if self.on_budget_exceeded == "fail":
                raise AirflowFailException(message) from step.refusal
            raise AirflowSkipException(message) from step.refusal
        assert isinstance(step, Fail)
        if step.entry is not None:
            self.publish_entry(context, step.entry)
        raise AirflowFailException(f"greenflow: {step.error.one_line()}") from step.error

    def _log_plan(self, decision: Decision) -> None:
        self.log.info("greenflow plan: %s", describe_decision(decision))
        if decision.reservation_id:
            self.log.info(
                "greenflow: reserved %s against budget %s (%s)",
                _grams(decision.estimate_g),
                decision.budget,
                decision.estimate_source,
            )

    def defer_until(self, lifecycle: Lifecycle, step: Wait, method_name: str = "execute_complete") -> NoReturn:
        """Defer to :class:`CarbonWindowTrigger` until the step's time (raises ``TaskDeferred``).

        No deferral timeout: the trigger itself fires by the latest start that meets the deadline, and
        Airflow's ``execution_timeout`` (which counts deferred time) was checked at parse time.
        """
        provider = lifecycle.provider
        cadence = provider.refresh_interval if provider.refresh_interval > timedelta(0) else None
        refresh = cadence or duration_option("refresh_interval")
        self.log.info(
            "greenflow: deferring until %s (wall clock%s); no worker slot is held",
            step.until.isoformat(),
            ", waiting for a forecast" if step.for_forecast else "",
        )
        self.defer(
            trigger=CarbonWindowTrigger(
                decision=step.decision.to_dict(),
                spec=trigger_spec_kwargs(lifecycle.spec, self.provider_options),
                identity=identity_to_dict(lifecycle.identity),
                provider_conn_id=self.provider_conn_id,
                ledger_conn_id=self.ledger_conn_id,
                refresh_seconds=refresh.total_seconds(),
            ),
            method_name=method_name,
        )

    # -- meter, record, settle ---------------------------------------------------------------------------
    def run_metered(self, context: Any, lifecycle: Lifecycle, decision: Decision, body: Callable[[], R]) -> R:
        """Run ``body`` under the meter; the attempt's entry is recorded (``failed`` too) and published."""
        active = None
        try:
            with lifecycle.metered(decision) as active:
                value = body()
                active.value = value
                return value
        finally:
            if active is not None and active.entry is not None:
                self.publish_entry(context, active.entry)

    def run_segments(
        self,
        context: Any,
        lifecycle: Lifecycle,
        decision: Decision,
        body: Callable[[SegmentRun, dict[str, Any]], bool],
    ) -> None:
        """Run an interruptible attempt's segments from ``decision`` until the work is done or it must wait.

        ``body(segment, notes)`` runs the work until ``segment.stop_wall`` (``None``: to completion) and
        returns ``True`` when the work is done. Each segment is metered and recorded (one linked entry each,
        published); if the work is not done the task defers to :class:`CarbonWindowTrigger` until the next
        segment (nothing held between segments; the trigger re-plans the rest at forecast refreshes) and
        ``execute_complete`` calls this again. Returns when the work is done; a body that raises has its
        segment recorded ``failed`` and the exception propagates.
        """
        while True:
            active: ActiveSegment | None = None
            try:
                with lifecycle.metered_segment(decision) as active:
                    segment = active.segment
                    self.log.info(
                        "greenflow: segment %d of %d planned%s",
                        segment.index + 1,
                        segment.of,
                        f", stops at {segment.stop_at.isoformat()} ({segment.stop_wall.isoformat()} wall clock)"
                        if segment.stop_at is not None and segment.stop_wall is not None
                        else ": runs to completion",
                    )
                    active.done = bool(body(segment, active.notes))
            finally:
                if active is not None and active.entry is not None:
                    self.publish_entry(context, active.entry)
            if active.next is None:
                return
            # The next segment: a Wait defers (raises TaskDeferred); a start already due runs here at once.
            decision = self.follow(context, lifecycle, lifecycle.advance(active.next, reserve=self.reserves_budget))

    def publish_entry(self, context: Any, entry: Entry) -> None:
        """Log the entry and push its id to XCom (``greenflow_entry_id``)."""
        self.log.info("greenflow: %s", describe_entry(entry))
        context["ti"].xcom_push(key=ENTRY_XCOM_KEY, value=entry.entry_id)


def _grams(value: float | None) -> str:
    return "an unknown amount" if value is None else str(Quantity(value, "gCO2e"))


# The arguments' documentation is the options table's help: one text, shown by help() and IDEs.
_SUMMARY = inspect.cleandoc(CarbonAwareBaseOperator.__doc__ or "")
CarbonAwareBaseOperator.__doc__ = f"{_SUMMARY}\n\n{carbon_arguments_doc()}"
