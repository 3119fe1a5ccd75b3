"""Example: GPUs in two regions, one deployment per region's work pool, the run goes where (and when) it is greenest.

``regional_training`` is deployed twice: ``es`` on a work pool whose workers run in Spain, ``no`` on one
in Norway. :func:`schedule` asks greenflow for the greenest (region, start) within the deadline and
creates the flow run of that region's deployment at that start; the other pool gets nothing. The choice
and what every region offered are in the returned ``ScheduledRun``, in the waiting run's state message,
and (the flow being ``@carbon_aware``) in the ledger entry the run writes, whose savings are counted
against starting at once at home (``region="ES"`` on the flow, the first key of ``REGIONS``).

Runs offline: the ``trace`` provider replays real Electricity Maps data for both zones (June 2022)
from midnight at 3600x. Norway's hydro grid (~30 gCO2e/kWh) beats Spain's night (~300) and its sunny
midday (~170), so the run goes to the ``no`` pool, at Norway's own best hour.

    prefect server start                                # then export PREFECT_API_URL=http://127.0.0.1:4200/api
    prefect work-pool create es-pool --type process && prefect work-pool create no-pool --type process
    prefect worker start --pool no-pool                 # another terminal (and one for es-pool)
    python flows/spatial.py es-pool no-pool             # deploys both and schedules one run

With real regions: ``REGIONS = {"GB": "...", "NO": "..."}`` and ``provider="electricitymaps"`` (one
provider must know every region: the UK's free API covers only GB).
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow

from greenflow.prefect import ScheduledRun, carbon_aware, schedule_green

FLOW_NAME = "greenflow-example-regional-training"
REGIONS = {"ES": f"{FLOW_NAME}/es", "NO": f"{FLOW_NAME}/no"}
"""Region -> the deployment on that region's work pool; the first is home."""
REPLAY = {
    "now": os.environ.get("GREENFLOW_REPLAY_NOW", "2022-06-01T00:00Z"),
    "speed": float(os.environ.get("GREENFLOW_REPLAY_SPEED", "3600")),
    # Set per run by schedule(): the scheduler and the run's process agree on the replay's clock.
    "replay_started_at": os.environ.get("GREENFLOW_REPLAY_STARTED_AT") or datetime.now(UTC).isoformat(),
}


@flow(name=FLOW_NAME)
@carbon_aware(
    region="ES",  # home, the first of REGIONS: savings are counted against starting there at once
    provider="trace",
    provider_options=REPLAY,
    expected_duration="2h",
    max_delay="14h",
    tags=["gpu", "training"],
    team="vision",
)
def regional_training(epochs: int = 2) -> dict[str, object]:
    """Stand-in for a GPU training job (keeps a CPU busy instead of training)."""
    digest = b"regional"
    until = time.monotonic() + 0.2 * epochs
    while time.monotonic() < until:
        digest = hashlib.sha256(digest).digest()
    return {"checkpoint": f"s3://models/resnet/regional-{digest.hex()[:8]}.pt", "epochs": epochs}


def deploy(pools: dict[str, str]) -> None:
    """Register one deployment per region, each on its region's work pool (``{"ES": "es-pool", ...}``)."""
    source = regional_training.from_source(  # type: ignore[attr-defined]
        source=str(Path(__file__).parent), entrypoint="spatial.py:regional_training"
    )
    for region, deployment in REGIONS.items():
        name = deployment.split("/", 1)[1]
        source.deploy(name=name, work_pool_name=pools[region], print_next_steps=False, ignore_warnings=True)


def schedule(regions: dict[str, str] = REGIONS, epochs: int = 2) -> ScheduledRun:
    """Plan across the regions and create the run of the greenest one's deployment at its window."""
    started = datetime.now(UTC).isoformat()
    options: dict[str, Any] = {**REPLAY, "replay_started_at": started}
    return schedule_green(
        regions=regions,
        parameters={"epochs": epochs},
        provider="trace",
        provider_options=options,
        expected_duration="2h",
        max_delay="14h",
        # The run's process replays from the same instant as this plan (a real provider needs none of this).
        job_variables={"env": {"GREENFLOW_REPLAY_STARTED_AT": started}},
    )


def main(es_pool: str, no_pool: str) -> None:
    """Deploy to both pools, schedule one run, and say where it went and why."""
    deploy({"ES": es_pool, "NO": no_pool})
    run = schedule()
    print(f"flow run {run.flow_run_name} of {run.deployment}: region {run.region}, at {run.scheduled_time} (wall)")
    for option in run.alternatives:
        print(f"  {option.describe()} -> {option.deployment}")


if __name__ == "__main__":
    main(*(sys.argv[1:3] if len(sys.argv) > 2 else ("es-pool", "no-pool")))
