"""End-to-end test DAG: a carbon-aware task on a real-time trace whose green window opens a minute after
the test writes it (path in ``GREENFLOW_E2E_TRACE``), so the real triggerer holds it deferred until then."""

from __future__ import annotations

import os
from datetime import UTC, datetime

from airflow.sdk import DAG

from greenflow.airflow.operators.carbon_aware import CarbonAwareOperator

TRACE = os.environ.get("GREENFLOW_E2E_TRACE", "")


def train() -> str:
    return "trained"


with DAG(
    dag_id="greenflow_e2e_deferral",
    schedule=None,
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    is_paused_upon_creation=False,
):
    CarbonAwareOperator(
        task_id="train",
        python_callable=train,
        region="E2E",
        provider="trace",
        provider_options={"path": TRACE, "column": "gco2_per_kwh"},
        expected_duration="20s",
        max_delay="5m",
    )
