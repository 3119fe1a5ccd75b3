"""Celery multi-worker test DAG: carbon-aware tasks on two region queues drawing on ONE shared budget.

``PER_QUEUE`` tasks on queue ``gb`` (region GB) and as many on queue ``no`` (region NO), all started at
once, each reserving ``ESTIMATE`` against budget ``BUDGET`` with ``on_budget_exceeded="skip"``. The test
sizes the budget for fewer tasks than there are, so some must be refused.

Why the callable waits: a task that ran settles its reservation to its measured emissions, which may be
far below the estimate, and that would free budget for a later task. So each admitted task keeps its
reservation open (burning CPU, then waiting) until every task of the run has been decided: reserved
(an open reservation) or recorded (an entry). What the test then sees is decided by admission under
concurrency alone, not by how fast tasks happened to finish. Each queue has no more tasks than its
worker has slots, so every task gets a slot while the admitted ones wait.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Any

from airflow.sdk import DAG

from greenflow.airflow.ledger_access import open_ledger
from greenflow.airflow.operators.carbon_aware import CarbonAwareOperator
from greenflow.ledger import EntryFilter

TRACE = os.environ.get("GREENFLOW_E2E_TRACE", "")
BUDGET = "celery-shared"
ESTIMATE = "10g"
PER_QUEUE = 2
QUEUES = {"gb": "GB", "no": "NO"}
BURN_CPU_SECONDS = 2.0
WAIT_FOR_OTHERS_SECONDS = 240.0


def burn_and_hold(expected: int, **context: Any) -> dict[str, Any]:
    """Burn a little CPU, then hold the reservation until all ``expected`` tasks of the run are decided."""
    started = time.process_time()
    while time.process_time() - started < BURN_CPU_SECONDS:
        pass
    ledger = open_ledger()
    where = EntryFilter(workflow_id=context["dag"].dag_id, run_id=context["run_id"])
    deadline = time.monotonic() + WAIT_FOR_OTHERS_SECONDS
    while True:
        # Monotone: a reservation becomes an entry in one transaction when it settles; a refusal is an entry.
        decided = ledger.budgets.status(BUDGET).open_reservations + ledger.count(where)
        if decided >= expected:
            return {"decided": decided, "cpu_seconds": time.process_time() - started}
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {decided} of {expected} tasks were decided by the budget in time")
        time.sleep(0.5)


with DAG(
    dag_id="greenflow_e2e_celery_budget",
    schedule=None,
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    is_paused_upon_creation=False,
    max_active_tasks=2 * PER_QUEUE,
):
    for queue, region in QUEUES.items():
        for index in range(PER_QUEUE):
            CarbonAwareOperator(
                task_id=f"work_{queue}_{index}",
                queue=queue,
                python_callable=burn_and_hold,
                op_kwargs={"expected": len(QUEUES) * PER_QUEUE},
                region=region,
                provider="trace",
                provider_options={"path": TRACE, "column": "gco2_per_kwh"},
                expected_duration="1m",
                max_delay="10m",
                threshold=1000,  # the trace is flat: start at once, the budget is what this DAG is about
                budget=BUDGET,
                estimate=ESTIMATE,
                on_budget_exceeded="skip",
            )
