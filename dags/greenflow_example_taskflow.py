"""Example: batch inference over shards with ``@task.carbon_aware`` (TaskFlow, dynamic task mapping).

Each shard is its own carbon-aware task instance (its own ledger entry, keyed by map index): it plans on
the GB national forecast that was actually published at the replay time (NESO, March 2023, replayed at
7200x), defers to its green window, runs metered and returns its result to the next task as usual.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from airflow.sdk import dag, task

REPLAY = {
    "now": "2023-03-15T14:00Z",
    "speed": 7200,
    "replay_started_at": "{{ dag_run.start_date.isoformat() }}",
}


@dag(
    dag_id="greenflow_example_taskflow",
    schedule=None,
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    tags=["greenflow", "example"],
)
def greenflow_example_taskflow() -> None:
    @task
    def list_shards() -> list[int]:
        return [0, 1]

    @task.carbon_aware(
        region="GB",
        provider="trace",
        provider_options=REPLAY,
        expected_duration="1h",
        max_delay="8h",
        min_savings=5,
        functional_unit="1k rows",
        functional_units=10,
        tags=["gpu", "inference"],
    )
    def batch_inference(shard: int) -> dict[str, int]:
        time.sleep(0.3)  # stand-in for running the model over the shard
        return {"shard": shard, "rows": 10_000}

    @task
    def report(results: list[dict[str, int]]) -> int:
        return sum(r["rows"] for r in results)

    report(batch_inference.expand(shard=list_shards()))


greenflow_example_taskflow()
