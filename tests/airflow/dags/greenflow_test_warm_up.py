"""Test DAG: one trivial task, run first to warm ``dag.test()`` up.

The first ``dag.test()`` in a process starts Airflow's in-process execution machinery, seconds after the
task instance got its start date. A fast trace replay anchored at that start date would count those
seconds as hours of grid time; tests whose timing matters run this DAG first.
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

with DAG(
    dag_id="greenflow_test_warm_up",
    schedule=None,
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
):
    BashOperator(task_id="noop", bash_command="true")
