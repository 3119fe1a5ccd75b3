"""Example: a training flow that runs in green segments, pausing in between (an interruptible job).

``interruptible_training`` is carbon-aware at flow level with ``interruptible=True``: greenflow plans the
greenest segments before the deadline that carry its 8 hours of work (each pause and resume costing
``resume_overhead``) and calls the flow function once per segment. The function:

1. **resumes from its checkpoint** (the first segment finds none and starts at step 0);
2. **checkpoints as it goes**, atomically (a temporary file renamed over the old one), so a crash at any
   moment leaves the last complete checkpoint;
3. **stops by the segment's end**: :func:`greenflow.prefect.current_segment` says when (``stop_wall``, real
   time; ``None`` in the last segment, which runs to completion) and the function returns ``False``;
4. **returns True when the work is done.**

Each segment is metered and recorded on its own (``interrupted``, then ``ran_now``/``deferred`` for the
last), the entries linked to the attempt (``extra["segment"]["link"]``). Between segments nothing is held:
a deployment's flow run goes back to ``Scheduled`` (``AwaitingGreenWindow``) and its process exits; a
worker starts it again for the next segment. Called outside a deployment it waits in its process.

Runs offline: the ``trace`` provider replays real Spanish grid data (Electricity Maps, June 2022) from
15:00 on 1 June at 3600x (an hour of grid time per second). The plan: run 15:00-18:00, pause over the
evening and night (about 15 s of real time), finish from 09:00 the next morning in the sun: greener than
any single 8-hour window. ``GREENFLOW_REPLAY_NOW`` / ``GREENFLOW_REPLAY_SPEED`` change the replay; with a
real provider (``region="GB"``, ``provider="ukgrid"``) none of that is needed.

    python flows/interruptible_training.py                  # in this process: run, wait, run (~25 s)

    prefect server start                                    # or, as a deployment (PREFECT_API_URL set):
    prefect work-pool create greenflow-demo --type process
    prefect worker start --pool greenflow-demo              # another terminal
    python flows/interruptible_training.py --deploy greenflow-demo

A "step" here is ``step_seconds`` of sleep standing in for a GPU batch. With a real framework the same
protocol is a few lines: Hugging Face ``Trainer(...).train(resume_from_checkpoint=last)`` with a
``TrainerCallback`` that sets ``control.should_save = control.should_training_stop = True`` once
``utcnow() >= segment.stop_wall``; PyTorch Lightning ``trainer.fit(model, ckpt_path=last)`` with a callback
that saves and sets ``trainer.should_stop = True`` then (see ``flows/checkpointed_training.py`` for the
command-line version, which ``greenflow run --interruptible`` stops with SIGTERM).
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow

from greenflow.clock import utcnow
from greenflow.prefect import carbon_aware, current_segment

FLOW_NAME = "greenflow-example-interruptible-training"
REPLAY: dict[str, Any] = {
    "now": os.environ.get("GREENFLOW_REPLAY_NOW", "2022-06-01T15:00Z"),
    "speed": float(os.environ.get("GREENFLOW_REPLAY_SPEED", "3600")),
}
if os.environ.get("GREENFLOW_REPLAY_STARTED_AT"):
    # Otherwise the replay starts when the run first plans, and a rescheduled run carries its clock along.
    REPLAY["replay_started_at"] = os.environ["GREENFLOW_REPLAY_STARTED_AT"]
DEFAULT_CHECKPOINT = str(Path(os.environ.get("TMPDIR", "/tmp")) / "greenflow-interruptible-training.ckpt")


def _load(path: Path) -> tuple[int, float]:
    if not path.exists():
        return 0, 1.0
    state = json.loads(path.read_text())
    return int(state["step"]), float(state["loss"])


def _save(path: Path, step: int, loss: float) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps({"step": step, "loss": loss}))
    os.replace(tmp, path)  # atomic: a crash leaves the old checkpoint or the new one, never half of one


@flow(name=FLOW_NAME, log_prints=True)
@carbon_aware(
    region="ES",
    provider="trace",
    provider_options=REPLAY,
    interruptible=True,
    expected_duration="8h",
    deadline="24h",
    resume_overhead="5m",  # reloading the checkpoint: counted against every extra segment
    min_segment="30m",
    budget=os.environ.get("GREENFLOW_EXAMPLE_BUDGET") or None,
    estimate="200g",
    tags=["gpu", "training"],
    team="vision",
)
def interruptible_training(
    steps: int = 100, checkpoint: str = DEFAULT_CHECKPOINT, step_seconds: float = 0.1, log: str | None = None
) -> bool:
    """Train for ``steps`` steps, resuming from ``checkpoint``; ``True`` when done, ``False`` when paused."""
    segment = current_segment()
    index = segment.index if segment is not None else 0
    path = Path(checkpoint)

    def say(line: str) -> None:
        print(f"segment {index}: {line}")
        if log is not None:
            with Path(log).open("a") as file:
                file.write(f"{index} {line}\n")

    step, loss = _load(path)
    say(f"resumed from step {step}" if step else "start")
    while step < steps:
        if segment is not None and segment.stop_wall is not None and utcnow() >= segment.stop_wall:
            say(f"paused at {step}")  # the checkpoint of this step is saved: the next segment resumes here
            return False
        time.sleep(step_seconds)  # the GPU batch
        step, loss = step + 1, loss * 0.99
        _save(path, step, loss)
    say(f"done at {step}")
    return True


def deploy(pool: str) -> None:
    """Register the deployment on a process work pool and start one run."""
    from prefect.deployments import run_deployment

    source = interruptible_training.from_source(  # type: ignore[attr-defined]
        source=str(Path(__file__).parent), entrypoint="interruptible_training.py:interruptible_training"
    )
    source.deploy(name="segments", work_pool_name=pool, print_next_steps=False, ignore_warnings=True)
    checkpoint = str(Path(DEFAULT_CHECKPOINT).with_name(f"greenflow-{datetime.now(UTC):%Y%m%dT%H%M%S}.ckpt"))
    run = run_deployment(f"{FLOW_NAME}/segments", timeout=0, parameters={"checkpoint": checkpoint})
    print(f"flow run {run.name}: Running (segment 1), Scheduled (AwaitingGreenWindow), Running (segment 2), Completed")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--deploy":
        deploy(sys.argv[2])
    else:
        Path(DEFAULT_CHECKPOINT).unlink(missing_ok=True)  # a fresh training each time the example is run
        print("done" if interruptible_training() else "not done")
