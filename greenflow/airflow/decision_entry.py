"""Ledger entries for decisions greenflow makes but does not meter: a sensor's wait, a gate's choice.

The lifecycle records the attempts it runs itself; these entries carry the same decision fields (the
forecast, the policy and its inputs, the planned start) with no measurement and a note saying why.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from greenflow.ledger import Entry
from greenflow.ledger.entry import Decision as Outcome
from greenflow.lifecycle import Decision, Lifecycle


def record_decision(
    lifecycle: Lifecycle,
    decision: Decision,
    outcome: Outcome,
    *,
    reason: str,
    extra: dict[str, Any] | None = None,
    actual_start: datetime | None = None,
) -> Entry:
    """Append (idempotently per attempt) an entry for ``decision`` with ``outcome`` and no measurement."""
    # The core keeps the mapping Decision -> entry fields private; a public Lifecycle.decision_fields()
    # (or Lifecycle.record_decision) is requested from the core so this adapter stops reaching in.
    fields: dict[str, Any] = lifecycle.decision_fields(decision)
    fields["extra"] = {**fields.get("extra", {}), **(extra or {})}
    entry = Entry.for_attempt(
        lifecycle.identity,
        outcome,
        **fields,
        actual_start=actual_start,
        measurement_notes={"reason": reason},
    )
    return lifecycle.ledger.append(entry)
