"""Reading the entries of a period and scope: only the columns a report needs, in seq order."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from greenflow.ledger import Ledger
from greenflow.ledger.models import EntryRow
from greenflow.report.attempt import LOADED_FIELDS, ReportAttempt, segment_fields, unmeasured_reason
from greenflow.report.period import ReportPeriod
from greenflow.report.scope import ReportScope

# An interruptible attempt's segment entries say so in extra["segment"] (NULL on every other entry).
_COLUMNS = [*(getattr(EntryRow, name) for name in LOADED_FIELDS), EntryRow.extra["segment"]]
# LOADED_FIELDS follow ReportAttempt's field order: rows build attempts positionally (cheaper than keywords).
_TAGS = LOADED_FIELDS.index("tags")
_BATCH = 5000


def load_attempts(ledger: Ledger, period: ReportPeriod, scope: ReportScope) -> list[ReportAttempt]:
    """The entries recorded in ``period`` within ``scope``, lightest form, oldest first."""
    query = (
        select(*_COLUMNS)
        .where(EntryRow.recorded_at >= period.start, EntryRow.recorded_at < period.end, scope.condition())
        .order_by(EntryRow.seq)
        .execution_options(yield_per=_BATCH)
    )
    attempts: list[ReportAttempt] = []
    unmeasured: list[int] = []
    with ledger.read() as session:
        for row in session.execute(query):
            values: list[Any] = list(row)
            segment = values.pop()
            values[_TAGS] = tuple(tag for tag in (values[_TAGS] or "").split(",") if tag)
            attempt = ReportAttempt(*values) if segment is None else ReportAttempt(*values, **segment_fields(segment))
            if attempt.energy_kwh is None and not attempt.refused:
                unmeasured.append(len(attempts))
            attempts.append(attempt)
        # The reasons live in the notes (JSON): read them only for the attempts listed as unmeasured.
        for start in range(0, len(unmeasured), _BATCH):
            chunk = [attempts[i] for i in unmeasured[start : start + _BATCH]]
            rows = session.execute(
                select(EntryRow.seq, EntryRow.measurement_notes).where(EntryRow.seq.in_([a.seq for a in chunk]))
            )
            notes = {seq: value for seq, value in rows}
            for index, attempt in zip(unmeasured[start : start + _BATCH], chunk, strict=True):
                attempts[index] = _with_reason(attempt, unmeasured_reason(notes.get(attempt.seq), attempt.error))
    return attempts


def _with_reason(attempt: ReportAttempt, reason: str) -> ReportAttempt:
    from dataclasses import replace

    return replace(attempt, reason=reason)
