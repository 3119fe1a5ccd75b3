"""A flow the end-to-end test deploys to a process work pool: one budgeted, carbon-aware attempt.

Its estimate (``GREENFLOW_E2E_ESTIMATE``) is the whole budget, and with no GPU or RAPL nothing is
measured, so the budget keeps the estimate (labelled): one run spends the budget.
"""

from __future__ import annotations

import os

from prefect import flow

from greenflow.prefect import carbon_aware

FLOW_NAME = "greenflow-e2e-budgeted"


@flow(name=FLOW_NAME)
@carbon_aware(
    region="ES",
    provider="trace",
    provider_options={"now": "2022-06-01T12:00Z"},
    expected_duration="1h",
    max_delay="0h",
    budget=os.environ.get("GREENFLOW_E2E_BUDGET", "e2e-gpu"),
    estimate=os.environ.get("GREENFLOW_E2E_ESTIMATE", "25g"),
    on_budget_exceeded="fail",  # a refused run shows as Failed in Prefect (the default, skip, completes it)
)
def budgeted() -> str:
    """The GPU work stand-in."""
    return "done"
