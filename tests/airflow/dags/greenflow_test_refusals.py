"""Test DAG: what happens when the budget refuses, and when the work itself fails.

Runs offline on the shipped Spanish trace (no replay speed: the trace's clock stands still at ``now``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import DAG, task

from greenflow.airflow.operators.bash import CarbonAwareBashOperator
from greenflow.airflow.operators.carbon_aware import CarbonAwareOperator

BUDGET = "test-refusals"
CARBON = {"region": "ES", "provider": "trace", "provider_options": {"now": "2022-06-01T12:00Z"}, "max_delay": "0s"}


def crash() -> None:
    """Fails after doing some work."""
    sum(range(200_000))
    raise RuntimeError("CUDA out of memory")


with DAG(
    dag_id="greenflow_test_refusals",
    schedule=None,
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    default_args={"retries": 0},
) as dag:

    @task
    def tiny_budget() -> None:
        from greenflow.airflow.ledger_access import open_ledger
        from greenflow.ledger import Budget

        open_ledger().budgets.set(Budget.parse(BUDGET, "10g", "day"))

    refused_python = CarbonAwareOperator(
        task_id="refused_python", python_callable=sum, op_args=[[1, 2]], budget=BUDGET, estimate="50g", **CARBON
    )
    refused_bash_skip = CarbonAwareBashOperator(
        task_id="refused_bash_skip", bash_command="echo should-not-run", budget=BUDGET, estimate="50g", **CARBON
    )
    refused_bash_fail = CarbonAwareBashOperator(
        task_id="refused_bash_fail",
        bash_command="echo should-not-run",
        budget=BUDGET,
        estimate="50g",
        on_budget_exceeded="fail",
        **CARBON,
    )
    crashing = CarbonAwareOperator(task_id="crashing", python_callable=crash, **CARBON)
    command_exit_3 = CarbonAwareBashOperator(task_id="command_exit_3", bash_command="exit 3", **CARBON)

    tiny_budget() >> [refused_python, refused_bash_skip, refused_bash_fail, crashing, command_exit_3]
