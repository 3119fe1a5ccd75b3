"""Example: hold work greenflow does not run itself (a Spark submit, a pod) until a green window.

``wait_for_green`` (GreenWindowSensor) plans on the GB forecast published at the replay time (NESO,
March 2023, replayed at 3600x), defers until the window without holding a worker, records its decision,
and returns where and when the work should run. ``submit`` stands in for a SparkSubmitOperator or a
KubernetesPodOperator. ``package`` is a shell command that greenflow meters itself: CarbonAwareBashOperator
runs it under ``greenflow run``, which writes its ledger entry.
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

from greenflow.airflow.operators.bash import CarbonAwareBashOperator
from greenflow.airflow.sensors.green_window import GreenWindowSensor

REPLAY = {
    "now": "2023-03-21T18:00Z",
    "speed": 3600,
    "replay_started_at": "{{ dag_run.start_date.isoformat() }}",
}

with DAG(
    dag_id="greenflow_example_green_window_command",
    schedule=None,
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    tags=["greenflow", "example"],
) as dag:
    wait_for_green = GreenWindowSensor(
        task_id="wait_for_green",
        region="GB",
        provider="trace",
        provider_options=REPLAY,
        expected_duration="2h",
        max_delay="8h",
        min_savings=5,
    )

    submit = BashOperator(
        task_id="submit",
        bash_command="echo submitting the nightly Spark job in {{ ti.xcom_pull(task_ids='wait_for_green')['region'] }}",
    )

    package = CarbonAwareBashOperator(
        task_id="package",
        bash_command="sleep 0.3 && echo packaged",
        region="GB",
        provider="trace",
        provider_options=REPLAY,
        expected_duration="10m",
        max_delay="0s",
        tags=["cpu", "packaging"],
    )

    wait_for_green >> submit >> package
