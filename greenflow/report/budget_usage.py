"""Budgets in a report: what each was charged in the period and how often it refused work."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from greenflow.ledger import Ledger
from greenflow.report.attempt import ReportAttempt


def budget_lines(ledger: Ledger, attempts: Sequence[ReportAttempt]) -> tuple[dict[str, Any], ...]:
    """One line per budget defined in the ledger, plus budgets named by entries but no longer defined.

    ``charged`` sums the entries' ``charged_g``/``charged_kwh`` (the budget's own audit record) within
    the report's period and scope; ``refusals`` counts its ``skipped_budget`` entries there.
    """
    defined = {budget.name: budget for budget in ledger.budgets.list()}
    named = {a.budget for a in attempts if a.budget}
    lines = []
    for name in sorted(set(defined) | named):
        mine = [a for a in attempts if a.budget == name]
        budget = defined.get(name)
        unit = str(budget.unit) if budget is not None else None
        if unit == "kWh":
            charged = [a.charged_kwh for a in mine if a.charged_kwh is not None]
        else:
            charged = [a.charged_g for a in mine if a.charged_g is not None]
        lines.append(
            {
                "name": name,
                "defined": budget is not None,
                "limit": budget.limit.value if budget is not None else None,
                "unit": unit or "gCO2e",
                "period": str(budget.period) if budget is not None else None,
                "scope": str(budget.scope) if budget is not None else None,
                "entries": len(mine),
                "refusals": sum(1 for a in mine if a.refused),
                "charged": sum(charged) if charged else None,
                "charged_reason": None if charged else "no entry in the period was charged to it",
            }
        )
    return tuple(lines)
