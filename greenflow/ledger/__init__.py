"""The provenance ledger and carbon budgets (SQLAlchemy; SQLite by default, PostgreSQL when shared)."""

from greenflow.ledger.budgets import Attempt, Budget, Budgets, BudgetStatus, Reservation, Scope
from greenflow.ledger.entry import DECISIONS, Decision, Entry, Identity
from greenflow.ledger.periods import Period
from greenflow.ledger.store import EntryFilter, Ledger
from greenflow.ledger.verify import Problem, VerificationReport

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
