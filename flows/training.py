"""Example: carbon-aware training, then evaluation only while the carbon budget has room.

* ``ensure_budget`` sets the flow's daily budget (limit from the ``budget_limit`` parameter);
* ``train`` (``@carbon_aware`` under ``@task``) plans the greenest 2-hour window within 10 hours,
  reserves its 50 g estimate, waits for the window in the flow's process (a task cannot give its flow
  run's infrastructure back; see ``green_deployment.py`` for a flow that does), runs, is metered and
  recorded; a retry would be a second attempt with its own ledger entry;
* ``carbon_budget_gate`` lets ``evaluate`` run only if 20 g are left; otherwise its task run ends
  ``Completed`` (named ``Skipped``) with the reason and the flow stays green;
* the ledger artifacts (the run's entries, a summary, the budget's progress) are published when the
  flow ends, by a hook added next to any others.

Runs offline: the ``trace`` provider replays real Spanish grid data (Electricity Maps, June 2022) at
3600x, so an hour of grid time passes every second: training asked for at midnight waits ~12 s for
midday; evaluation replays from 14:00, after the training window.

    python flows/training.py                 # Prefect starts a temporary server if PREFECT_API_URL is unset
    python flows/training.py 60g             # a budget too small for both: evaluation is skipped

Without a GPU or RAPL the entries say so (energy ``None`` with the reason) and the budget keeps the
estimates, labelled; ``GREENFLOW_CPU_TDP_W=65`` gives a labelled CPU estimate instead. The stand-ins keep
a CPU busy for the time they represent on the replay clock (3 epochs x 40 min = 2 trace hours, 2 real
seconds at 3600x); ``make demo`` gives them a simulated 300 W GPU (``GREENFLOW_SIMULATED_GPU_W``),
labelled ``simulated`` in every entry.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time

from prefect import flow, task

from greenflow.ledger import Budget, Ledger
from greenflow.prefect import carbon_aware, carbon_budget_gate, ledger_artifacts_hook

FLOW_NAME = "greenflow-example-training"
BUDGET = "example-training-daily"
SPEED = float(os.environ.get("GREENFLOW_REPLAY_SPEED", "3600"))
# Each attempt replays the trace from its own start (no replay_started_at): everything runs in one
# process, and a slow start of Prefect's temporary server must not eat the replayed night.
TRAIN_REPLAY = {"now": "2022-06-01T00:00Z", "speed": SPEED}  # asked at midnight: waits for midday
EVAL_REPLAY = {"now": "2022-06-01T14:00Z", "speed": SPEED}  # evaluation follows the training window
# GPU time one training epoch and the evaluation stand for, in trace time.
EPOCH_S = 40 * 60
EVALUATION_S = 30 * 60


def busy(seconds: float) -> str:
    """Stand-in for GPU work: keeps a CPU busy for ``seconds``."""
    digest = b"greenflow"
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        digest = hashlib.sha256(digest).digest()
    return digest.hex()[:8]


@task
def ensure_budget(limit: str) -> str:
    """Create or update the flow's daily budget."""
    budget = Budget.parse(BUDGET, limit, "day", scope=f"workflow:{FLOW_NAME}")
    Ledger().budgets.set(budget)
    return f"{BUDGET}: {budget.limit} per day"


@task(retries=1, retry_delay_seconds=0)
@carbon_aware(
    region="ES",
    provider="trace",
    provider_options=TRAIN_REPLAY,
    expected_duration="2h",
    max_delay="10h",
    budget=BUDGET,
    estimate="50g",
    tags=["gpu", "training"],
    team="vision",
)
def train(epochs: int) -> dict[str, object]:
    """Train (a stand-in) and return the checkpoint."""
    return {"checkpoint": f"s3://models/resnet/{busy(epochs * EPOCH_S / SPEED)}.pt", "epochs": epochs}


@task
@carbon_aware(
    region="ES",
    provider="trace",
    provider_options=EVAL_REPLAY,
    expected_duration="30m",
    max_delay="0h",
    budget=BUDGET,
    estimate="20g",
    tags=["gpu", "evaluation"],
    team="vision",
)
def evaluate(checkpoint: str) -> dict[str, float]:
    """Evaluate the checkpoint (a stand-in)."""
    busy(EVALUATION_S / SPEED)
    return {"top1": 0.761}


@flow(name=FLOW_NAME, on_completion=[ledger_artifacts_hook], on_failure=[ledger_artifacts_hook])
def training(epochs: int = 3, budget_limit: str = "500g") -> dict[str, object]:
    """Train in the green window; evaluate while the budget has room for it."""
    ensure_budget(budget_limit)
    model = train(epochs)
    if carbon_budget_gate(BUDGET, mode="skip", estimate="20g"):
        return {"model": model, "metrics": evaluate(str(model["checkpoint"]))}
    return {"model": model, "metrics": None}


if __name__ == "__main__":
    print(training(budget_limit=sys.argv[1] if len(sys.argv) > 1 else "500g"))
