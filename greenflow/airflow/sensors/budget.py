"""CarbonBudgetSensor: block downstream work while a carbon budget is spent.

When the budget has room (not exhausted, and at least ``min_remaining`` left when given) the sensor
succeeds at once. When it has none, ``on_exhausted`` decides:

* ``wait``: **defer** (no worker, no poking) to :class:`CarbonBudgetTrigger` until the budget has room,
  at the latest when its next period starts;
* ``skip``: mark the sensor skipped, so downstream tasks are skipped (``soft_fail`` behaviour);
* ``fail``: fail the sensor.

Every outcome is logged with the budget's state and recorded in the ledger: ``ran_now`` (room),
``deferred`` (waited), ``skipped_budget`` (skip or fail), with the budget status in ``extra``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Literal

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from greenflow.airflow.carbon_aware_base import ENTRY_XCOM_KEY
from greenflow.airflow.identity import identity_from_context
from greenflow.airflow.ledger_access import open_ledger
from greenflow.airflow.links.ledger import GreenflowLedgerLink
from greenflow.airflow.settings import duration_option
from greenflow.airflow.triggers.budget import CarbonBudgetTrigger
from greenflow.check_entries import CheckOutcome, record_check
from greenflow.clock import parse_duration, parse_time, utcnow
from greenflow.errors import InvalidInput
from greenflow.governance import check_min_remaining, has_room
from greenflow.ledger import BudgetStatus, Ledger
from greenflow.ledger.budgets import Attempt

OnExhausted = Literal["wait", "skip", "fail"]
ON_EXHAUSTED: tuple[OnExhausted, ...] = ("wait", "skip", "fail")
_NOT_METERED = "not metered: a budget sensor runs no work"


class CarbonBudgetSensor(BaseSensorOperator):
    """Succeeds while ``budget`` has room; otherwise waits (deferred), skips or fails.

    :param budget: the budget's name (``greenflow budget set ...``).
    :param min_remaining: room required, in the budget's unit (``"50g"``, ``"0.2kWh"``).
    :param on_exhausted: ``wait`` (default), ``skip`` or ``fail``.
    :param recheck_interval: how often a waiting sensor re-reads the budget (default ``[greenflow]``).
    :param ledger_conn_id: ``greenflow_ledger`` connection; default: the ``[greenflow]`` settings.

    While waiting, the sensor's ``timeout`` (Airflow's, 7 days by default) still applies: set it to cover
    the budget's period. Returns (XCom) the budget status.
    """

    template_fields = ("budget",)
    operator_extra_links = (GreenflowLedgerLink(),)
    ui_color = "#ffe8cc"

    def __init__(
        self,
        *,
        budget: str,
        min_remaining: str | None = None,
        on_exhausted: str = "wait",
        recheck_interval: str | timedelta | float | None = None,
        ledger_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not budget or not str(budget).strip():
            raise InvalidInput("budget is empty", fix="name the budget to watch, e.g. budget='gpu-monthly'")
        if on_exhausted not in ON_EXHAUSTED:
            raise InvalidInput(
                f"on_exhausted={on_exhausted!r} is not wait, skip or fail",
                fix="wait defers until the budget has room; skip skips downstream; fail fails the sensor",
            )
        self.budget = budget
        self.min_remaining = check_min_remaining(min_remaining)
        self.on_exhausted: OnExhausted = on_exhausted
        self.recheck_interval = (
            None if recheck_interval is None else parse_duration(recheck_interval, "recheck_interval")
        )
        self.ledger_conn_id = ledger_conn_id

    def poke(self, context: Any) -> bool:
        """True when the budget has room (for poke/reschedule use)."""
        return has_room(self._status(open_ledger(self.ledger_conn_id), context), self.min_remaining)

    def execute(self, context: Any) -> dict[str, Any]:
        """Check the budget; pass, or wait / skip / fail as configured."""
        ledger = open_ledger(self.ledger_conn_id)
        status = self._status(ledger, context)
        self._log_status(status)
        requested = utcnow()
        if has_room(status, self.min_remaining):
            return self._record(context, ledger, status, "ran_now", requested)
        if self.on_exhausted == "wait":
            recheck = self.recheck_interval or duration_option("budget_recheck_interval")
            self.log.info(
                "greenflow: waiting (deferred) for budget %s, at the latest until %s", self.budget, status.period_end
            )
            self.defer(
                trigger=CarbonBudgetTrigger(
                    budget=self.budget,
                    period_end=status.period_end,
                    min_remaining=self.min_remaining,
                    ledger_conn_id=self.ledger_conn_id,
                    recheck_seconds=recheck.total_seconds(),
                    requested_at=requested,
                    workflow_id=identity_from_context(context).workflow_id,
                ),
                method_name="execute_complete",
                timeout=self.timeout,
            )
        self._record(context, ledger, status, "skipped_budget", requested)
        message = f"greenflow: budget {self.budget} has no room ({self._room_text(status)})"
        if self.on_exhausted == "skip":
            raise AirflowSkipException(message)
        raise AirflowFailException(message)

    def execute_complete(self, context: Any, event: Mapping[str, Any]) -> dict[str, Any]:
        """The budget has room again: record the wait and let downstream run."""
        ledger = open_ledger(self.ledger_conn_id)
        status = self._status(ledger, context)
        self._log_status(status)
        requested = parse_time(str(event["requested_at"]), "requested_at")
        return self._record(context, ledger, status, "deferred", requested, checks=event.get("checks"))

    # -- internals -----------------------------------------------------------------------------------
    def _status(self, ledger: Ledger, context: Any) -> BudgetStatus:
        # Every budget that also counts this DAG's work (same scope, scope all, workflow:<dag>) can close it.
        return ledger.budgets.binding_status(self.budget, Attempt(identity_from_context(context).workflow_id))

    def _room_text(self, status: BudgetStatus) -> str:
        needed = f", needs {self.min_remaining}" if self.min_remaining else ""
        # The binding budget may be another one counting the same work (e.g. the team's): name it.
        which = "" if status.budget.name == self.budget else f"budget {status.budget.name} (covers this work too) "
        return (
            f"{which}spent {status.format(status.spent)} of {status.format(status.budget.limit.value)}, "
            f"{status.format(status.remaining)} left{needed}; period ends {status.period_end.isoformat()}"
        )

    def _log_status(self, status: BudgetStatus) -> None:
        self.log.info("greenflow: budget %s: %s", self.budget, self._room_text(status))

    def _record(
        self,
        context: Any,
        ledger: Ledger,
        status: BudgetStatus,
        outcome: CheckOutcome,
        requested: datetime,
        checks: Any = None,
    ) -> dict[str, Any]:
        entry = record_check(
            outcome,
            not_metered=_NOT_METERED,
            ledger=ledger,
            identity=identity_from_context(context),
            requested_at=requested,
            budget=self.budget,
            policy={
                "sensor": "CarbonBudgetSensor",
                "on_exhausted": self.on_exhausted,
                "min_remaining": self.min_remaining,
            },
            extra={"budget_status": status.to_dict(), "checks": checks},
            error=None
            if outcome != "skipped_budget"
            else f"budget {self.budget} has no room: {self._room_text(status)}",
        )
        self.log.info("greenflow: ledger entry %s (%s)", entry.entry_id, entry.decision)
        context["ti"].xcom_push(key=ENTRY_XCOM_KEY, value=entry.entry_id)
        return status.to_dict()
