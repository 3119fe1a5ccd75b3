"""Example: spatial shifting, training in whichever region (and hour) has the greenest grid.

``choose_region`` (GreenGateOperator with a ``regions`` mapping) plans a 2-hour training job over three
regions where GPUs are available: GB (home: savings are counted against starting there at once), Spain
and California. It replays real data offline: GB's published forecasts (NESO) and Electricity Maps'
hourly series for ES and US-CAL-CISO, from 2023-03-17 23:00 UTC at 3600x (a trace hour per second).
On that night the best window is Spain's solar morning, some hours ahead: the route **defers** (no
worker slot held), resumes at the chosen start, branches to that region's task and skips the others.
Its ledger entry holds the choice and every region's expected intensity and emissions.

Each region's task is bound to that region's workers with ``queue=`` (a Celery queue per region; a pool
works too) and declares that region. Started by the route at the green window, it runs at once: it finds the
route's ``greenflow_route`` XCom, takes the route's decision instead of planning a second wait, and its
ledger entry links to the route's (``extra["route"]``, with the route's request time and start).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from airflow.sdk import DAG, task

from greenflow.airflow.operators.carbon_aware import CarbonAwareOperator
from greenflow.airflow.operators.gate import GreenGateOperator

DAG_ID = "greenflow_example_spatial"
REPLAY = {
    "now": "2023-03-17T23:00Z",
    "speed": 3600,
    "replay_started_at": "{{ dag_run.start_date.isoformat() }}",
}
ROUTES = {"GB": "train_gb", "ES": "train_es", "US-CAL-CISO": "train_us"}


def train_model(region: str) -> dict[str, object]:
    """Stand-in for a GPU training job on the region's workers."""
    time.sleep(0.3)
    return {"checkpoint": f"s3://models/resnet/{region.lower()}/ckpt-final.pt", "region": region}


with DAG(
    dag_id=DAG_ID,
    schedule=None,
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    tags=["greenflow", "example"],
) as dag:
    route = GreenGateOperator(
        task_id="choose_region",
        regions=ROUTES,
        provider="trace",
        provider_options=REPLAY,
        expected_duration="2h",
        max_delay="12h",
        min_savings=5,
        max_staleness="14h",  # the shipped GB trace holds two forecast snapshots a day (10.5 h old at 23:00)
        expected_energy="3kWh",  # e.g. 2 h on a 1.5 kW GPU node: turns intensities into expected grams
    )

    trainers = [
        CarbonAwareOperator(
            task_id=task_id,
            python_callable=train_model,
            op_args=[region],
            queue=region.lower(),
            region=region,
            provider="trace",
            provider_options=REPLAY,
            expected_duration="2h",
            tags=["gpu", "training"],
            team="vision",
        )
        for region, task_id in ROUTES.items()
    ]

    @task(trigger_rule="none_failed_min_one_success")
    def report(ti=None) -> dict[str, object]:
        """Where and when training ran, as the route decided it."""
        chosen = ti.xcom_pull(task_ids="choose_region", key="greenflow_route")
        return {**chosen, "result": ti.xcom_pull(task_ids=chosen["task_id"])}

    route >> trainers
    trainers >> report()
