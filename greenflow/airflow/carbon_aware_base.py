"""What every planning greenflow operator shares: its carbon-aware arguments and the lifecycle's steps.

The steps are the core's (:class:`~greenflow.lifecycle.Lifecycle`): plan → reserve → wait → meter →
record → settle. This class only supplies Airflow's side: the attempt's identity from the task context,
the ledger and the provider from connections, waiting as a deferral to :class:`CarbonWindowTrigger` (no
worker slot held), and budget refusal as a skipped or failed task.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar, TypeVar

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
    check_execution_timeout,
    runtime_spec,
    trigger_spec_kwargs,
    validate_at_parse,
)
from greenflow.airflow.triggers.window import CarbonWindowTrigger
from greenflow.clock import utcnow
from greenflow.errors import BudgetExceeded, InvalidInput
from greenflow.ledger import Entry
from greenflow.lifecycle import Decision, Lifecycle
from greenflow.options import CarbonOptions
from greenflow.units import Quantity

ENTRY_XCOM_KEY = "greenflow_entry_id"
"""XCom key under which every greenflow task publishes the id of its attempt's ledger entry."""

R = TypeVar("R")


class CarbonAwareBaseOperator(BaseOperator):
    """Base of greenflow's planning operators; see :class:`CarbonAwareOperator` for the arguments.

    :param region: the home region (provider's naming, e.g. ``GB``, ``national``, ``DE``).
    :param regions: more regions the work may run in (spatial shifting); the first listed is home.
    :param provider: the intensity provider's name (``ukgrid``, ``electricitymaps``, ``watttime``,
        ``carbon-aware-sdk``, ``trace``).
    :param provider_options: non-secret provider options (templated; e.g. a trace replay's ``now``).
    :param provider_conn_id: Airflow connection with the provider's URL and credentials.
    :param expected_duration: how long the work runs (``"2h"``, a timedelta or seconds).
    :param deadline: latest finish: an aware datetime, or a duration after the request (``"12h"``).
    :param max_delay: latest start after the request (instead of ``deadline``); default 12 hours.
    :param min_savings: minimum saving (percent) worth waiting for.
    :param threshold: intensity (gCO2e/kWh) at or below which the work starts at once.
    :param budget: carbon budget the attempt reserves its estimate against.
    :param estimate: the attempt's estimate (``"20g"`` or ``"0.5kWh"``); default: history, then a default.
    :param on_budget_exceeded: ``skip`` or ``fail`` when the budget cannot cover the estimate.
    :param on_provider_error: ``run``, ``wait`` or ``fail`` when no forecast can be had.
    :param max_staleness: how old a last good forecast may be during an outage.
    :param forecast_correction: ``True`` (or ``"bias+carry"``) corrects each forecast with its own recent
        errors before planning; off by default (see the core option).
    :param pue: the facility's power usage effectiveness (kept apart from device energy).
    :param embodied: embodied emissions charged to the attempt (``"120g"``).
    :param functional_unit: what R counts in SCI (``"1k images"``); ``functional_units``: how many.
    :param tags: ledger tags (budgets can be scoped by tag); ``team``: the owning team.
    :param sample_interval: seconds between power samples while metering.
    :param ledger_conn_id: ``greenflow_ledger`` connection; default: the ``[greenflow]`` settings.
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
    # tests/airflow/operators/test_carbon_options.py keeps names and defaults equal to CarbonOptions'.
    def __init__(
        self,
        *,
        region: str | None = None,
        regions: Sequence[str] = (),
        provider: str = "ukgrid",
        provider_options: Mapping[str, Any] | None = None,
        provider_conn_id: str | None = None,
        expected_duration: str | timedelta | float = timedelta(hours=1),
        deadline: str | datetime | timedelta | None = None,
        max_delay: str | timedelta | float | None = None,
        min_savings: float = 0.0,
        threshold: float | None = None,
        budget: str | None = None,
        estimate: str | None = None,
        on_budget_exceeded: str | None = None,
        on_provider_error: str = "wait",
        max_staleness: str | timedelta = timedelta(hours=6),
        forecast_correction: bool | str = False,
        pue: float | None = None,
        embodied: str | float | None = None,
        functional_unit: str | None = None,
        functional_units: float | None = None,
        tags: Sequence[str] = (),
        team: str | None = None,
        sample_interval: float = 0.1,
        ledger_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.refuse_inapplicable(budget=budget, estimate=estimate, on_budget_exceeded=on_budget_exceeded)
        # Typed as the core's options: mypy checks this signature's types against CarbonSpec.build's.
        spec_args: CarbonOptions = {
            "region": region,
            "regions": list(regions),
            "provider": provider,
            "expected_duration": expected_duration,
            "deadline": deadline,
            "max_delay": max_delay,
            "min_savings": min_savings,
            "threshold": threshold,
            "budget": budget,
            "estimate": estimate,
            "on_provider_error": on_provider_error,
            "max_staleness": max_staleness,
            "forecast_correction": forecast_correction,
            "pue": pue,
            "embodied": embodied,
            "functional_unit": functional_unit,
            "functional_units": functional_units,
            "tags": list(tags),
            "team": team,
            "sample_interval": sample_interval,
        }
        self.spec_args: dict[str, Any] = dict(spec_args)
        self.provider_options = dict(provider_options or {})
        self.provider_conn_id = provider_conn_id
        self.ledger_conn_id = ledger_conn_id
        self.on_budget_exceeded = budget_refusal_setting(on_budget_exceeded) if self.reserves_budget else None
        # Parse time: a bad region, provider, time zone or duration fails the DAG import right here.
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
        """Plan the attempt and log the decision."""
        decision = lifecycle.plan()
        self.log.info("greenflow plan: %s", describe_decision(decision))
        return decision

    def reserve(self, context: Any, lifecycle: Lifecycle, decision: Decision) -> Decision:
        """Reserve the estimate; on refusal record ``skipped_budget`` and skip or fail the task."""
        try:
            reserved = lifecycle.reserve(decision)
        except BudgetExceeded as refusal:
            entry = lifecycle.skip(decision, refusal)
            self.publish_entry(context, entry)
            message = f"greenflow: budget {decision.budget!r} refused the attempt: {refusal.one_line()}"
            if self.on_budget_exceeded == "fail":
                raise AirflowFailException(message) from refusal
            raise AirflowSkipException(message) from refusal
        if reserved.reservation_id:
            self.log.info(
                "greenflow: reserved %s against budget %s (%s)",
                _grams(reserved.estimate_g),
                reserved.budget,
                reserved.estimate_source,
            )
        return reserved

    def defer_to_window(
        self, lifecycle: Lifecycle, decision: Decision, method_name: str = "execute_complete"
    ) -> Decision:
        """Defer to the trigger when the decision says wait; otherwise return the decision to start with.

        No deferral timeout: the trigger itself fires by the latest start that meets the deadline, and
        Airflow's ``execution_timeout`` (which counts deferred time) was checked at parse time.
        """
        while decision.action == "retry" and decision.wake_at <= utcnow():
            # The outage policy's retry time has already come (a slow plan): ask again rather than wait.
            decision = lifecycle.plan(previous=decision)
            self.log.info("greenflow plan (retried): %s", describe_decision(decision))
        if decision.action == "run_now" or decision.wake_at <= utcnow():
            return decision
        provider = lifecycle.provider
        cadence = provider.refresh_interval if provider.refresh_interval > timedelta(0) else None
        refresh = cadence or duration_option("refresh_interval")
        self.log.info(
            "greenflow: deferring until %s (wall clock); no worker slot is held", decision.wake_at.isoformat()
        )
        self.defer(
            trigger=CarbonWindowTrigger(
                decision=decision.to_dict(),
                spec=trigger_spec_kwargs(lifecycle.spec, self.provider_options),
                identity=identity_to_dict(lifecycle.identity),
                provider_conn_id=self.provider_conn_id,
                ledger_conn_id=self.ledger_conn_id,
                refresh_seconds=refresh.total_seconds(),
            ),
            method_name=method_name,
        )

    def decision_from_event(self, lifecycle: Lifecycle, event: Mapping[str, Any]) -> Decision:
        """The decision the trigger fired with, logged with why it fired.

        It keeps the attempt's request (an Airflow retry plans afresh in ``execute``), so the attempt that
        waited in the triggerer is ``deferred``; a decision an older greenflow put in the event loads too.
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
        if decision.action == "retry":
            # The trigger could not re-plan (no forecast by the latest start): the outage policy decides now.
            # The same attempt, resuming (not retry=True): it waited, so it is recorded "deferred".
            decision = lifecycle.plan(previous=decision)
            self.log.info("greenflow plan after the wait: %s", describe_decision(decision))
        return decision

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

    def publish_entry(self, context: Any, entry: Entry) -> None:
        """Log the entry and push its id to XCom (``greenflow_entry_id``)."""
        self.log.info("greenflow: %s", describe_entry(entry))
        context["ti"].xcom_push(key=ENTRY_XCOM_KEY, value=entry.entry_id)


def _grams(value: float | None) -> str:
    return "an unknown amount" if value is None else str(Quantity(value, "gCO2e"))
