"""``@carbon_aware`` outside any Prefect run and through ``.fn()``: no server, the real lifecycle and ledger.

The GPU is the autospec fake of nvidia-ml-py (300 W); intensity is the shipped Spanish trace replayed at
36000x, so a deferral from midnight to midday waits about a second of real time.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from prefect import Task, task

from greenflow.errors import BudgetExceeded, InvalidInput
from greenflow.ledger import Budget, Identity
from greenflow.lifecycle import Lifecycle
from greenflow.prefect import carbon_aware, carbon_config, gpu_task
from greenflow.prefect import deferral as deferral_module
from greenflow.spec import CarbonSpec
from greenflow.steps import Wait


def test_outside_prefect_it_waits_for_the_window_then_meters_and_records(
    ledger, replay, fake_gpu_meter, caplog
) -> None:  # type: ignore[no-untyped-def]
    calls = []

    @carbon_aware(
        region="ES",
        provider="trace",
        provider_options=replay(),
        expected_duration="2h",
        max_delay="14h",
        meter_factory=fake_gpu_meter,
    )
    def train(epochs: int, *, lr: float = 0.1) -> str:
        """Train the model."""
        calls.append((epochs, lr))
        time.sleep(0.1)
        return f"model-{epochs}"

    with caplog.at_level(logging.INFO, logger="greenflow.prefect"):
        assert train(3, lr=0.2) == "model-3"

    assert calls == [(3, 0.2)]
    [entry] = ledger.entries()
    assert entry.orchestrator == "cli"  # nothing orchestrated it
    assert entry.task_id.endswith("train") and entry.attempt == 1
    assert entry.decision == "deferred"
    assert entry.deferred_seconds > 6 * 3600  # from midnight to the solar window, in the trace's time
    assert entry.actual_start >= entry.planned_start - timedelta(minutes=30)  # it really started at the window
    assert entry.method_gpu == "nvml_energy_counter" and entry.energy_gpu_kwh > 0
    assert entry.saved_g > 0  # the midday grid was cleaner than the midnight one
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "greenflow: plan for" in messages and "deferred to 2022-06-01" in messages
    assert "waiting in this process until" in messages and "left" in messages


def test_the_wrapper_keeps_the_signature_name_and_doc_prefect_reads() -> None:
    def score(batch: list[int], *, scale: float = 1.0) -> float:
        """Score a batch."""
        return sum(batch) * scale

    wrapped = carbon_aware(region="ES", provider="trace")(score)
    assert inspect.signature(wrapped) == inspect.signature(score)
    assert (wrapped.__name__, wrapped.__qualname__, wrapped.__doc__) == (
        score.__name__,
        score.__qualname__,
        score.__doc__,
    )
    assert wrapped.__wrapped__ is score  # type: ignore[attr-defined]
    as_task = task(wrapped)
    plain = task(score)
    assert as_task.name == plain.name == "score"
    assert as_task.isasync is False
    from prefect.utilities.callables import parameter_schema

    assert parameter_schema(as_task.fn).model_dump() == parameter_schema(plain.fn).model_dump()


def test_an_async_function_waits_without_blocking_the_event_loop(ledger, replay, fake_gpu_meter) -> None:  # type: ignore[no-untyped-def]
    @carbon_aware(
        region="ES",
        provider="trace",
        provider_options=replay(),
        expected_duration="2h",
        max_delay="14h",
        meter_factory=fake_gpu_meter,
    )
    async def infer(batches: int) -> int:
        await asyncio.sleep(0.05)
        return batches * 2

    assert inspect.iscoroutinefunction(infer)
    assert task(infer).isasync

    async def main() -> tuple[int, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.02)
                ticks += 1

        beat = asyncio.create_task(ticker())
        result = await infer(4)
        beat.cancel()
        return result, ticks

    result, ticks = asyncio.run(main())
    assert result == 8
    assert ticks >= 3  # other coroutines ran while the task waited for its window
    [entry] = ledger.entries()
    assert entry.decision == "deferred" and entry.energy_gpu_kwh > 0


def test_a_task_called_through_fn_is_carbon_aware_too(ledger, replay, fake_gpu_meter) -> None:  # type: ignore[no-untyped-def]
    @task(retries=3)
    @carbon_aware(
        region="ES", provider="trace", provider_options=replay(), max_delay="0h", meter_factory=fake_gpu_meter
    )
    def embed(text: str) -> int:
        return len(text)

    assert embed.fn("four") == 4
    [entry] = ledger.entries()
    assert entry.decision == "ran_now" and entry.region == "ES"
    assert entry.intensity_g_per_kwh is not None and entry.operational_g > 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"region": "Atlantis", "provider": "trace"}, "no shipped trace for region 'Atlantis'"),
        ({"provider": "carbon-oracle"}, "provider='carbon-oracle'"),
        ({"budget": "  gpu-monthly  "}, "budget='  gpu-monthly  ' is empty or has surrounding spaces"),
        ({"min_savings": 150}, "min_savings=150"),
        ({"deadline": "2020-01-01T00:00Z"}, "leaves no room for expected_duration"),
        ({"grace": "1m"}, "grace= is not an option of the Prefect decorator"),
        ({"expected_duration": "soon"}, "expected_duration='soon' is not a duration"),
        ({"deadline": "1h", "expected_duration": "2h"}, "shorter than expected_duration"),
        ({"on_budget_exceeded": "maybe"}, "on_budget_exceeded='maybe' is not one of skip, fail"),
        ({"ledger": "postgresql+psycopg://ml:hunter2@db/greenflow"}, "ledger= was given a database URL"),
        ({"ledger": 42}, "ledger=42 is not a Ledger"),
    ],
)
def test_bad_input_fails_when_the_decorator_is_applied(options, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput) as error:

        @carbon_aware(**options)
        def job() -> None: ...

    assert message in str(error.value)
    assert error.value.fix
    assert "hunter2" not in str(error.value)


def test_generators_are_refused_because_their_work_happens_outside_the_meter() -> None:
    with pytest.raises(InvalidInput, match="is a generator"):

        @carbon_aware(region="ES", provider="trace")
        def batches():  # type: ignore[no-untyped-def]
            yield 1


@pytest.mark.parametrize("mode", ["fail", "skip", None])
def test_a_budget_that_cannot_cover_the_attempt_records_a_skip_and_never_runs_it(
    ledger, replay, fake_gpu_meter, mode
) -> None:  # type: ignore[no-untyped-def]
    ledger.budgets.set(Budget.parse("gpu", "10g", "month"))
    ran = []
    chosen = {} if mode is None else {"on_budget_exceeded": mode}  # None: the table's default, skip

    @carbon_aware(
        region="ES",
        provider="trace",
        provider_options=replay(),
        max_delay="0h",
        budget="gpu",
        estimate="20g",
        meter_factory=fake_gpu_meter,
        **chosen,
    )
    def fine_tune() -> str:
        ran.append(True)
        return "ok"

    if mode == "fail":
        with pytest.raises(BudgetExceeded, match="budget 'gpu' cannot cover 20 g"):
            fine_tune()
    else:
        assert fine_tune() is None
    assert ran == []
    [entry] = ledger.entries()
    assert entry.decision == "skipped_budget" and entry.budget == "gpu"
    assert ledger.budgets.status("gpu").spent == 0.0


def test_a_failing_attempt_records_its_energy_settles_and_reraises(ledger, replay, fake_gpu_meter) -> None:  # type: ignore[no-untyped-def]
    ledger.budgets.set(Budget.parse("gpu", "1kg", "month"))

    @carbon_aware(
        region="ES",
        provider="trace",
        provider_options=replay(),
        max_delay="0h",
        budget="gpu",
        estimate="100g",
        meter_factory=fake_gpu_meter,
    )
    def train() -> None:
        time.sleep(0.1)
        raise RuntimeError("CUDA out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        train()
    [entry] = ledger.entries()
    assert entry.decision == "failed" and entry.error == "RuntimeError: CUDA out of memory"
    assert entry.energy_gpu_kwh > 0
    status = ledger.budgets.status("gpu")
    assert status.reserved == 0.0  # settled to what was used, not left holding 100 g
    assert status.settled == pytest.approx(entry.charged_g)


def test_gpu_task_is_task_of_carbon_aware_with_options_split() -> None:
    def fine_tune(model: str) -> str:
        return model

    made = gpu_task(
        region="ES", provider="trace", expected_duration="3h", budget="gpu", retries=2, name="fine-tune", tags=["gpu"]
    )(fine_tune)
    assert isinstance(made, Task)
    assert (made.name, made.retries) == ("fine-tune", 2)
    assert "gpu" in made.tags
    config = carbon_config(made)
    assert config is not None
    assert (config.spec.region, config.spec.budget, config.spec.tags) == ("ES", "gpu", ("gpu",))
    assert config.spec.expected_duration == timedelta(hours=3)
    assert made.fn.__wrapped__ is fine_tune  # type: ignore[attr-defined]
    assert carbon_config(task(fine_tune)) is None


def test_the_in_process_wait_never_passes_the_latest_start(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    clock = [datetime(2024, 5, 1, 12, 0, tzinfo=UTC)]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += timedelta(seconds=seconds)

    monkeypatch.setattr(deferral_module, "utcnow", lambda: clock[0])
    spec = CarbonSpec.build(region="GB", provider="ukgrid", max_delay="2h")
    lifecycle = Lifecycle(spec, Identity("cli", "w", "r", "t"))  # not replaying: wall time == task time
    refreshed: list[datetime] = []
    monkeypatch.setattr(lifecycle, "refresh", lambda held: refreshed.append(clock[0]) or held)  # no network here
    start = clock[0]
    decision = lifecycle._decision(start, start, start + timedelta(hours=2), "GB", "defer", "test")
    # A wake-up beyond the latest start (a drifting replay clock, a bad plan) is cut to the latest start.
    late = replace(decision, start_at=start + timedelta(hours=3), wake_at=start + timedelta(hours=3))
    logs: list[str] = []
    logger = logging.getLogger("test-wait")
    monkeypatch.setattr(logger, "info", lambda msg, *args: logs.append(msg % args))
    assert deferral_module.wait_in_process(lifecycle, Wait(late, late.wake_at), logger, sleep=sleep) == late
    assert clock[0] == start + timedelta(hours=2)
    assert sum(slept) == pytest.approx(7200)
    assert max(slept) <= deferral_module.LOG_EVERY.total_seconds()  # it keeps saying how long is left
    assert len(logs) >= 7200 / deferral_module.LOG_EVERY.total_seconds() - 1
    assert "1h55m00s left" in logs[1]
    # It re-plans at the provider's cadence (UK Carbon Intensity: 30 minutes), as the Airflow trigger does.
    assert [moment - start for moment in refreshed] == [timedelta(minutes=30 * n) for n in (1, 2, 3)]


def test_a_refresh_that_finds_a_sooner_greener_window_wakes_the_wait_earlier(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    clock = [datetime(2024, 5, 1, 12, 0, tzinfo=UTC)]

    def sleep(seconds: float) -> None:
        clock[0] += timedelta(seconds=seconds)

    monkeypatch.setattr(deferral_module, "utcnow", lambda: clock[0])
    lifecycle = Lifecycle(
        CarbonSpec.build(region="GB", provider="ukgrid", max_delay="6h"), Identity("cli", "w", "r", "t")
    )
    start = clock[0]
    planned = lifecycle._decision(start, start, start + timedelta(hours=6), "GB", "defer", "test")
    planned = replace(planned, start_at=start + timedelta(hours=5), wake_at=start + timedelta(hours=5))
    sooner = replace(planned, start_at=start + timedelta(hours=2), wake_at=start + timedelta(hours=2))
    # The core's rule decides (sooner only when greener); here the refresh took the sooner window.
    monkeypatch.setattr(lifecycle, "refresh", lambda held: sooner)
    held = deferral_module.wait_in_process(
        lifecycle, Wait(planned, planned.wake_at), logging.getLogger("t"), sleep=sleep
    )
    assert held == sooner and clock[0] == start + timedelta(hours=2)  # it woke at the new start, not at 17:00


def test_a_wait_for_a_forecast_does_not_re_plan_before_its_retry_time(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    clock = [datetime(2024, 5, 1, 12, 0, tzinfo=UTC)]

    def sleep(seconds: float) -> None:
        clock[0] += timedelta(seconds=seconds)

    monkeypatch.setattr(deferral_module, "utcnow", lambda: clock[0])
    lifecycle = Lifecycle(
        CarbonSpec.build(region="GB", provider="ukgrid", max_delay="6h"), Identity("cli", "w", "r", "t")
    )
    monkeypatch.setattr(lifecycle, "refresh", lambda held: pytest.fail("re-planned while waiting for a forecast"))
    start = clock[0]
    retry = lifecycle._decision(start, start, start + timedelta(hours=6), "GB", "retry", "provider down")
    retry = replace(retry, start_at=start + timedelta(hours=2), wake_at=start + timedelta(hours=2))
    step = Wait(retry, retry.wake_at)
    assert step.for_forecast
    assert deferral_module.wait_in_process(lifecycle, step, logging.getLogger("t"), sleep=sleep) == retry
    assert clock[0] == start + timedelta(hours=2)


# -- retries: the deadline holds, the label is the retry's own ----------------------------------------
# An hour of the Spanish trace per real second: a wait of an hour or two takes a second or two.
SLOW_REPLAY = 3600.0


def _failing_once(tries: list[int]) -> str:
    tries.append(1)
    if len(tries) == 1:
        raise RuntimeError("preempted")
    return "ok"


@pytest.mark.xdist_group("prefect")
@pytest.mark.usefixtures("prefect_server")
def test_a_retry_that_runs_at_once_is_ran_now_and_keeps_the_first_deadline(fake_gpu_meter, run_entries) -> None:  # type: ignore[no-untyped-def]
    from prefect import flow

    tries: list[int] = []

    # From 10:00 the greenest start is about 12:00 (two real seconds away); the latest start is 15:00.
    @task(retries=1, retry_delay_seconds=0)
    @carbon_aware(
        region="ES",
        provider="trace",
        # Anchored when the first attempt plans, not when decorated: a slow flow start costs no trace time.
        provider_options={"now": "2022-06-01T10:00:02Z", "speed": SLOW_REPLAY},
        expected_duration="2h",
        max_delay="5h",
        meter_factory=fake_gpu_meter,
    )
    def fine_tune() -> str:
        return _failing_once(tries)

    @flow
    def nightly() -> str:
        return fine_tune()

    state = nightly(return_state=True)
    assert state.is_completed()
    first, second = run_entries(state.state_details.flow_run_id)
    assert (first.decision, first.attempt) == ("failed", 1)
    assert first.deferred_seconds > 0  # the first try waited for its window (the replay runs on meanwhile)
    assert second.attempt == 2
    # The retry came after the window (and, however slow the machine, the deadline wins): it ran at once.
    # Before, it was labelled "deferred" with the first try's wait counted again.
    assert second.decision == "ran_now" and second.deferred_seconds == 0.0
    assert second.requested_at > first.planned_start  # its own request
    assert second.extra["first_requested_at"] == first.requested_at.isoformat()  # the deadline's anchor
    inputs = [{k: v for k, v in e.policy.items() if k != "outcome"} for e in (first, second)]
    assert inputs[0] == inputs[1] and inputs[0]["max_delay_s"] == 5 * 3600


@pytest.mark.xdist_group("prefect")
@pytest.mark.usefixtures("prefect_server")
def test_a_retry_past_the_latest_start_runs_at_once_under_the_tasks_own_policy(fake_gpu_meter, run_entries) -> None:  # type: ignore[no-untyped-def]
    from prefect import flow

    tries: list[int] = []

    # From 10:00 the grid gets greener until 13:00: the first try waits for 12:00, its latest start.
    @task(retries=1, retry_delay_seconds=0)
    @carbon_aware(
        region="ES",
        provider="trace",
        provider_options={"now": "2022-06-01T10:00:03Z", "speed": SLOW_REPLAY},  # anchored at the first plan
        expected_duration="2h",
        deadline="2022-06-01T14:00Z",
        meter_factory=fake_gpu_meter,
    )
    def fine_tune() -> str:
        return _failing_once(tries)

    @flow
    def nightly() -> str:
        return fine_tune()

    state = nightly(return_state=True)
    assert state.is_completed()
    first, second = run_entries(state.state_details.flow_run_id)
    assert first.decision == "failed" and first.planned_start == datetime(2022, 6, 1, 12, tzinfo=UTC)
    assert second.decision == "ran_now" and second.deferred_seconds == 0.0
    assert "has passed" in second.extra["decision_reason"]
    # The core's rule, not a re-planned spec: the entry states the task's own deadline (it used to say
    # none, with no delay allowed).
    assert second.policy["deadline"] == first.policy["deadline"] == "2022-06-01T14:00:00+00:00"
    assert second.policy["max_delay_s"] is None
    assert second.extra["first_requested_at"] == first.requested_at.isoformat()


def _ages(value: object) -> list[float]:
    """Every ``age_seconds`` recorded anywhere in an entry's JSON."""
    if isinstance(value, dict):
        found = [float(v) for k, v in value.items() if k == "age_seconds" and v is not None]
        return found + [age for v in value.values() for age in _ages(v)]
    if isinstance(value, list):
        return [age for v in value for age in _ages(v)]
    return []


def test_one_replay_clock_runs_on_across_calls(ledger, fake_gpu_meter) -> None:  # type: ignore[no-untyped-def]
    """Issue 15: each call restarted the replay at its ``now``: two calls both "requested" at 00:00."""

    # A replay as users write it (no replay_started_at); a start of its own so no other test shares its clock.
    @carbon_aware(
        region="ES",
        provider="trace",
        provider_options={"now": "2022-06-01T00:00:07Z", "speed": 3600},
        expected_duration="1h",
        max_delay="0h",
        meter_factory=fake_gpu_meter,
    )
    def step() -> None:
        time.sleep(1.0)  # an hour of trace time

    step()
    step()
    first, second = sorted(ledger.entries(), key=lambda e: e.recorded_at)
    assert second.requested_at >= first.ended_at  # the second call asked after the first one ended
    assert second.requested_at - first.requested_at >= timedelta(hours=1)  # the first call's hour went by


def test_a_replayed_wait_ends_at_the_planned_start_with_ages_in_one_clock(ledger, fake_gpu_meter) -> None:  # type: ignore[no-untyped-def]
    """Issue 15: a replayed wait overshot its start by planning time x speed; ages mixed wall and trace time."""

    @carbon_aware(
        region="ES",
        provider="trace",
        provider_options={"now": "2022-06-01T00:00:11Z", "speed": 36000},
        expected_duration="2h",
        max_delay="14h",
        meter_factory=fake_gpu_meter,
    )
    def train() -> None:
        time.sleep(0.05)

    train()
    [entry] = ledger.entries()
    assert entry.decision == "deferred"
    assert entry.actual_start == entry.planned_start  # the wait ended at the planned start, in trace time
    assert entry.actual_start <= datetime.fromisoformat(entry.extra["plan"]["latest_start"])
    ages = _ages(entry.policy) + _ages(entry.extra)
    assert ages and all(0 <= age < 3600 for age in ages)  # fetched just now, whatever the trace's time


@pytest.mark.xdist_group("prefect")
@pytest.mark.usefixtures("prefect_server")
def test_a_retry_continues_the_flow_runs_replay_clock(fake_gpu_meter, run_entries) -> None:  # type: ignore[no-untyped-def]
    """Issue 15: a retry restarted the replay at its ``now``, so it "asked" before its first attempt ended."""
    from prefect import flow

    tries: list[int] = []

    @task(retries=1, retry_delay_seconds=0)
    @carbon_aware(
        region="ES",
        provider="trace",
        provider_options={"now": "2022-06-01T10:00:13Z", "speed": SLOW_REPLAY},  # no anchor: as users write it
        expected_duration="1h",
        max_delay="0h",
        meter_factory=fake_gpu_meter,
    )
    def fine_tune() -> str:
        if not tries:
            time.sleep(1.0)  # the first attempt works an hour of trace time before it fails
        return _failing_once(tries)

    @flow
    def nightly() -> str:
        return fine_tune()

    state = nightly(return_state=True)
    assert state.is_completed()
    first, second = run_entries(state.state_details.flow_run_id)
    assert (first.attempt, second.attempt) == (1, 2)
    assert second.requested_at >= first.ended_at  # the retry asked after the first attempt ended
    assert second.requested_at - first.requested_at >= timedelta(hours=1)  # the first attempt's hour went by
