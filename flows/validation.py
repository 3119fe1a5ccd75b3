"""Example: a validation flow behind the governance gate (full, reduced or skipped validation).

``governance_gate`` reads the grid's intensity for the next 30 minutes and the validation budget, and
chooses: ``skipped`` when the budget is spent, ``reduced`` (a tenth of the samples) when the grid is
above ``reduce_above`` gCO2e/kWh or 80 % of the budget is gone, ``full`` otherwise. Every choice is a
ledger entry (``ran_now`` / ``degraded`` / ``skipped_budget``) with the intensity and budget it saw, and
the gate's task run is named after the choice with the reason as its message.

Runs offline on the shipped Spanish trace: at midnight (the default) the grid is at ~316 gCO2e/kWh and
validation is reduced; ``GREENFLOW_REPLAY_NOW=2022-06-01T12:00Z`` (~174) gives a full run.

    python flows/validation.py
"""

from __future__ import annotations

import hashlib
import os
import time

from prefect import flow, task

from greenflow.ledger import Budget, Ledger
from greenflow.prefect import carbon_aware, governance_gate, ledger_artifacts_hook

FLOW_NAME = "greenflow-example-validation"
BUDGET = "example-validation-monthly"
# Each attempt replays from its own start (all in one process; Prefect's temporary server may be slow).
REPLAY = {
    "now": os.environ.get("GREENFLOW_REPLAY_NOW", "2022-06-01T00:00Z"),
    "speed": float(os.environ.get("GREENFLOW_REPLAY_SPEED", "3600")),
}


@task
def ensure_budget(limit: str) -> str:
    """Create or update the validation budget."""
    budget = Budget.parse(BUDGET, limit, "month", scope=f"workflow:{FLOW_NAME}")
    Ledger().budgets.set(budget)
    return f"{BUDGET}: {budget.limit} per month"


@task
@carbon_aware(
    region="ES",
    provider="trace",
    provider_options=REPLAY,
    expected_duration="30m",
    max_delay="0h",
    budget=BUDGET,
    estimate="5g",
    tags=["validation"],
)
def validate(samples: int) -> dict[str, object]:
    """Validate ``samples`` records (a stand-in that keeps a CPU busy briefly)."""
    digest = b"validation"
    until = time.monotonic() + min(0.05 + samples / 100_000, 0.5)
    while time.monotonic() < until:
        digest = hashlib.sha256(digest).digest()
    return {"validated": samples, "failures": 0}


@flow(name=FLOW_NAME, on_completion=[ledger_artifacts_hook], on_failure=[ledger_artifacts_hook])
def validation(samples: int = 10_000, budget_limit: str = "200g", reduce_above: float = 250.0) -> dict[str, object]:
    """Validate as much as the grid and the budget allow."""
    ensure_budget(budget_limit)
    choice = governance_gate(
        budget=BUDGET,
        region="ES",
        provider="trace",
        provider_options=REPLAY,
        expected_duration="30m",
        reduce_above=reduce_above,
        reduce_when_spent=0.8,
    )
    if choice == "skipped":
        return {"choice": choice, "validated": 0}
    return {"choice": choice, **validate(samples if choice == "full" else max(samples // 10, 1))}


if __name__ == "__main__":
    print(validation())
