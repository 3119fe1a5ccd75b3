"""Example: a training job that runs in green segments, pausing (and holding nothing) in between.

``train`` is a CarbonAwareBashOperator with ``interruptible=True``: greenflow plans the segments before the
deadline that carry the job's 8 hours at the least carbon (here on the Spanish grid of 1 June 2022, asked
for at 14:00: the afternoon until 18:00, then the next morning's sun), runs the command in the first one,
sends it SIGTERM at the segment's end (SIGKILL ``grace`` later) and defers to the trigger until the next,
where the command starts again and resumes from its checkpoint. Every segment leaves its own ledger entry,
linked to the attempt (``extra["segment"]``). Past the last planned segment the job runs to completion.

The command is ``flows/checkpointed_training.py``, a stand-in that follows the protocol a real training
script follows (Hugging Face ``Trainer(resume_from_checkpoint=...)``, PyTorch Lightning ``ckpt_path``: see
its docstring): checkpoint as you go, save and exit on SIGTERM, resume from the checkpoint, exit 0 when done.
Its checkpoint and log go to the run's ``checkpoint_dir`` param.

Runs offline: the ``trace`` provider replays the shipped data at 21600x from the task's start
(``ti.start_date``, which a deferred task keeps), so the overnight pause lasts about two seconds.
"""

from __future__ import annotations

import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from airflow.sdk import DAG, Param

from greenflow.airflow.operators.bash import CarbonAwareBashOperator

TRAINING = Path(__file__).resolve().parents[1] / "flows" / "checkpointed_training.py"
REPLAY = {
    "now": "2022-06-01T14:00Z",
    "speed": 21_600,
    "replay_started_at": "{{ ti.start_date.isoformat() }}",
}
DIR = "{{ params.checkpoint_dir }}"

with DAG(
    dag_id="greenflow_example_interruptible",
    schedule=None,
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    params={"checkpoint_dir": Param(tempfile.gettempdir(), type="string")},
    tags=["greenflow", "example", "interruptible"],
) as dag:
    train = CarbonAwareBashOperator(
        task_id="train",
        bash_command=(
            f"{sys.executable} {TRAINING} --steps 80 --step-seconds 0.01 "
            f'--checkpoint "{DIR}/train-{{{{ run_id }}}}.ckpt" --log "{DIR}/train-{{{{ run_id }}}}.log"'
        ),
        region="ES",
        provider="trace",
        provider_options=REPLAY,
        expected_duration="8h",
        deadline="24h",
        interruptible=True,
        grace="2m",
        tags=["gpu", "training"],
    )
