"""Example: train in the greenest window, then evaluate only while the carbon budget has room.

Runs offline: the ``trace`` provider replays real Spanish grid data (Electricity Maps, June 2022) at
3600x, so an hour of grid time passes every second and the DAG finishes in seconds. The replay clock
starts when the DAG run starts (``replay_started_at``), so the worker and the triggerer agree on it.

* ``ensure_budget`` creates the daily budget (limit from the run's ``budget_limit`` param);
* ``train`` (CarbonAwareOperator) plans, reserves its 50 g estimate, defers to the green window (no worker
  slot held), runs, is metered and recorded;
* ``budget_gate`` (CarbonBudgetSensor) lets ``evaluate`` run only if 20 g are left, else skips it.

On a machine without a GPU or RAPL the entries say so ("energy not measured" with the reason); the
budget then keeps the estimate, labelled as such. The stand-ins run for the time they represent on the
replay clock (training: 3 epochs x 40 min = 2 trace hours, 2 real seconds at 3600x); ``make demo`` gives
them a simulated 300 W GPU (``GREENFLOW_SIMULATED_GPU_W``), labelled ``simulated`` in every entry.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta

from airflow.sdk import DAG, Param, task

from greenflow.airflow.operators.carbon_aware import CarbonAwareOperator
from greenflow.airflow.sensors.budget import CarbonBudgetSensor

DAG_ID = "greenflow_example_training"
BUDGET = "example-training-daily"
# GREENFLOW_REPLAY_SPEED slows the replay where the first task may take seconds to start (a loaded machine).
REPLAY = {
    "now": "2022-06-01T00:00Z",
    "speed": float(os.environ.get("GREENFLOW_REPLAY_SPEED", "3600")),
    "replay_started_at": "{{ dag_run.start_date.isoformat() }}",
}
# GPU time one training epoch stands for; the stand-ins sleep it on the replay clock (trace time / speed).
EPOCH = timedelta(minutes=40)
EVALUATION = timedelta(minutes=30)


def _stand_in(represented: timedelta) -> None:
    time.sleep(represented.total_seconds() / float(REPLAY["speed"]))


def train_model(epochs: int) -> dict[str, object]:
    """Stand-in for a GPU training job: ``epochs`` x 40 min of trace time."""
    _stand_in(epochs * EPOCH)
    return {"checkpoint": "s3://models/resnet/ckpt-final.pt", "epochs": epochs}


def evaluate_model(ti=None) -> dict[str, float]:
    """Stand-in for the evaluation suite: 30 min of trace time."""
    checkpoint = ti.xcom_pull(task_ids="train")["checkpoint"]
    _stand_in(EVALUATION)
    return {"checkpoint": checkpoint, "top1": 0.761}


with DAG(
    dag_id=DAG_ID,
    schedule=None,
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    params={"budget_limit": Param("500g", type="string", description="Daily limit of the training budget")},
    tags=["greenflow", "example"],
) as dag:

    @task
    def ensure_budget(params=None) -> str:
        from greenflow.airflow.ledger_access import open_ledger
        from greenflow.ledger import Budget

        budget = Budget.parse(BUDGET, params["budget_limit"], "day", scope=f"workflow:{DAG_ID}")
        open_ledger().budgets.set(budget)
        return f"{BUDGET}: {budget.limit} per day"

    train = CarbonAwareOperator(
        task_id="train",
        python_callable=train_model,
        op_kwargs={"epochs": 3},
        region="ES",
        provider="trace",
        provider_options=REPLAY,
        expected_duration="2h",
        max_delay="10h",
        budget=BUDGET,
        estimate="50g",
        tags=["gpu", "training"],
        team="vision",
    )

    budget_gate = CarbonBudgetSensor(
        task_id="budget_gate",
        budget=BUDGET,
        min_remaining="20g",
        on_exhausted="skip",
    )

    evaluate = CarbonAwareOperator(
        task_id="evaluate",
        python_callable=evaluate_model,
        region="ES",
        provider="trace",
        provider_options=REPLAY,
        expected_duration="30m",
        max_delay="0s",
        budget=BUDGET,
        estimate="10g",
        tags=["gpu", "evaluation"],
        team="vision",
    )

    ensure_budget() >> train >> budget_gate >> evaluate
