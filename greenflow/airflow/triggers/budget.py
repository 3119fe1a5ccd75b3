"""CarbonBudgetTrigger: waits in the triggerer until a spent carbon budget has room again.

Room comes back when the budget's period ends (a new period starts empty) or earlier, when reservations
are released or settle below their estimates. So the trigger re-reads the budget every
``recheck_seconds`` and at the period's end, in greenflow's thread pool (the ledger is a database), so the
triggerer's event loop never blocks; this module imports the ledger only there. It only reads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from greenflow.airflow.ledger_access import aledger_url
from greenflow.airflow.resources import ledger_at, run_blocking
from greenflow.clock import parse_time, utcnow

if TYPE_CHECKING:
    from greenflow.ledger import BudgetStatus, Ledger

log = logging.getLogger(__name__)


class CarbonBudgetTrigger(BaseTrigger):
    """Fires once ``budget`` has at least ``min_remaining`` (or anything, when unset) left.

    :param budget: the budget's name.
    :param period_end: when the budget's current period ends (aware datetime).
    :param min_remaining: the room needed, e.g. ``"50g"`` or ``"0.2kWh"`` (``None``: not exhausted).
    :param ledger_conn_id: the ledger holding the budget.
    :param recheck_seconds: how often to re-read the budget before the period ends.
    :param requested_at: when the sensor started waiting (returned in the event).
    """

    def __init__(
        self,
        *,
        budget: str,
        period_end: datetime | str,
        min_remaining: str | None = None,
        ledger_conn_id: str | None = None,
        recheck_seconds: float = 300.0,
        requested_at: datetime | str | None = None,
        workflow_id: str | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.budget = budget
        self.period_end = parse_time(period_end, "period_end")
        self.min_remaining = min_remaining
        self.ledger_conn_id = ledger_conn_id
        self.recheck_seconds = float(recheck_seconds)
        # Echoed in the event: the resumed sensor is a fresh instance and must know when the wait began.
        self.requested_at = parse_time(requested_at, "requested_at") if requested_at is not None else utcnow()
        # The waiting DAG: budgets scoped to it (and all that count the same work) must have room too.
        self.workflow_id = workflow_id

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and primitive arguments."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "budget": self.budget,
                "period_end": self.period_end,
                "min_remaining": self.min_remaining,
                "ledger_conn_id": self.ledger_conn_id,
                "recheck_seconds": self.recheck_seconds,
                "requested_at": self.requested_at,
                "workflow_id": self.workflow_id,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Re-read the budget until it has room; fire with its status."""
        url = await aledger_url(self.ledger_conn_id)
        ledger = await run_blocking(ledger_at, url)
        period_end = self.period_end
        recheck = timedelta(seconds=max(self.recheck_seconds, 0.1))
        checks = 0
        while True:
            now = utcnow()
            await asyncio.sleep(max((min(now + recheck, period_end) - now).total_seconds(), 0.0))
            checked = await run_blocking(self._check, ledger)
            if checked is None:
                continue
            status, room = checked
            checks += 1
            if room:
                yield TriggerEvent(  # type: ignore[no-untyped-call]
                    {"status": status.to_dict(), "checks": checks, "requested_at": self.requested_at.isoformat()}
                )
                return
            period_end = status.period_end

    def _check(self, ledger: Ledger) -> tuple[BudgetStatus, bool] | None:
        """The budget's status and whether it has the room asked for; ``None`` if it cannot be read now.

        Runs in a thread (it reads the database). A bad ``min_remaining`` still fails the trigger.
        """
        from greenflow.governance import has_room
        from greenflow.ledger.budgets import Attempt

        try:
            attempt = Attempt(self.workflow_id) if self.workflow_id else None
            status = ledger.budgets.binding_status(self.budget, attempt)
        except Exception as error:  # the database may be briefly unreachable: keep waiting
            log.warning("greenflow: cannot read budget %r (%s); will retry", self.budget, error)
            return None
        return status, has_room(status, self.min_remaining)
