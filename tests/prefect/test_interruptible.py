"""Interruptible ``@carbon_aware`` functions and flows: called once per green segment, resumed from a checkpoint.

Everything is real but the GPU (the autospec fake of nvidia-ml-py, 300 W): the shipped Spanish trace
replayed fast, the segment planner, the ledger and budgets. From 15:00 on 1 June 2022 an 8 h job with
24 h to finish runs 15:00-18:00, pauses overnight and finishes from 09:00 the next morning (2 segments for
any start up to 17:00, so a slow start on a loaded host does not change the story).

* Called plainly (no Prefect run) it waits between segments in its process;
* a deployment's flow run, run in-process with ``run_flow`` (what a worker's process does), goes back to
  ``Scheduled`` between segments and its next process runs the next segment.
  ``test_interruptible_end_to_end.py`` does that with a real server and worker.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import time
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any
from uuid import UUID

import pytest

from greenflow.clock import utcnow
from greenflow.errors import InvalidInput
from greenflow.intensity import replay_clock
from greenflow.ledger import Budget, Entry
from greenflow.lifecycle import SegmentRun
from greenflow.prefect import GREEN_WINDOW_STATE, carbon_aware, current_segment

AFTERNOON = "2022-06-01T15:00Z"
FLOWS = Path(__file__).resolve().parents[2] / "flows"


def _train(checkpoint: Path, log: Path, steps: int, step_seconds: float) -> bool:
    """A training loop that checkpoints every step and stops by its segment's end (as users write it)."""
    segment = current_segment()
    assert segment is not None
    state = json.loads(checkpoint.read_text()) if checkpoint.exists() else {"step": 0}
    step = int(state["step"])
    with log.open("a") as out:
        out.write(f"{segment.index} {'resumed from step ' + str(step) if step else 'start'}\n")
    while step < steps:
        if segment.stop_wall is not None and utcnow() >= segment.stop_wall:
            with log.open("a") as out:
                out.write(f"{segment.index} paused at {step}\n")
            return False
        time.sleep(step_seconds)
        step += 1
        checkpoint.write_text(json.dumps({"step": step}))
    with log.open("a") as out:
        out.write(f"{segment.index} done\n")
    return True


def _lines(log: Path) -> list[tuple[int, str]]:
    return [(int(line.split(" ", 1)[0]), line.split(" ", 1)[1]) for line in log.read_text().splitlines()]


def _assert_linked(entries: list[Entry], *, metered: bool = True) -> None:
    """One entry per segment, the last one the attempt's; all linked, each pointing at the one before."""
    assert len(entries) >= 2
    assert [e.decision for e in entries[:-1]] == ["interrupted"] * (len(entries) - 1)
    assert entries[-1].decision in ("ran_now", "deferred")
    links = {e.extra["segment"]["link"] for e in entries}
    assert links == {entries[0].identity.idempotency_key}
    assert len({e.identity for e in entries}) == 1  # one attempt
    assert [e.extra["segment"]["index"] for e in entries] == list(range(len(entries)))
    assert [e.extra["segment"]["previous_entry"] for e in entries[1:]] == [e.entry_id for e in entries[:-1]]
    assert [e.extra["segment"]["final"] for e in entries] == [False] * (len(entries) - 1) + [True]
    if metered:  # each segment metered on its own (the example flows have no fake GPU: energy unknown there)
        assert all(e.energy_gpu_kwh and e.intensity_g_per_kwh for e in entries)
    assert len({e.actual_start for e in entries}) == len(entries)


def test_a_plain_call_runs_in_segments_resumes_from_its_checkpoint_and_settles_its_budget(
    ledger, replay, fake_gpu_meter, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    ledger.budgets.set(Budget.parse("gpu", "1kg", "month"))
    checkpoint, log = tmp_path / "train.ckpt", tmp_path / "train.log"

    # 36000x: the first segment (3 h) lasts 0.3 s, the night 1.5 s; 20 steps of 0.03 s need 0.6 s at least.
    @carbon_aware(
        region="ES",
        provider="trace",
        provider_options=replay(now=AFTERNOON),
        interruptible=True,
        expected_duration="8h",
        deadline="24h",
        budget="gpu",
        estimate="50g",
        meter_factory=fake_gpu_meter,
    )
    def fine_tune(steps: int) -> bool:
        return _train(checkpoint, log, steps, 0.03)

    assert fine_tune(20) is True

    assert json.loads(checkpoint.read_text())["step"] == 20
    lines = _lines(log)
    paused = [int(line.removeprefix("paused at ")) for index, line in lines if line.startswith("paused at ")]
    assert lines[0] == (0, "start") and paused and 0 < paused[0] < 20
    assert (1, f"resumed from step {paused[0]}") in lines  # from the checkpoint the first segment left
    assert lines[-1][1] == "done"
    entries = ledger.entries()
    _assert_linked(entries)
    assert entries[0].orchestrator == "cli"  # nothing orchestrated it
    assert entries[0].extra["segment"]["stop_at"] is not None and entries[-1].extra["segment"]["stop_at"] is None
    status = ledger.budgets.status("gpu")
    assert status.reserved == 0 and status.open_reservations == 0
    assert status.settled == pytest.approx(sum(e.charged_g or 0 for e in entries))
    assert current_segment() is None  # only inside the call


def test_an_async_function_runs_in_segments_too(ledger, replay, fake_gpu_meter, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    seen: list[SegmentRun] = []

    @carbon_aware(
        region="ES",
        provider="trace",
        provider_options=replay(now=AFTERNOON),
        interruptible=True,
        expected_duration="8h",
        deadline="24h",
        meter_factory=fake_gpu_meter,
    )
    async def infer() -> bool:
        segment = current_segment()
        assert segment is not None
        seen.append(segment)
        await asyncio.sleep(0.01)
        return segment.stop_wall is None  # pauses until its last segment, which finishes

    assert asyncio.run(infer()) is True
    assert [s.index for s in seen] == list(range(len(seen))) and len(seen) >= 2
    _assert_linked(ledger.entries())


def test_an_interruptible_function_that_does_not_say_whether_it_is_done_fails(ledger, replay, fake_gpu_meter) -> None:  # type: ignore[no-untyped-def]
    ledger.budgets.set(Budget.parse("gpu", "1kg", "month"))

    @carbon_aware(
        region="ES",
        provider="trace",
        provider_options=replay(now=AFTERNOON),
        interruptible=True,
        expected_duration="8h",
        deadline="24h",
        budget="gpu",
        estimate="50g",
        meter_factory=fake_gpu_meter,
    )
    def train() -> None:  # forgot to return: must not run again and again
        pass

    with pytest.raises(InvalidInput, match=r"is interruptible but returned None in segment 0") as raised:
        train()
    assert "return True when the work is done, False" in str(raised.value)
    [entry] = ledger.entries()
    assert entry.decision == "failed" and entry.extra["segment"]["final"] is True
    assert ledger.budgets.status("gpu").open_reservations == 0


# -- flows ------------------------------------------------------------------------------------------------


@pytest.fixture
def example(monkeypatch):  # type: ignore[no-untyped-def]
    """flows/interruptible_training.py imported afresh, replaying from 15:00 at 36000x."""
    monkeypatch.setenv("GREENFLOW_REPLAY_SPEED", "36000")
    monkeypatch.delenv("GREENFLOW_REPLAY_STARTED_AT", raising=False)
    spec = importlib.util.spec_from_file_location(
        f"greenflow_example_interruptible_{uuid.uuid4().hex}", FLOWS / "interruptible_training.py"
    )
    assert spec is not None and spec.loader is not None
    module: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.xdist_group("prefect")
@pytest.mark.usefixtures("prefect_server")
def test_the_example_flow_outside_a_deployment_waits_in_its_process_between_segments(
    example, run_entries, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]

    checkpoint, log = tmp_path / "train.ckpt", tmp_path / "train.log"
    state = example.interruptible_training(
        steps=20, checkpoint=str(checkpoint), step_seconds=0.03, log=str(log), return_state=True
    )
    assert state.is_completed() and state.result() is True
    entries = run_entries(state.state_details.flow_run_id)
    _assert_linked(entries, metered=False)
    assert entries[0].task_id == example.FLOW_NAME and entries[0].orchestrator == "prefect"
    lines = _lines(log)
    assert any(index == 1 and line.startswith("resumed from step ") for index, line in lines)
    assert json.loads(checkpoint.read_text())["step"] == 20


@pytest.mark.xdist_group("prefect")
@pytest.mark.usefixtures("prefect_server")
def test_the_tasks_of_an_interruptible_flow_see_its_segment(replay, fake_gpu_meter, run_entries) -> None:  # type: ignore[no-untyped-def]
    from prefect import flow, task

    seen: list[SegmentRun | None] = []

    @task
    def train_a_bit() -> bool:
        segment = current_segment()
        seen.append(segment)
        return segment is not None and segment.stop_wall is None  # done in the last segment

    @flow(name="segmented")
    @carbon_aware(
        region="ES",
        provider="trace",
        provider_options=replay(now=AFTERNOON),
        interruptible=True,
        expected_duration="8h",
        deadline="24h",
        meter_factory=fake_gpu_meter,
    )
    def segmented() -> bool:
        return train_a_bit()

    state = segmented(return_state=True)
    assert state.is_completed() and state.result() is True
    assert len(seen) >= 2 and all(segment is not None for segment in seen)
    assert [segment.index for segment in seen if segment is not None] == list(range(len(seen)))
    _assert_linked(run_entries(state.state_details.flow_run_id))


def _deploy(flow_obj: Any, name: str) -> str:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name(flow_obj.name)
        client.create_deployment(flow_id=flow_id, name=name, entrypoint="flows/interruptible_training.py:x")
    return f"{flow_obj.name}/{name}"


def _read(flow_run_id: UUID) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id)


@pytest.mark.xdist_group("prefect")
@pytest.mark.usefixtures("prefect_server")
def test_a_deployment_run_goes_back_to_scheduled_between_segments_and_its_next_process_resumes(
    example, run_entries, monkeypatch, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from prefect.client.orchestration import get_client
    from prefect.exceptions import Pause
    from prefect.flow_engine import run_flow

    from greenflow.prefect.deferral import read_deferral

    checkpoint, log = tmp_path / "train.ckpt", tmp_path / "train.log"
    flow_obj = example.interruptible_training
    deployment = _deploy(flow_obj, f"segments-{uuid.uuid4().hex[:6]}")
    with get_client(sync_client=True) as client:
        found = client.read_deployment_by_name(deployment)
        created = client.create_flow_run_from_deployment(
            found.id, parameters={"steps": 20, "checkpoint": str(checkpoint), "step_seconds": 0.03, "log": str(log)}
        )

    with pytest.raises(Pause):  # the first segment ran; a worker's process exits here (status 0)
        run_flow(flow_obj, flow_run=created)
    waiting = _read(created.id)
    assert waiting.state.type.value == "SCHEDULED" and waiting.state.name == GREEN_WINDOW_STATE
    assert waiting.state.message.startswith("greenflow: paused after segment 1 of 2; segment 2 starts at 2022-06-02")
    carried = read_deferral(created.id)
    assert carried is not None and carried.decision.segment_index == 1 and carried.deferrals == 1
    assert carried.replay is not None  # the replay's clock travels with the run
    [first] = run_entries(created.id)
    assert first.decision == "interrupted" and carried.decision.previous_segment_entry == first.entry_id
    at = json.loads(checkpoint.read_text())["step"]
    assert 0 < at < 20 and _lines(log)[-1] == (0, f"paused at {at}")

    # The worker starts the run again at the next segment, in a new process (no replay clock of its own).
    while utcnow() < carried.decision.wake_at:
        time.sleep(0.05)
    monkeypatch.setattr(replay_clock, "_ANCHORS", {})
    assert run_flow(flow_obj, flow_run=_read(created.id)) is True
    done = _read(created.id)
    assert done.state.is_completed() and done.run_count == 2
    entries = run_entries(created.id)
    _assert_linked(entries, metered=False)
    assert entries[0].attempt == entries[-1].attempt == 1  # a pause is no attempt
    assert (1, f"resumed from step {at}") in _lines(log)
    assert json.loads(checkpoint.read_text())["step"] == 20
    assert read_deferral(created.id) is None  # used up


def test_stopped_while_waiting_for_its_next_segment_it_holds_no_budget(
    ledger, replay, fake_gpu_meter, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from greenflow.prefect import decorators

    ledger.budgets.set(Budget.parse("gpu", "1kg", "month"))
    waited = decorators.wait_in_process

    def interrupted_overnight(lifecycle, step, logger):  # type: ignore[no-untyped-def]
        if step.decision.segment_index == 1:
            raise KeyboardInterrupt  # the process is stopped between the segments
        return waited(lifecycle, step, logger)

    monkeypatch.setattr(decorators, "wait_in_process", interrupted_overnight)

    @carbon_aware(
        region="ES",
        provider="trace",
        provider_options=replay(now=AFTERNOON),
        interruptible=True,
        expected_duration="8h",
        deadline="24h",
        budget="gpu",
        estimate="50g",
        meter_factory=fake_gpu_meter,
    )
    def train() -> bool:
        return False

    with pytest.raises(KeyboardInterrupt):
        train()
    [first] = ledger.entries()
    assert first.decision == "interrupted" and first.extra["segment"]["final"] is False
    status = ledger.budgets.status("gpu")
    # The first segment's charge is settled; the rest of the 50 g is no longer held for a job that is gone.
    assert status.open_reservations == 0 and status.reserved == 0
    assert status.settled == pytest.approx(first.charged_g)
