"""``greenflow run --interruptible``: a checkpointing command runs in green segments, as users run it.

A real ``greenflow`` process on the shipped Norwegian trace replayed at 7200x (the first 3 h segment lasts
1.5 s), running ``flows/checkpointed_training.py``: SIGTERM at the segment's end, resume from the
checkpoint in the next segment, one linked ledger entry per segment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from greenflow.ledger import Ledger

REPO = Path(__file__).resolve().parents[2]
TRAINING = REPO / "flows" / "checkpointed_training.py"


def test_a_checkpointing_command_runs_in_segments_and_resumes(sqlite_url: str, tmp_path: Path) -> None:
    checkpoint, log = tmp_path / "train.ckpt", tmp_path / "train.log"
    env = {**os.environ, "GREENFLOW_LEDGER_URL": sqlite_url, "GREENFLOW_CPU_TDP_W": "100"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "greenflow.cli",
            "run",
            "--interruptible",
            "--grace",
            "10s",
            "--task",
            "finetune",
            "--region",
            "NO",
            "--provider",
            "trace",
            "--provider-option",
            "now=2022-05-03T07:00Z",
            "--provider-option",
            "speed=7200",
            "--expected-duration",
            "4h",
            "--deadline",
            "8h",
            "--",
            sys.executable,
            str(TRAINING),
            "--steps",
            "100",
            "--step-seconds",
            "0.02",
            "--checkpoint",
            str(checkpoint),
            "--log",
            str(log),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(checkpoint.read_text())["step"] == 100
    lines = log.read_text().splitlines()
    assert any(line.startswith("0 paused at ") for line in lines), lines
    assert any(line.startswith("1 resumed from step ") for line in lines) and "1 done" in lines
    assert "done in 2 segment(s)" in done.stderr
    first, last = sorted(Ledger(sqlite_url).entries(), key=lambda e: e.extra["segment"]["index"])
    assert first.decision == "interrupted" and last.decision in ("ran_now", "deferred")
    assert first.extra["segment"]["link"] == last.extra["segment"]["link"]
    assert last.extra["segment"]["previous_entry"] == first.entry_id
