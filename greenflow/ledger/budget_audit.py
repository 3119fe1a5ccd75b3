"""Re-deriving the budget tables from the hash chain: what ``ledger verify`` checks beyond the links.

The chain holds every attempt's charge and (decision ``budget_set``) every budget definition. The
``budgets`` and ``budget_reservations`` tables are working state derived from it, which a reservation
reads for speed; this module recomputes them inside the caller's read transaction and names every
difference:

- a budget's definition (scope, period, time zone, unit, limit, revision) must equal its latest
  chained event, and a budget must have one;
- its settled checkpoint (``usage_settled`` through ``usage_through_seq`` for the period
  ``usage_period_start``-``usage_period_end``) must equal the sum of the entries it claims to cover;
- every reservation row must match its digest, a settled or expired one must point to an entry
  recorded for it, and every entry that settled a reservation must find it.

What it cannot prove: an open reservation's amount rewritten together with its digest (there is no
secret), or an open reservation deleted outright (an operational hold, not a record: its attempt's
entry, when it comes, is in the chain). See docs/methods.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, aliased

from greenflow.ledger.entry import EVENT_DECISIONS
from greenflow.ledger.models import BudgetRow, EntryRow, HeadRow, ReservationRow
from greenflow.ledger.periods import Period
from greenflow.ledger.settlement import row_digest

# The definition fields a chained event fixes (greenflow.ledger.budgets.definition).
_DEFINED = ("scope_kind", "scope_value", "period", "period_hours", "timezone", "unit", "limit_value", "revision")


@dataclass(frozen=True)
class BudgetProblem:
    """One difference between a budget's tables and what the chain says."""

    budget: str
    detail: str

    def __str__(self) -> str:
        return f"budget {self.budget!r}: {self.detail}"


def audit_budgets(session: Session) -> list[BudgetProblem]:
    """Every budget problem, read in ``session`` (one read transaction, the caller's snapshot)."""
    problems: list[BudgetProblem] = []
    rows = {row.name: row for row in session.execute(select(BudgetRow).order_by(BudgetRow.name)).scalars()}
    latest = _latest_definitions(session)
    for name, row in rows.items():
        problems += _definition_problems(row, latest.get(name))
        problems += _checkpoint_problems(session, row)
    for name, (decision, _definition) in sorted(latest.items()):
        if name not in rows and decision == "budget_set":
            problems.append(
                BudgetProblem(name, "is defined in the chain but its row is missing from the budgets table")
            )
    problems += _reservation_problems(session, set(rows))
    return problems


def _latest_definitions(session: Session) -> dict[str, tuple[str, dict[str, Any]]]:
    """Each budget's latest chained event: (decision, definition)."""
    events = session.execute(
        select(EntryRow.run_id, EntryRow.decision, EntryRow.extra)
        .where(EntryRow.decision.in_(EVENT_DECISIONS))
        .order_by(EntryRow.seq)
    )
    latest: dict[str, tuple[str, dict[str, Any]]] = {}
    for name, decision, extra in events:
        definition = (extra or {}).get("budget") if isinstance(extra, dict) else None
        latest[name] = (decision, definition if isinstance(definition, dict) else {})
    return latest


def _definition_problems(row: BudgetRow, event: tuple[str, dict[str, Any]] | None) -> list[BudgetProblem]:
    if event is None:
        return [BudgetProblem(row.name, "has no chained definition (created or renamed outside greenflow)")]
    decision, definition = event
    if decision != "budget_set":
        return [BudgetProblem(row.name, f"was {decision.removeprefix('budget_')} in the chain but its row exists")]
    changed = [
        f"{field} is {getattr(row, field)!r}, the chain says {definition.get(field)!r}"
        for field in _DEFINED
        if not _same(getattr(row, field), definition.get(field))
    ]
    return [BudgetProblem(row.name, "definition differs from the chain: " + "; ".join(changed))] if changed else []


def _checkpoint_problems(session: Session, row: BudgetRow) -> list[BudgetProblem]:
    through, settled = row.usage_through_seq, row.usage_settled
    start, end = row.usage_period_start, row.usage_period_end
    if through is None and settled is None and start is None and end is None:
        return []
    if through is None or settled is None or start is None or end is None:
        return [BudgetProblem(row.name, "settled checkpoint is half empty")]
    if row.period == "rolling":
        return [BudgetProblem(row.name, "a rolling budget has a settled checkpoint")]
    try:
        period = Period(row.period, row.timezone, row.period_hours)  # type: ignore[arg-type]
        right_bounds = period.bounds(start) == (start, end)
    except Exception:  # a definition edited into nonsense is reported by the definition check
        right_bounds = False
    problems = []
    if not right_bounds:
        problems.append(
            BudgetProblem(
                row.name, f"checkpoint period {start.isoformat()}-{end.isoformat()} is not one of its periods"
            )
        )
    head = session.execute(select(HeadRow.seq).where(HeadRow.id == 1)).scalar_one()
    if through > head:
        problems.append(BudgetProblem(row.name, f"checkpoint covers seq {through}, beyond the chain's tip {head}"))
    charged = EntryRow.charged_g if row.unit == "gCO2e" else EntryRow.charged_kwh
    in_scope = {
        "all": EntryRow.seq.is_not(None),
        "workflow": EntryRow.workflow_id == row.scope_value,
        "team": EntryRow.team == row.scope_value,
        "tag": EntryRow.tags.like(f"%,{row.scope_value},%"),
    }.get(row.scope_kind, EntryRow.seq.is_(None))
    recomputed = session.execute(
        select(func.coalesce(func.sum(charged), 0.0)).where(
            EntryRow.seq <= through,
            EntryRow.recorded_at >= start,
            EntryRow.recorded_at < end,
            or_(in_scope, EntryRow.budget == row.name),
        )
    ).scalar_one()
    total = float(recomputed or 0.0)
    if not _close(total, settled):
        problems.append(
            BudgetProblem(
                row.name,
                f"settled checkpoint says {settled:g} {row.unit} through seq {through}, the entries sum to {total:g}",
            )
        )
    return problems


def _reservation_problems(session: Session, budgets: set[str]) -> list[BudgetProblem]:
    problems = []
    # Streamed: one row per budget per reserved attempt, as many as the entries on a busy ledger.
    rows = session.execute(
        select(ReservationRow)
        .order_by(ReservationRow.created_at, ReservationRow.reservation_id)
        .execution_options(yield_per=2000)
    ).scalars()
    for row in rows:
        where = f"reservation {row.reservation_id}"
        if row.budget not in budgets:
            problems.append(BudgetProblem(row.budget, f"{where} holds against a budget that does not exist"))
        if row.digest != row_digest(row):
            problems.append(
                BudgetProblem(row.budget, f"{where} ({row.status}, {row.amount:g}) was changed outside greenflow")
            )
    entry = aliased(EntryRow)
    unrecorded = session.execute(
        select(ReservationRow.budget, ReservationRow.reservation_id, ReservationRow.status)
        .outerjoin(entry, entry.entry_id == ReservationRow.entry_id)
        .where(
            ReservationRow.status.in_(("settled", "expired")),
            or_(
                entry.entry_id.is_(None),
                entry.reservation_id != func.coalesce(ReservationRow.group_id, ReservationRow.reservation_id),
            ),
        )
        .order_by(ReservationRow.budget, ReservationRow.reservation_id)
    )
    for held_by, reservation_id, status in unrecorded:
        problems.append(BudgetProblem(held_by, f"reservation {reservation_id} is {status} but no entry records it"))
    held = select(ReservationRow.reservation_id).where(ReservationRow.reservation_id == EntryRow.reservation_id)
    orphans = session.execute(
        select(EntryRow.seq, EntryRow.budget, EntryRow.reservation_id)
        .where(EntryRow.reservation_id.is_not(None), ~held.exists())
        .order_by(EntryRow.seq)
    )
    for seq, named, settled_id in orphans:
        problems.append(
            BudgetProblem(named or "?", f"entry seq {seq} settled reservation {settled_id}, which is missing")
        )
    return problems


def _same(stored: Any, chained: Any) -> bool:
    if isinstance(stored, float) or isinstance(chained, float):
        return stored is not None and chained is not None and _close(float(stored), float(chained))
    return bool(stored == chained)


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


__all__ = ["BudgetProblem", "audit_budgets"]
