"""Celery multi-worker test DAG: spatial shifting, the work lands on the greener region's worker.

``choose_region`` (GreenGateOperator with a ``regions`` mapping) plans over GB (home) and NO and branches
to the chosen region's task; ``train_gb`` runs on queue ``gb`` (the GB worker), ``train_no`` on queue
``no``. It replays the shipped real data from ``REPLAY_NOW`` (GB: NESO's published forecasts; NO:
Electricity Maps), where Norway's hydro grid is more than twice as green as Great Britain's in every
hour of the next two days; the test reads the same data to state which region must win. The replay runs
at 3600x from the run's start (a trace hour per second), so every process (workers, triggerer) maps wall
time to the same trace time; how far the replay has moved when the route plans depends on how soon the
task starts, which is why the data must favour NO over the whole two days.
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime

from airflow.sdk import DAG

from greenflow.airflow.operators.carbon_aware import CarbonAwareOperator
from greenflow.airflow.operators.gate import GreenGateOperator

REPLAY_NOW = "2023-03-18T06:00Z"
REPLAY = {"now": REPLAY_NOW, "speed": 3600, "replay_started_at": "{{ dag_run.start_date.isoformat() }}"}
ROUTES = {"GB": "train_gb", "NO": "train_no"}
BUDGET = "celery-route"
EXPECTED_DURATION, MAX_DELAY = "1h", "6h"


def train(region: str) -> dict[str, str]:
    """Stand-in for GPU training on the region's workers."""
    return {"region": region, "host": socket.gethostname()}


with DAG(
    dag_id="greenflow_e2e_celery_spatial",
    schedule=None,
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    is_paused_upon_creation=False,
):
    route = GreenGateOperator(
        task_id="choose_region",
        queue="gb",  # the gate runs no work: any worker will do
        regions=ROUTES,
        provider="trace",
        provider_options=REPLAY,
        expected_duration=EXPECTED_DURATION,
        max_delay=MAX_DELAY,
        min_savings=5,
        max_staleness="14h",  # the shipped GB trace holds two forecast snapshots a day
        expected_energy="2kWh",
    )
    route >> [
        CarbonAwareOperator(
            task_id=task_id,
            queue=region.lower(),
            python_callable=train,
            op_args=[region],
            region=region,
            provider="trace",
            provider_options=REPLAY,
            expected_duration=EXPECTED_DURATION,
            max_delay="0s",  # the route already chose when: run at once when started
            budget=BUDGET,
            estimate="10g",
        )
        for region, task_id in ROUTES.items()
    ]
