"""What an attempt does next: the steps :meth:`greenflow.lifecycle.Lifecycle.advance` returns.

Every entry point drives the same state machine and only translates its steps::

    step = lifecycle.advance()                       # plan, reserve
    while isinstance(step, Wait):                    # Airflow: defer to the trigger; Prefect: a Scheduled
        ... wait until step.until (wall clock) ...   # state or a sleep; greenflow run: a sleep
        step = lifecycle.advance(step.decision)      # the outage policy's retry, or the start has come
    if isinstance(step, Run): lifecycle.run(step.decision, fn)    # meter, record, settle
    elif isinstance(step, Skip): ...                 # the budget refused: recorded, nothing ran
    elif isinstance(step, Fail): ...                 # no forecast under on_provider_error="fail": recorded

``Skip`` and ``Fail`` carry the ledger entry already written, so no adapter builds an entry itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from greenflow.errors import BudgetExceeded, GreenflowError
    from greenflow.ledger.entry import Entry
    from greenflow.lifecycle import Decision


@dataclass(frozen=True)
class Wait:
    """Hold nothing until ``until`` (wall clock), then advance ``decision`` again.

    ``refresh`` is whether the wait should re-plan at forecast refreshes meanwhile (a planned window; not
    a provider-outage retry, whose next try is ``until`` itself).
    """

    decision: Decision
    until: datetime

    @property
    def for_forecast(self) -> bool:
        """True when the attempt waits for a forecast to come back (the outage policy's retry)."""
        return self.decision.action == "retry"


@dataclass(frozen=True)
class Run:
    """Start now under ``decision`` (meter, record, settle with :meth:`Lifecycle.run` / ``metered``)."""

    decision: Decision


@dataclass(frozen=True)
class Skip:
    """The budget refused the attempt: ``entry`` (``skipped_budget``) is recorded and nothing runs."""

    decision: Decision
    entry: Entry
    refusal: BudgetExceeded


@dataclass(frozen=True)
class Fail:
    """No forecast could be had and ``on_provider_error="fail"``: ``entry`` (``failed``) is recorded."""

    entry: Entry | None
    error: GreenflowError


Step = Wait | Run | Skip | Fail
"""One step of an attempt."""
