"""The example interruptible DAG through ``dag.test()`` (Airflow runs the trigger in-process): the training
command runs in two segments, is stopped at the first one's end, resumes from its checkpoint in the
second, and leaves one linked ledger entry per segment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from greenflow.airflow.carbon_aware_base import ENTRY_XCOM_KEY
from greenflow.ledger import Ledger
from greenflow.metering.meter import Meter

pytestmark = pytest.mark.xdist_group("airflow-dagtest")
DAG_ID = "greenflow_example_interruptible"


def test_the_example_trains_in_two_segments_resuming_from_its_checkpoint(
    dagbag: Any, gf_ledger: Ledger, tmp_path: Path
) -> None:
    # The replay runs at 21600x from the task's start: warm up what a first run in a process pays for
    # (seconds: hours of grid time), as a worker that is already running has. dag.test()'s in-process
    # execution machinery starts after the task got its start date; a segment's stop is timed before its
    # meter starts (a cold meter: ~0.3 s).
    assert dagbag.get_dag("greenflow_test_warm_up").test().state == "success"
    Meter(sample_interval=1.0).close()

    run = dagbag.get_dag(DAG_ID).test(run_conf={"checkpoint_dir": str(tmp_path)})

    assert run.state == "success"
    [checkpoint] = tmp_path.glob("train-*.ckpt")
    assert json.loads(checkpoint.read_text())["step"] == 80
    [log] = tmp_path.glob("train-*.log")
    lines = [tuple(line.split(" ", 1)) for line in log.read_text().splitlines()]
    paused = [line for segment, line in lines if segment == "0" and line.startswith("paused at ")]
    assert paused, lines  # SIGTERM at the first segment's end: it saved and exited
    step = paused[0].removeprefix("paused at ")
    assert ("1", f"resumed from step {step}") in lines and lines[-1] == ("1", "done")

    first, last = [e for e in gf_ledger.entries() if e.task_id == "train"]
    assert first.run_id == last.run_id == run.run_id and first.region == last.region == "ES"
    assert first.decision == "interrupted" and last.decision in ("ran_now", "deferred")
    assert first.extra["segment"]["link"] == last.extra["segment"]["link"]
    assert last.extra["segment"]["previous_entry"] == first.entry_id and last.extra["segment"]["final"] is True
    assert first.extra["segment"]["stopped"] == "SIGTERM at the segment's planned end"
    ti = next(t for t in run.get_task_instances() if t.task_id == "train")
    assert ti.xcom_pull(task_ids="train", key=ENTRY_XCOM_KEY) == last.entry_id
    assert gf_ledger.verify().ok
