"""The provenance ledger and carbon budgets (SQLAlchemy; SQLite by default, PostgreSQL when shared).

The names below load on first use: ``Entry`` and ``Identity`` are plain data that the lifecycle, the
adapters and DAG files need without a database, while ``Ledger`` and the budgets import SQLAlchemy
(~0.7 s of CPU) and load only when a ledger is really opened.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from greenflow.ledger.budgets import Attempt, Budget, Budgets, BudgetStatus, Reservation, Scope
    from greenflow.ledger.entry import DECISIONS, Decision, Entry, Identity
    from greenflow.ledger.periods import Period
    from greenflow.ledger.store import EntryFilter, Ledger
    from greenflow.ledger.verify import Problem, VerificationReport

# name -> the module that defines it.
_EXPORTS = {
    "Attempt": "greenflow.ledger.budgets",
    "Budget": "greenflow.ledger.budgets",
    "BudgetStatus": "greenflow.ledger.budgets",
    "Budgets": "greenflow.ledger.budgets",
    "Reservation": "greenflow.ledger.budgets",
    "Scope": "greenflow.ledger.budgets",
    "DECISIONS": "greenflow.ledger.entry",
    "Decision": "greenflow.ledger.entry",
    "Entry": "greenflow.ledger.entry",
    "Identity": "greenflow.ledger.entry",
    "Period": "greenflow.ledger.periods",
    "EntryFilter": "greenflow.ledger.store",
    "Ledger": "greenflow.ledger.store",
    "Problem": "greenflow.ledger.verify",
    "VerificationReport": "greenflow.ledger.verify",
}

__all__ = [
    "DECISIONS",
    "Attempt",
    "Budget",
    "BudgetStatus",
    "Budgets",
    "Decision",
    "Entry",
    "EntryFilter",
    "Identity",
    "Ledger",
    "Period",
    "Problem",
    "Reservation",
    "Scope",
    "VerificationReport",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'greenflow.ledger' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
