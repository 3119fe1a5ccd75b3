"""Interruptible tasks in Airflow: a checkpointing command in green segments, deferring between them.

Driven as Airflow drives a deferrable task (``execute`` -> ``TaskDeferred`` -> the trigger's ``run()`` ->
``execute_complete``), on the shipped Spanish trace replayed at 21600x (six hours of grid time a
second): an 8 h job asked for at 14:00 with 24 h to finish runs until 18:00, pauses overnight and finishes
in the next morning's sun from 09:00, after the attempt's latest start (06:00): the trigger must wait for
the segment, not fire at that latest start. The command is ``flows/checkpointed_training.py``: it
checkpoints as it goes, saves and exits on SIGTERM and resumes from its checkpoint file. Nothing runs and
nothing is held between the segments but the trigger.

The replay's speed is a compromise: each execution's own overhead (opening the ledger, planning) moves the
replay clock on by that time x the speed, which a segment's wall-clock length does not count, so a faster
replay eats the overnight pause.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shlex
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred

from greenflow.airflow.carbon_aware_base import ENTRY_XCOM_KEY
from greenflow.airflow.operators.bash import CarbonAwareBashOperator
from greenflow.airflow.operators.carbon_aware import CarbonAwareOperator
from greenflow.airflow.triggers.window import CarbonWindowTrigger, latest_start
from greenflow.ledger import Entry, Ledger
from greenflow.lifecycle import Decision, SegmentRun
from greenflow.metering.meter import Meter
from greenflow.segment_runner import sleep_until

TRAINING = Path(__file__).resolve().parents[3] / "flows" / "checkpointed_training.py"
ES_AFTERNOON = "2022-06-01T14:00Z"
JOB = {"region": "ES", "provider": "trace", "expected_duration": "8h", "deadline": "24h", "interruptible": True}


@pytest.fixture(autouse=True)
def _warm_meter() -> None:
    """Import and probe the meter once: a segment's stop is timed before its meter starts, and a cold start
    (~0.3 s, hours of trace at this speed) would leave the first segment no time to run."""
    Meter(sample_interval=1.0).close()


def _replay(now: str = ES_AFTERNOON, speed: float = 21_600) -> dict[str, Any]:
    return {"now": now, "speed": speed, "replay_started_at": datetime.now(UTC).isoformat()}


def _fire(trigger: CarbonWindowTrigger) -> dict[str, Any]:
    async def first_event() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("the trigger ended without an event")

    return asyncio.run(asyncio.wait_for(first_event(), 30))


def _drive(op: Any, context: dict[str, Any]) -> tuple[Any, list[dict[str, Any]]]:
    """Run a deferrable task as Airflow does: execute, then each deferral's trigger and execute_complete."""
    events: list[dict[str, Any]] = []
    call: Callable[[], Any] = lambda: op.execute(context)  # noqa: E731
    while True:
        try:
            return call(), events
        except TaskDeferred as deferred:
            assert deferred.method_name == "execute_complete"
            # What Airflow stores and the triggerer rebuilds: the serialized trigger, primitives only.
            path, kwargs = deferred.trigger.serialize()
            assert path == "greenflow.airflow.triggers.window.CarbonWindowTrigger"
            event = _fire(CarbonWindowTrigger(**json.loads(json.dumps(kwargs))))
            events.append(event)
            call = lambda event=event: op.execute_complete(context, event)  # noqa: E731


def _log(log: Path) -> list[tuple[int, str]]:
    return [(int(line.split(" ", 1)[0]), line.split(" ", 1)[1]) for line in log.read_text().splitlines()]


def _linked(entries: list[Entry]) -> None:
    """One entry per segment, in order, each linked to the attempt and to the segment before."""
    assert len(entries) >= 2
    links = {entry.extra["segment"]["link"] for entry in entries}
    assert len(links) == 1
    assert entries[0].extra["segment"]["previous_entry"] is None
    for before, after in itertools.pairwise(entries):
        assert after.extra["segment"]["previous_entry"] == before.entry_id
    assert [e.decision for e in entries[:-1]] == ["interrupted"] * (len(entries) - 1)
    assert entries[-1].decision in ("ran_now", "deferred") and entries[-1].extra["segment"]["final"] is True


def test_an_interruptible_bash_task_pauses_between_segments_and_resumes_from_its_checkpoint(
    gf_ledger: Ledger, make_context: Any, tmp_path: Path
) -> None:
    checkpoint, log = tmp_path / "train.ckpt", tmp_path / "train.log"
    command = [sys.executable, str(TRAINING), "--steps", "80", "--step-seconds", "0.01"]
    command += ["--checkpoint", str(checkpoint), "--log", str(log)]
    op = CarbonAwareBashOperator(
        task_id="train",
        bash_command=shlex.join(command),
        provider_options=_replay(),
        **JOB,
        grace="10s",
    )
    context = make_context(task_id="train")

    _, events = _drive(op, context)

    assert json.loads(checkpoint.read_text())["step"] == 80  # the work got done
    lines = _log(log)
    paused = [int(line.removeprefix("paused at ")) for seg, line in lines if seg == 0 and line.startswith("paused")]
    assert paused and 0 < paused[0] < 80, lines  # SIGTERM at the first segment's planned end: saved, exited
    assert (1, f"resumed from step {paused[0]}") in lines and lines[-1] == (1, "done")
    assert len(events) == 1 and events[0]["fired"] == "planned_start"  # deferred (nothing held) until segment 2
    entries = [e for e in gf_ledger.entries() if e.task_id == "train"]
    _linked(entries)
    first, last = entries
    assert first.extra["segment"]["stopped"] == "SIGTERM at the segment's planned end"
    assert first.extra["segment"]["exit_code"] == 143 and last.extra["segment"]["exit_code"] == 0
    assert first.region == last.region == "ES"
    assert first.extra["segment"]["planned_end"].startswith("2022-06-01T18:00")
    # The next morning (re-planned by the trigger at its refreshes), after the attempt's latest start (< 07:00).
    assert last.extra["segment"]["planned_start"] > "2022-06-02T07:00"
    assert context["ti"].xcoms[ENTRY_XCOM_KEY] == last.entry_id


def test_an_interruptible_bash_task_that_fails_mid_segment_fails_with_its_segment_recorded(
    gf_ledger: Ledger, make_context: Any
) -> None:
    op = CarbonAwareBashOperator(
        task_id="broken",
        bash_command="exit 3",
        provider_options=_replay(),
        **JOB,
    )
    with pytest.raises(Exception, match="non-zero exit code 3"):
        _drive(op, make_context(task_id="broken"))
    [entry] = [e for e in gf_ledger.entries() if e.task_id == "broken"]
    assert entry.decision == "failed" and entry.extra["segment"]["exit_code"] == 3


def test_an_interruptible_python_task_gets_its_segment_and_says_when_it_is_done(
    gf_ledger: Ledger, make_context: Any, tmp_path: Path
) -> None:
    progress = tmp_path / "progress.json"
    seen: list[SegmentRun] = []

    def train(segment: SegmentRun, rows: int) -> bool:
        seen.append(segment)
        done = json.loads(progress.read_text()) if progress.exists() else []
        progress.write_text(json.dumps([*done, segment.index]))  # its checkpoint: the segments it worked in
        if segment.stop_wall is None:
            return True  # the last segment runs to completion
        sleep_until(segment.stop_wall)  # works until it is asked to stop, then checkpoints and returns
        return False

    op = CarbonAwareOperator(
        task_id="train_py",
        python_callable=train,
        op_kwargs={"rows": 10},
        provider_options=_replay(),
        **JOB,
    )

    result, events = _drive(op, make_context(task_id="train_py"))

    assert result is True and len(events) == 1
    assert [s.index for s in seen] == [0, 1] and json.loads(progress.read_text()) == [0, 1]
    assert seen[0].of == 2 and seen[0].stop_at == datetime(2022, 6, 1, 18, tzinfo=UTC)
    assert seen[1].stop_at is None
    _linked([e for e in gf_ledger.entries() if e.task_id == "train_py"])


def test_the_trigger_bounds_a_later_segment_by_the_latest_start_of_the_rest_of_the_work() -> None:
    # Spain, 1 June 2022: an 8 h job asked for at 15:00 with 24 h to finish ran 15:00-18:00 and waits for
    # 09:00-14:05 the next morning. The attempt's latest start is 07:00: a trigger that fired there would
    # start the segment two hours early, in the dark. With 3 h done, the rest (and its 5 min resume) may
    # start until 09:55, after the planned 09:00.
    segments = [
        {"index": 0, "start": "2022-06-01T15:00:00Z", "end": "2022-06-01T18:00:00Z", "work_seconds": 10800.0},
        {"index": 1, "start": "2022-06-02T09:00:00Z", "end": "2022-06-02T14:05:00Z", "work_seconds": 18000.0},
    ]
    first = Decision(
        requested_at=datetime(2022, 6, 1, 15, tzinfo=UTC),
        start_at=datetime(2022, 6, 1, 15, tzinfo=UTC),
        latest_start=datetime(2022, 6, 2, 7, tzinfo=UTC),
        wake_at=datetime(2022, 6, 1, 15, tzinfo=UTC),
        region="ES",
        action="run_now",
        reason="test",
        plan={"interruptible": True, "segments": segments},
        segment_index=0,
    )
    waiting = replace(first, action="defer", segment_index=1, previous_segment_entry="segment-0-entry")
    overhead = timedelta(minutes=5)

    assert latest_start(first, overhead) == datetime(2022, 6, 2, 7, tzinfo=UTC)
    assert latest_start(waiting, overhead) == datetime(2022, 6, 2, 9, 55, tzinfo=UTC)
    assert latest_start(replace(first, plan=None, segment_index=None)) == first.latest_start
