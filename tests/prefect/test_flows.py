"""Carbon-aware tasks and flows under the session's Prefect test server: entries per attempt, waits, caching."""

from __future__ import annotations

import asyncio
import time

import pytest
from prefect import flow, task
from prefect.cache_policies import INPUTS

from greenflow.prefect import carbon_aware

pytestmark = [pytest.mark.xdist_group("prefect"), pytest.mark.usefixtures("prefect_server")]


def test_each_retry_is_an_attempt_with_its_own_entry(replay, fake_gpu_meter, run_entries) -> None:  # type: ignore[no-untyped-def]
    tries: list[int] = []

    @task(retries=2, retry_delay_seconds=0)
    @carbon_aware(
        region="ES", provider="trace", provider_options=replay(), max_delay="0h", meter_factory=fake_gpu_meter
    )
    def train(epochs: int) -> str:
        tries.append(epochs)
        time.sleep(0.05)
        if len(tries) < 3:
            raise RuntimeError(f"NCCL timeout {len(tries)}")
        return "model.pt"

    @flow
    def pipeline() -> str:
        return train(2)

    state = pipeline(return_state=True)
    assert state.is_completed() and state.result() == "model.pt"
    entries = run_entries(state.state_details.flow_run_id)
    assert [(e.attempt, e.decision) for e in entries] == [(1, "failed"), (2, "failed"), (3, "ran_now")]
    [(orchestrator, workflow, task_id)] = {(e.orchestrator, e.workflow_id, e.task_id) for e in entries}
    assert (orchestrator, workflow) == ("prefect", "pipeline") and task_id.startswith("train-")
    assert [e.error for e in entries] == ["RuntimeError: NCCL timeout 1", "RuntimeError: NCCL timeout 2", None]
    assert all(e.energy_gpu_kwh and e.energy_gpu_kwh > 0 for e in entries)  # failed attempts used energy too


def test_a_task_waits_in_its_flow_for_the_window_and_a_retry_keeps_the_first_request(
    replay, fake_gpu_meter, run_entries
) -> None:  # type: ignore[no-untyped-def]
    tries: list[int] = []

    @task(retries=1, retry_delay_seconds=0)
    @carbon_aware(
        region="ES",
        provider="trace",
        provider_options=replay(),
        expected_duration="2h",
        max_delay="14h",
        meter_factory=fake_gpu_meter,
    )
    def fine_tune() -> str:
        tries.append(1)
        if len(tries) == 1:
            raise RuntimeError("preempted")
        return "ok"

    @flow
    def nightly() -> str:
        return fine_tune()

    state = nightly(return_state=True)
    assert state.is_completed()
    first, second = run_entries(state.state_details.flow_run_id)
    assert (first.decision, first.attempt) == ("failed", 1)
    assert first.deferred_seconds > 6 * 3600  # it waited for midday, in the flow's process
    assert first.actual_start >= first.planned_start
    assert second.attempt == 2
    # The retry planned against the first request (the deadline's anchor); its entry's request is its own.
    assert second.extra["first_requested_at"] == first.requested_at.isoformat()
    assert second.requested_at > first.requested_at
    inputs = [{k: v for k, v in e.policy.items() if k != "outcome"} for e in (first, second)]
    assert inputs[0] == inputs[1] and inputs[0]["max_delay_s"] == 14 * 3600
    assert second.reservation_id is None and second.decision in ("ran_now", "deferred")


def test_async_tasks_in_async_flows(replay, fake_gpu_meter, run_entries) -> None:  # type: ignore[no-untyped-def]
    @task
    @carbon_aware(
        region="ES", provider="trace", provider_options=replay(), max_delay="0h", meter_factory=fake_gpu_meter
    )
    async def embed(texts: list[str]) -> int:
        await asyncio.sleep(0.05)
        return len(texts)

    @flow
    async def index() -> int:
        first, second = await asyncio.gather(embed(["a", "b"]), embed(["c"]))
        return first + second

    state = asyncio.run(index(return_state=True))  # type: ignore[arg-type]
    assert state.is_completed()
    entries = run_entries(state.state_details.flow_run_id)
    assert len({e.task_id for e in entries}) == 2 and all(e.task_id.startswith("embed-") for e in entries)
    assert all(e.decision == "ran_now" and e.energy_gpu_kwh > 0 for e in entries)


def test_a_cached_task_run_does_not_run_so_records_nothing(replay, fake_gpu_meter, run_entries) -> None:  # type: ignore[no-untyped-def]
    calls: list[str] = []

    @task(cache_policy=INPUTS, persist_result=True)
    @carbon_aware(
        region="ES", provider="trace", provider_options=replay(), max_delay="0h", meter_factory=fake_gpu_meter
    )
    def featurize(dataset: str) -> str:
        calls.append(dataset)
        return f"{dataset}.parquet"

    @flow
    def features() -> tuple[str, str, str]:
        return featurize("sales"), featurize("sales"), featurize("returns")

    state = features(return_state=True)
    assert state.result() == ("sales.parquet", "sales.parquet", "returns.parquet")
    assert calls == ["sales", "returns"]  # the cache key is the user's inputs and source, not the wrapper's
    entries = run_entries(state.state_details.flow_run_id)
    assert len(entries) == 2 and len({e.task_id for e in entries}) == 2


def test_a_carbon_aware_flow_run_outside_a_deployment_waits_in_process(replay, fake_gpu_meter, run_entries) -> None:  # type: ignore[no-untyped-def]
    @flow(name="local-training")
    @carbon_aware(
        region="ES",
        provider="trace",
        provider_options=replay(),
        expected_duration="2h",
        max_delay="14h",
        meter_factory=fake_gpu_meter,
        artifacts=False,
    )
    def local_training(epochs: int = 1) -> int:
        time.sleep(0.05)
        return epochs

    state = local_training(epochs=2, return_state=True)
    assert state.is_completed() and state.result() == 2
    [entry] = run_entries(state.state_details.flow_run_id)
    assert (entry.workflow_id, entry.task_id, entry.attempt) == ("local-training", "local-training", 1)
    assert entry.decision == "deferred" and entry.deferred_seconds > 6 * 3600
