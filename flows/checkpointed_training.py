"""Example: a training script that greenflow can pause and resume (an interruptible job).

Run it in green segments before its deadline::

    greenflow run --interruptible --grace 2m --region GB --duration 8h --deadline 24h -- \\
        python flows/checkpointed_training.py --steps 1000 --checkpoint /tmp/train.ckpt

The whole protocol, which any command can follow:

1. **Resume from the checkpoint** if there is one (the first segment finds none and starts at step 0).
2. **Save a checkpoint as you go**, atomically (write a temporary file, then rename it over the old
   one), so that a kill at any moment leaves the last complete checkpoint.
3. **On SIGTERM, save and exit** (greenflow sends it at a segment's end, and SIGKILL ``--grace`` later).
   Any exit code after SIGTERM means "paused": greenflow starts the command again in the next segment.
4. **Exit 0 when the work is done.** Before a segment's end that ends the attempt; a non-zero exit
   before the end is a failure.

greenflow also tells the command where it is: ``GREENFLOW_SEGMENT_INDEX`` (0, 1, ...),
``GREENFLOW_SEGMENTS`` (how many are planned) and ``GREENFLOW_STOP_AT`` (ISO time of the planned stop,
empty in the last segment, which runs to completion).

With real frameworks the same pattern is a few lines:

* Hugging Face ``transformers``: ``TrainingArguments(save_strategy="steps", save_steps=...)`` saves as it
  goes; start with ``trainer.train(resume_from_checkpoint=get_last_checkpoint(output_dir))``
  (``transformers.trainer_utils``; ``None`` on the first segment); on SIGTERM, set a flag that a
  ``TrainerCallback.on_step_end`` turns into ``control.should_save = control.should_training_stop = True``.
* PyTorch Lightning: ``ModelCheckpoint(save_last=True, every_n_train_steps=...)`` and
  ``trainer.fit(model, ckpt_path=last)`` with ``last`` the ``last.ckpt`` path once it exists (``None``
  before); on SIGTERM save with ``trainer.save_checkpoint(...)`` from a callback and stop with
  ``trainer.should_stop = True``.

Here a "step" is a little arithmetic and ``--step-seconds`` of sleep, standing in for a GPU batch. Each
line it prints says what it did (``start``, ``resumed from step N``, ``checkpoint N``, ``paused at N``,
``done``), and ``--log`` appends them to a file (the tests read it).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

_stop = False


def _on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    global _stop
    _stop = True  # finish the current step, save, exit: never leave a half-written checkpoint


def _save(path: Path, step: int, loss: float) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps({"step": step, "loss": loss}))
    os.replace(tmp, path)  # atomic: a kill leaves the old checkpoint or the new one, never half of one


def _load(path: Path) -> tuple[int, float]:
    if not path.exists():
        return 0, 1.0
    state = json.loads(path.read_text())
    return int(state["step"]), float(state["loss"])


def main(argv: list[str] | None = None) -> int:
    """Train for ``--steps`` steps, resuming from ``--checkpoint``; 0 when done, 143 when paused."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="steps the whole training takes")
    parser.add_argument("--checkpoint", type=Path, required=True, help="checkpoint file (JSON)")
    parser.add_argument("--step-seconds", type=float, default=0.05, help="time one step takes")
    parser.add_argument("--log", type=Path, help="append what happens here too")
    parser.add_argument(
        "--ignore-sigterm-in-segment",
        type=int,
        action="append",
        default=[],
        help="(tests) ignore SIGTERM in this segment, as a job that cannot checkpoint in time",
    )
    args = parser.parse_args(argv)
    segment = int(os.environ.get("GREENFLOW_SEGMENT_INDEX", "0"))

    def say(line: str) -> None:
        print(line, flush=True)
        if args.log is not None:
            with args.log.open("a") as log:
                log.write(f"{segment} {line}\n")

    if segment in args.ignore_sigterm_in_segment:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, _on_sigterm)
    step, loss = _load(args.checkpoint)
    say(f"resumed from step {step}" if step else "start")
    while step < args.steps:
        if _stop:
            say(f"paused at {step}")
            return 128 + signal.SIGTERM
        time.sleep(args.step_seconds)  # the GPU batch
        step, loss = step + 1, loss * 0.99
        _save(args.checkpoint, step, loss)
        say(f"checkpoint {step}")
    say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
