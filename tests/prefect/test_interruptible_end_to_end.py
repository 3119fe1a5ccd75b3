"""End to end: an interruptible deployment run on a real ``prefect server`` and process worker, nothing faked.

The example ``flows/interruptible_training.py`` (8 h of work, 24 h to finish, from 15:00 on 1 June 2022 in
Spain) runs its first segment (15:00-18:00), checkpoints and goes back to ``Scheduled``
(``AwaitingGreenWindow``) with no process holding it over the night; the worker starts it again for the
morning segment, which resumes from the checkpoint and finishes. The trace is replayed at 3600x: the first
segment lasts ~3 s, the night ~15 s (far longer than a flow process takes to exit on a busy machine).
The server and worker harness is ``test_end_to_end.py``'s.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from greenflow.ledger import EntryFilter, Ledger
from tests.prefect import test_end_to_end as harness
from tests.prefect.test_end_to_end import ROOT, LivePrefect, _flow_run, _processes_holding, _wait_for

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("prefect-live"), pytest.mark.timeout(480)]

live_prefect = harness.live_prefect  # the live server (module scope) and its worker, as fixtures here
start_worker = harness.start_worker


def test_an_interruptible_deployment_run_waits_scheduled_between_segments_without_a_process_then_resumes(
    live_prefect: LivePrefect, start_worker: Callable[[str], Any], tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.flows import Flow

    from greenflow.prefect import GREEN_WINDOW_STATE

    start_worker("segments-pool")
    entrypoint = "interruptible_training.py:interruptible_training"
    training = Flow.from_source(source=str(ROOT / "flows"), entrypoint=entrypoint)
    training.deploy(name="segments", work_pool_name="segments-pool", print_next_steps=False, ignore_warnings=True)  # type: ignore[union-attr]
    checkpoint, log = tmp_path / "train.ckpt", tmp_path / "train.log"
    created = run_deployment(
        "greenflow-example-interruptible-training/segments",
        timeout=0,
        # 50 steps of 0.1 s: more than the first segment's ~3 s, so the morning segment has work left.
        parameters={"steps": 50, "checkpoint": str(checkpoint), "step_seconds": 0.1, "log": str(log)},
        job_variables={"env": {"GREENFLOW_REPLAY_SPEED": "3600", "GREENFLOW_CPU_TDP_W": "65"}},
    )
    flow_run_id = created.id  # type: ignore[union-attr]

    waiting = _wait_for(flow_run_id, lambda r: r.state.name == GREEN_WINDOW_STATE, 150, "paused between segments")
    window = waiting.next_scheduled_start_time
    assert waiting.state.type.value == "SCHEDULED"
    assert waiting.state.message.startswith("greenflow: paused after segment 1 of 2; segment 2 starts at 2022-06-02")
    [first] = Ledger().entries(EntryFilter(run_id=str(flow_run_id)))
    assert first.decision == "interrupted" and first.extra["segment"]["index"] == 0
    paused_at = json.loads(checkpoint.read_text())["step"]
    assert 0 < paused_at < 50
    # The process that ran the first segment exits: nothing holds the run while it waits for the next.
    deadline = time.monotonic() + 20
    while _processes_holding(flow_run_id):
        assert time.monotonic() < deadline, "the flow run's process did not exit after its segment"
        time.sleep(0.2)
    assert datetime.now(UTC) < window, "the check must happen before the next segment"
    assert _flow_run(flow_run_id).state.name == GREEN_WINDOW_STATE

    done = _wait_for(flow_run_id, lambda r: r.state.is_final(), 180, "finished")
    assert done.state.is_completed(), done.state
    with get_client(sync_client=True) as client:
        history = [s.name for s in client.read_flow_run_states(flow_run_id)]
    seen = [name for name in history if name in ("Running", GREEN_WINDOW_STATE, "Completed")]
    assert seen == ["Running", GREEN_WINDOW_STATE, "Running", "Completed"]  # one process per segment

    entries = Ledger().entries(EntryFilter(run_id=str(flow_run_id)))
    assert len(entries) >= 2 and [e.decision for e in entries[:-1]] == ["interrupted"] * (len(entries) - 1)
    assert entries[-1].decision in ("ran_now", "deferred") and entries[0].entry_id == first.entry_id
    assert {e.extra["segment"]["link"] for e in entries} == {entries[-1].identity.idempotency_key}
    assert [e.extra["segment"]["previous_entry"] for e in entries[1:]] == [e.entry_id for e in entries[:-1]]
    assert {(e.task_id, e.attempt) for e in entries} == {("greenflow-example-interruptible-training", 1)}
    # The morning segment ran in the morning of the trace (the replay's clock travelled with the run).
    assert entries[1].actual_start >= datetime.fromisoformat(entries[1].extra["segment"]["planned_start"])
    assert entries[1].actual_start.date().isoformat() == "2022-06-02"
    assert all(e.method_cpu == "estimate" and e.energy_cpu_kwh for e in entries)  # each segment its own energy
    lines = log.read_text().splitlines()
    assert f"0 paused at {paused_at}" in lines and f"1 resumed from step {paused_at}" in lines
    assert lines[-1] == "1 done at 50" and json.loads(checkpoint.read_text())["step"] == 50
