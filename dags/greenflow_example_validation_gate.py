"""Example: a carbon-aware governance gate in front of a validation pipeline.

``gate`` (GreenGateOperator) reads the grid's intensity now (GB, published forecasts replayed from
March 2023) and the validation budget, then picks one path: the full suite when the grid is clean
enough and the budget has room, the reduced suite when only a little is left, and nothing when the budget
is spent. The policy is data (the ``rules`` below) and every choice, with its inputs and the policy, is a
ledger entry (``ran_now`` full, ``degraded`` reduced, ``skipped_budget`` none).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from airflow.sdk import DAG, Param, task

from greenflow.airflow.operators.carbon_aware import CarbonAwareOperator
from greenflow.airflow.operators.gate import GreenGateOperator

DAG_ID = "greenflow_example_validation_gate"
BUDGET = "example-validation-daily"
REPLAY = {
    "now": "2023-03-16T06:00Z",
    "speed": 3600,
    "replay_started_at": "{{ dag_run.start_date.isoformat() }}",
}
CARBON = {"region": "GB", "provider": "trace", "provider_options": REPLAY, "budget": BUDGET}


def run_suite(suite: str, seconds: float) -> dict[str, object]:
    """Stand-in for a validation suite on the GPU."""
    time.sleep(seconds)
    return {"suite": suite, "passed": True}


with DAG(
    dag_id=DAG_ID,
    schedule=None,
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    params={"budget_limit": Param("300g", type="string", description="Daily limit of the validation budget")},
    tags=["greenflow", "example"],
) as dag:

    @task
    def ensure_budget(params=None) -> str:
        from greenflow.airflow.ledger_access import open_ledger
        from greenflow.ledger import Budget

        budget = Budget.parse(BUDGET, params["budget_limit"], "day", scope=f"workflow:{DAG_ID}")
        open_ledger().budgets.set(budget)
        return f"{BUDGET}: {budget.limit} per day"

    gate = GreenGateOperator(
        task_id="gate",
        rules=[
            {"branch": "full_validation", "when": {"max_intensity": 250, "min_remaining": "100g"}},
            {"branch": "reduced_validation", "when": {"min_remaining": "10g"}},
        ],
        otherwise=None,  # budget spent: no validation runs, and the ledger says so
        expected_duration="1h",
        max_delay="6h",
        **CARBON,
    )

    full_validation = CarbonAwareOperator(
        task_id="full_validation",
        python_callable=run_suite,
        op_args=["full", 0.4],
        expected_duration="1h",
        max_delay="0s",
        estimate="80g",
        tags=["gpu", "validation"],
        **CARBON,
    )

    reduced_validation = CarbonAwareOperator(
        task_id="reduced_validation",
        python_callable=run_suite,
        op_args=["reduced", 0.1],
        expected_duration="10m",
        max_delay="0s",
        estimate="8g",
        tags=["gpu", "validation"],
        **CARBON,
    )

    ensure_budget() >> gate >> [full_validation, reduced_validation]
