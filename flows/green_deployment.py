"""Example: a deployment that defers itself to the green window without holding a worker.

``nightly_training`` is carbon-aware at flow level. When a worker starts a run and the plan says
"later", greenflow reserves the budget, puts the run back into a ``Scheduled`` state named
``AwaitingGreenWindow`` at the window (its message says why and until when) and ends the process:
the worker's slot and the infrastructure are free while the run waits. At the window a worker picks
the run up again; it uses the decision it carried (no new plan, same deadline), is metered and recorded.

Runs offline: the ``trace`` provider replays real Spanish grid data (Electricity Maps, June 2022)
from midnight at 3600x, so an hour of grid time passes every second: the run goes back to
``Scheduled`` a few seconds after it starts and runs again ~10 s later. Both processes of a run must
agree on when the replay began (``GREENFLOW_REPLAY_STARTED_AT``): :func:`main` puts it in the run's
environment. With a real provider (``region="GB"``, ``provider="ukgrid"``) none of that is needed.

    prefect server start                                # then export PREFECT_API_URL=http://127.0.0.1:4200/api
    prefect work-pool create greenflow-demo --type process
    prefect worker start --pool greenflow-demo          # another terminal; GREENFLOW_LEDGER_URL as you like
    python flows/green_deployment.py greenflow-demo     # deploys and starts one run

Without a GPU or RAPL the entry says so (energy ``None`` with the reason); set
``GREENFLOW_CPU_TDP_W=65`` for a labelled CPU estimate.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from prefect import flow

from greenflow.prefect import carbon_aware

FLOW_NAME = "greenflow-example-nightly-training"
REPLAY = {
    "now": os.environ.get("GREENFLOW_REPLAY_NOW", "2022-06-01T00:00Z"),
    "speed": float(os.environ.get("GREENFLOW_REPLAY_SPEED", "3600")),
    # Set per run by main(): the first start and the resume of a run agree on the replay's clock.
    "replay_started_at": os.environ.get("GREENFLOW_REPLAY_STARTED_AT") or datetime.now(UTC).isoformat(),
}


@flow(name=FLOW_NAME)
@carbon_aware(
    region="ES",
    provider="trace",
    provider_options=REPLAY,
    expected_duration="2h",
    max_delay="14h",
    budget=os.environ.get("GREENFLOW_EXAMPLE_BUDGET") or None,
    estimate="50g",
    tags=["gpu", "training"],
    team="vision",
)
def nightly_training(epochs: int = 2) -> dict[str, object]:
    """Stand-in for a GPU training job (keeps a CPU busy instead of training)."""
    digest = b"nightly"
    until = time.monotonic() + 0.2 * epochs
    while time.monotonic() < until:
        digest = hashlib.sha256(digest).digest()
    return {"checkpoint": f"s3://models/resnet/nightly-{digest.hex()[:8]}.pt", "epochs": epochs}


def main(pool: str) -> None:
    """Register the deployment on a process work pool and start one run, replaying from its creation."""
    from prefect.deployments import run_deployment

    source = nightly_training.from_source(  # type: ignore[attr-defined]
        source=str(Path(__file__).parent), entrypoint="green_deployment.py:nightly_training"
    )
    source.deploy(name="green", work_pool_name=pool, print_next_steps=False, ignore_warnings=True)
    # Each run replays the trace from its own creation: every process of the run (first start, resume)
    # gets the same replay start through the run's environment.
    replay_start = {"GREENFLOW_REPLAY_STARTED_AT": datetime.now(UTC).isoformat()}
    run = run_deployment(f"{FLOW_NAME}/green", timeout=0, job_variables={"env": replay_start})
    print(f"flow run {run.name}: Running, then Scheduled (AwaitingGreenWindow) until the window, then Completed")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "greenflow-demo")
