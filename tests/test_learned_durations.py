"""Learned durations and energy (issue 16, item 6): a task that does not declare ``expected_duration``
plans with the 90th percentile of its past successful attempts' run time, and the budget estimate of an
interruptible task counts every segment of its past attempts.

Real: the trace provider on the shipped Electricity Maps data, the planners, the ledger (SQLite; the
history query on PostgreSQL too), the lifecycle's segments. The GPU is the autospec fake of nvidia-ml-py.
Past attempts are ledger entries as the lifecycle writes them (hours of run time cannot be run in a test).
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from greenflow.intensity.cache import ForecastCache
from greenflow.intensity.providers.trace import TraceProvider
from greenflow.ledger import Budget, Entry, Identity, Ledger
from greenflow.lifecycle import Decision, Lifecycle
from greenflow.metering.meter import Meter
from greenflow.segment_runner import run_segments
from greenflow.spec import CarbonSpec
from greenflow.steps import Run
from greenflow.testing.fake_nvml import FakeGpu, FakeNvml

# Midnight in Spain, June 2022: the greenest window is around midday, so a planned job waits for it.
MIDNIGHT = datetime(2022, 6, 1, 0, 0, tzinfo=UTC)
# Norway, 3 May 2022 07:00: a 4 h job with 8 h to finish runs in two segments.
NO_MORNING = datetime(2022, 5, 3, 7, 0, tzinfo=UTC)
LONG_AGO = datetime(2022, 5, 1, tzinfo=UTC)
# Ten past runs of the task, in minutes: the 90th percentile (nearest rank, 9th of 10) is 150.
PAST_MINUTES = (60, 75, 90, 100, 110, 120, 130, 140, 150, 160)


@pytest.fixture
def ledger(sqlite_url: str) -> Ledger:
    return Ledger(sqlite_url)


@pytest.fixture
def meter_factory(tmp_path: Path):  # type: ignore[no-untyped-def]
    fake = FakeNvml([FakeGpu(uuid="GPU-11111111-2222-3333-4444-555555555555", power_w=300.0)])
    return lambda: Meter(
        nvml=fake.backend(), rapl_root=tmp_path / "no-rapl", sample_interval=0.02, environ={"CUDA_VISIBLE_DEVICES": "0"}
    )


def _lifecycle(ledger, meter_factory, *, provider=None, attempt=1, spec=None, **options):  # type: ignore[no-untyped-def]
    provider = provider or TraceProvider(region="ES", now=MIDNIGHT)
    spec = spec or CarbonSpec.build(**{"region": "ES", "provider": "trace", "max_delay": "14h", **options})
    return Lifecycle(
        spec,
        Identity("cli", "train_llm", "run-now", "train", attempt),
        ledger=ledger,
        cache=ForecastCache(),
        provider=provider,
        meter_factory=meter_factory,
    )


def _past_runs(ledger: Ledger, minutes, *, task: str = "train", first: int = 0, **fields) -> None:  # type: ignore[no-untyped-def]
    """Successful attempts of ``task`` that ran ``minutes`` each, in one piece."""
    for i, length in enumerate(minutes, start=first):
        begun = LONG_AGO + timedelta(hours=4 * i)
        who = Identity("cli", "train_llm", f"run-{i}", task, 1)
        ledger.append(
            Entry.for_attempt(
                who,
                "ran_now",
                requested_at=begun,
                actual_start=begun,
                ended_at=begun + timedelta(minutes=length),
                energy_kwh=0.3 * length / 60,
                **fields,
            )
        )


def _past_segmented(ledger: Ledger, run: str, minutes, *, energy=1.0, first_missing=False) -> None:  # type: ignore[no-untyped-def]
    """An interruptible attempt as the lifecycle records it: paused segments, then the final one, linked."""
    who = Identity("cli", "train_llm", run, "train", 1)
    previous: str | None = "an-entry-outside-the-history" if first_missing else None
    begun = LONG_AGO
    for index, length in enumerate(minutes):
        final = index == len(minutes) - 1
        key = who.idempotency_key if final else hashlib.sha256(f"segment:{index}:{run}".encode()).hexdigest()
        entry = ledger.append(
            Entry.for_attempt(
                who,
                "deferred" if final else "interrupted",
                idempotency_key=key,
                requested_at=LONG_AGO,
                actual_start=begun,
                ended_at=begun + timedelta(minutes=length),
                energy_kwh=energy,
                extra={
                    "segment": {
                        "index": index,
                        "of": len(minutes),
                        "link": who.idempotency_key,
                        "previous_entry": previous,
                        "final": final,
                    }
                },
            )
        )
        previous, begun = entry.entry_id, begun + timedelta(minutes=length + 60)


def _window(decision: Decision) -> timedelta:
    assert decision.plan is not None
    return datetime.fromisoformat(decision.plan["end"]) - datetime.fromisoformat(decision.plan["start"])


def _work() -> str:
    time.sleep(0.05)
    return "model.pt"


# -- learned, declared, default ---------------------------------------------------------------------------


def test_an_undeclared_duration_is_the_90th_percentile_of_the_tasks_successful_past_runs(ledger, meter_factory) -> None:
    _past_runs(ledger, PAST_MINUTES)
    # Not history: a failed run, a run of another task, and an attempt whose end is unknown.
    _past_runs(ledger, [600], first=20, error="RuntimeError: out of memory")
    _past_runs(ledger, [600], first=21, task="evaluate")
    ledger.append(
        Entry.for_attempt(Identity("cli", "train_llm", "run-22", "train", 1), "ran_now", actual_start=LONG_AGO)
    )
    provider = TraceProvider(region="ES", now=MIDNIGHT)
    lifecycle = _lifecycle(ledger, meter_factory, provider=provider)

    decision = lifecycle.plan()

    assert decision.duration == {"seconds": 150 * 60.0, "source": "learned", "percentile": 90, "count": 10}
    assert _window(decision) == timedelta(minutes=150)  # the greenest 2.5 h, not a 1 h default
    assert decision.action == "defer"
    provider.set_now(decision.start_at)
    entry = lifecycle.run(decision, _work).entry
    assert entry.policy["duration_source"] == "learned"
    assert entry.policy["expected_duration_s"] == 150 * 60
    assert entry.policy["duration_basis"] == {"percentile": 90, "count": 10}


def test_a_declared_duration_wins_over_the_history(ledger, meter_factory) -> None:
    _past_runs(ledger, PAST_MINUTES)
    provider = TraceProvider(region="ES", now=MIDNIGHT)
    lifecycle = _lifecycle(ledger, meter_factory, provider=provider, expected_duration="30m")

    decision = lifecycle.plan()

    assert decision.duration is None and "duration" not in decision.to_dict()  # the spec says it
    assert _window(decision) == timedelta(minutes=30)
    provider.set_now(decision.start_at)
    entry = lifecycle.run(decision, _work).entry
    assert entry.policy["duration_source"] == "declared" and entry.policy["expected_duration_s"] == 1800
    assert "duration_basis" not in entry.policy


@pytest.mark.parametrize("past", [(), (90, 120)], ids=["no history", "two attempts"])
def test_without_three_past_attempts_the_default_hour_is_used_and_the_entry_says_why(
    ledger, meter_factory, past
) -> None:
    _past_runs(ledger, past)
    provider = TraceProvider(region="ES", now=MIDNIGHT)
    lifecycle = _lifecycle(ledger, meter_factory, provider=provider)

    decision = lifecycle.plan()

    assert decision.duration is not None
    assert (decision.duration["source"], decision.duration["seconds"]) == ("default", 3600.0)
    assert f"{len(past)} past successful attempt(s)" in decision.duration["note"]
    assert _window(decision) == timedelta(hours=1)
    provider.set_now(decision.start_at)
    entry = lifecycle.run(decision, _work).entry
    assert entry.policy["duration_source"] == "default" and entry.policy["expected_duration_s"] == 3600
    assert "3 needed" in entry.policy["duration_basis"]["note"]


def test_a_learned_duration_longer_than_a_deadline_after_the_request_is_capped_to_it(ledger, meter_factory) -> None:
    _past_runs(ledger, PAST_MINUTES)
    spec = CarbonSpec.build(region="ES", provider="trace", deadline="2h")
    decision = _lifecycle(ledger, meter_factory, spec=spec).plan()

    assert decision.duration is not None and decision.duration["seconds"] == 7200
    assert decision.duration["capped"].startswith("9000 s capped")
    assert decision.action == "run_now"  # it takes all the time it has: nothing to wait for


# -- a resumed attempt keeps what it learned ---------------------------------------------------------------


def test_a_resumed_attempt_plans_runs_and_records_with_the_duration_learned_at_its_first_plan(
    ledger, meter_factory
) -> None:
    _past_runs(ledger, PAST_MINUTES)
    provider = TraceProvider(region="ES", now=MIDNIGHT)
    lifecycle = _lifecycle(ledger, meter_factory, provider=provider)
    planned = lifecycle.plan()
    assert planned.action == "defer" and planned.duration is not None
    # The decision leaves with the trigger (JSON), the spec as trigger kwargs: it was not declared.
    held = json.loads(json.dumps(planned.to_dict()))
    spec_kwargs = json.loads(json.dumps(lifecycle.spec.to_kwargs()))
    # Meanwhile the task ran long five times: learning again would now say 10 h.
    _past_runs(ledger, [600] * 5, first=30)

    resumed = _lifecycle(ledger, meter_factory, provider=provider, spec=CarbonSpec.from_kwargs(spec_kwargs))
    assert resumed.spec.duration_declared is False
    decision = Decision.from_dict(held)
    provider.set_now(MIDNIGHT + timedelta(hours=1))
    refreshed = resumed.refresh(decision)  # a forecast refresh in the triggerer
    assert refreshed.duration == decision.duration and _window(refreshed) == timedelta(minutes=150)
    provider.set_now(refreshed.start_at)
    run = resumed.advance(refreshed, waited=True)
    assert isinstance(run, Run)
    entry = resumed.run(run.decision, _work).entry

    assert entry.policy["expected_duration_s"] == 150 * 60 and entry.policy["duration_source"] == "learned"
    # A new attempt plans afresh and learns from the history as it is now.
    assert _lifecycle(ledger, meter_factory, attempt=2).plan().duration["seconds"] == 600 * 60  # type: ignore[index]


def test_an_undeclared_duration_is_kept_undeclared_through_the_trigger_kwargs() -> None:
    spec = CarbonSpec.build(region="GB", deadline="30m")  # no duration: the fallback must not refuse the deadline
    assert spec.duration_declared is False and spec.expected_duration == timedelta(minutes=30)
    assert CarbonSpec.from_kwargs(spec.to_kwargs()) == spec
    declared = CarbonSpec.build(region="GB", expected_duration="1h")
    assert declared.duration_declared is True and CarbonSpec.from_kwargs(declared.to_kwargs()) == declared


# -- interruptible attempts: every segment counts ----------------------------------------------------------


def test_the_history_joins_an_interruptible_attempts_segments_on_every_backend(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    _past_segmented(ledger, "run-a", [60, 65, 35], energy=1.0)
    _past_runs(ledger, [45], first=1)
    _past_segmented(ledger, "run-b", [30, 40], energy=0.5, first_missing=True)  # its first part is not at hand

    attempts = ledger.past_attempts("train_llm", "train")

    assert [(a.run_seconds, a.energy_kwh, a.segments) for a in attempts] == [
        (45 * 60.0, 0.3 * 45 / 60, 1),
        (160 * 60.0, 3.0, 3),
    ]


def test_a_learned_duration_sums_an_interruptible_attempts_segments_less_their_resume_overhead(
    ledger, meter_factory
) -> None:
    for run in ("run-a", "run-b", "run-c"):
        _past_segmented(ledger, run, [60, 65, 35])  # 160 min run, two resumes of 5 min: 150 min of work
    provider = TraceProvider(region="NO", now=NO_MORNING)
    spec = CarbonSpec.build(region="NO", provider="trace", deadline="8h", interruptible=True)
    lifecycle = _lifecycle(ledger, meter_factory, provider=provider, spec=spec)

    decision = lifecycle.plan()

    assert decision.duration is not None and decision.duration["seconds"] == 150 * 60
    assert decision.duration["segmented"] == 3
    assert decision.plan is not None
    assert sum(s["work_seconds"] for s in decision.plan["segments"]) == 150 * 60


def test_the_budget_estimate_of_an_interruptible_task_is_its_past_attempts_segments_summed(
    ledger, meter_factory
) -> None:
    ledger.budgets.set(Budget.parse("power", "10kWh", "month"))
    provider = TraceProvider(region="NO", now=NO_MORNING, speed=36000)
    options = {"region": "NO", "provider": "trace", "interruptible": True, "expected_duration": "4h", "deadline": "8h"}
    first = _lifecycle(ledger, meter_factory, provider=provider, spec=CarbonSpec.build(**options))
    provider.set_now(NO_MORNING)
    ran = run_segments(first, lambda segment: segment.stop_at is None)  # pauses once, then finishes
    assert ran.done and len(ran.entries) == 2
    assert all(entry.energy_kwh for entry in ran.entries)
    whole = sum(entry.energy_kwh or 0.0 for entry in ran.entries)

    provider.set_now(NO_MORNING + timedelta(days=1))
    spec = CarbonSpec.build(**options, budget="power")
    second = _lifecycle(ledger, meter_factory, provider=provider, attempt=2, spec=spec)
    step = second.advance()

    decision = step.decision
    assert decision.estimate_kwh == pytest.approx(whole)  # not only the final segment's energy
    assert decision.estimate_source is not None
    assert decision.estimate_source.startswith("history: median of the last 1 measured attempts (1 in segments")
    assert ledger.budgets.status("power").reserved == pytest.approx(whole)
