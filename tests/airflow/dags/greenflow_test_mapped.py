"""Test DAGs: classic dynamic task mapping of CarbonAwareOperator.

``greenflow_test_mapped`` maps a callable over three shards (one ledger entry per map index);
``greenflow_test_mapped_bad_instance`` maps ``expected_duration`` itself, one value of which is negative:
only that instance can tell, and it fails with greenflow's message. Offline on the shipped Spanish trace.
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import DAG

from greenflow.airflow.operators.carbon_aware import CarbonAwareOperator

CARBON = {"region": "ES", "provider": "trace", "provider_options": {"now": "2022-06-01T12:00Z"}, "max_delay": "0s"}


def score(shard: int) -> int:
    """A shard's result: something the test can check per map index."""
    return shard * 10


with DAG(
    dag_id="greenflow_test_mapped",
    schedule=None,
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    default_args={"retries": 0},
):
    CarbonAwareOperator.partial(task_id="shard", python_callable=score, expected_duration="5m", **CARBON).expand(
        op_args=[[0], [1], [2]]
    )

with DAG(
    dag_id="greenflow_test_mapped_bad_instance",
    schedule=None,
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    default_args={"retries": 0},
):
    CarbonAwareOperator.partial(task_id="sized", python_callable=score, op_args=[1], **CARBON).expand(
        expected_duration=["10m", "-1h"]
    )
