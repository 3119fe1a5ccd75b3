"""Exit codes greenflow's commands end with, shared by everything that reads them back.

The Airflow bash operator tells "the budget refused the command" from "the command failed" by the
code ``greenflow run`` exits with; both sides take it from here so that neither imports the other.
"""

from __future__ import annotations

#: The command ran (or was skipped as asked) and succeeded.
OK = 0
#: Bad input or configuration: nothing ran (:class:`greenflow.errors.GreenflowError`).
INVALID_INPUT = 2
#: A carbon budget refused the run: nothing ran (:class:`greenflow.errors.BudgetExceeded`).
BUDGET_REFUSED = 3
