"""Interruptible attempts through the lifecycle: segments planned on shipped traces, one ledger entry per
segment linked to its attempt, the budget reservation settled segment by segment, and commands that
checkpoint, are stopped at a segment's end (SIGTERM, then SIGKILL after the grace) and resume.

Everything is real but the GPU (the autospec fake of nvidia-ml-py, a constant 300 W): the trace provider
on the shipped Electricity Maps data, replayed fast so that hours pass in fractions of a second, the
segment planner, the ledger on SQLite and the commands as subprocesses.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from greenflow.errors import InvalidInput
from greenflow.intensity.cache import ForecastCache
from greenflow.intensity.providers.trace import TraceProvider
from greenflow.ledger import Budget, Identity, Ledger
from greenflow.lifecycle import Decision, Lifecycle, SegmentRun
from greenflow.metering.meter import Meter
from greenflow.segment_runner import run_command, run_segments, wait_then_advance
from greenflow.segments import plan_segments
from greenflow.spec import CarbonSpec
from greenflow.steps import Run, Step, Wait
from greenflow.testing.fake_nvml import FakeGpu, FakeNvml

# Spain, 1 June 2022 15:00: an 8 h job with 24 h to finish runs 15:00-18:00, pauses overnight and
# finishes the next morning in the sun, greener than any single 8 h window.
ES_AFTERNOON = datetime(2022, 6, 1, 15, 0, tzinfo=UTC)
# Norway, 3 May 2022 07:00: a 4 h job with 8 h to finish runs 07:00-10:00 and 11:00-12:05 (one hour's pause).
NO_MORNING = datetime(2022, 5, 3, 7, 0, tzinfo=UTC)
TRAINING = Path(__file__).resolve().parents[1] / "flows" / "checkpointed_training.py"


@pytest.fixture
def ledger(sqlite_url: str) -> Ledger:
    return Ledger(sqlite_url)


@pytest.fixture
def meter_factory(tmp_path: Path):  # type: ignore[no-untyped-def]
    fake = FakeNvml([FakeGpu(uuid="GPU-11111111-2222-3333-4444-555555555555", power_w=300.0)])
    return lambda: Meter(
        nvml=fake.backend(), rapl_root=tmp_path / "no-rapl", sample_interval=0.02, environ={"CUDA_VISIBLE_DEVICES": "0"}
    )


def _lifecycle(ledger, meter_factory, provider, **options):  # type: ignore[no-untyped-def]
    spec = CarbonSpec.build(provider="trace", interruptible=True, **options)
    return Lifecycle(
        spec,
        Identity("cli", "train_llm", "run-1", "train", 1),
        ledger=ledger,
        cache=ForecastCache(),
        provider=provider,
        meter_factory=meter_factory,
    )


def _norway(ledger, meter_factory, *, speed: float, **options):  # type: ignore[no-untyped-def]
    provider = TraceProvider(region="NO", now=NO_MORNING, speed=speed)
    lifecycle = _lifecycle(
        ledger, meter_factory, provider, region="NO", expected_duration="4h", deadline="8h", **options
    )
    provider.set_now(NO_MORNING)  # the replay starts now, not when the trace was loaded
    return lifecycle


# -- planning ---------------------------------------------------------------------------------------------


def test_an_interruptible_attempt_is_planned_in_segments_greener_than_any_whole_window(ledger, meter_factory) -> None:
    provider = TraceProvider(region="ES", now=ES_AFTERNOON)
    lifecycle = _lifecycle(ledger, meter_factory, provider, region="ES", expected_duration="8h", deadline="24h")
    decision = lifecycle.plan()

    plan = decision.plan
    assert plan is not None and plan["interruptible"] is True
    segments = plan["segments"]
    assert len(segments) >= 2
    assert decision.segment_index == 0
    assert decision.start_at == datetime.fromisoformat(segments[0]["start"])
    # The work the segments carry is the job's; each one after the first pays the resume overhead.
    assert sum(s["work_seconds"] for s in segments) == 8 * 3600
    assert [s["overhead_seconds"] for s in segments] == [0.0] + [300.0] * (len(segments) - 1)
    assert datetime.fromisoformat(segments[-1]["end"]) <= ES_AFTERNOON + timedelta(hours=24)
    # Greener per kWh of work than the best whole-job window and than running now, on the same forecast.
    assert plan["expected_gco2_per_kwh"] < plan["whole_job_gco2_per_kwh"] < plan["now_gco2_per_kwh"]
    assert "segments" in decision.reason
    # It survives a deferral (trigger kwargs, a Prefect state) as plain JSON.
    assert Decision.from_dict(json.loads(json.dumps(decision.to_dict()))) == decision

    first = lifecycle.segment(decision)
    assert first is not None and (first.index, first.of) == (0, len(segments))
    assert first.stop_at == datetime.fromisoformat(segments[0]["end"])


def test_with_several_regions_the_segments_run_where_they_cost_least(ledger, meter_factory) -> None:
    provider = TraceProvider(region="ES", now=ES_AFTERNOON)
    lifecycle = _lifecycle(
        ledger, meter_factory, provider, region="ES", regions=["US-CAL-CISO"], expected_duration="8h", deadline="24h"
    )
    decision = lifecycle.plan()

    assert decision.plan is not None
    deadline = ES_AFTERNOON + timedelta(hours=24)
    alone = {
        region: plan_segments(
            provider.forecast(region, start=ES_AFTERNOON, hours=33),
            duration=timedelta(hours=8),
            deadline=deadline,
            now=ES_AFTERNOON,
        ).expected_intensity
        for region in ("ES", "US-CAL-CISO")
    }
    best = min(alone, key=lambda region: alone[region] or float("inf"))
    assert decision.region == best
    assert decision.plan["expected_gco2_per_kwh"] == pytest.approx(alone[best])


def test_a_job_that_is_not_interruptible_plans_as_before(ledger, meter_factory) -> None:
    provider = TraceProvider(region="ES", now=ES_AFTERNOON)
    spec = CarbonSpec.build(region="ES", provider="trace", expected_duration="8h", deadline="24h")
    lifecycle = Lifecycle(spec, Identity("cli", "w", "r", "t"), ledger=ledger, cache=ForecastCache(), provider=provider)
    decision = lifecycle.plan()
    assert decision.segment_index is None and lifecycle.segment(decision) is None
    assert "segments" not in (decision.plan or {})
    assert "segment_index" not in decision.to_dict()


def test_a_min_segment_not_longer_than_the_resume_overhead_is_refused_at_declaration() -> None:
    with pytest.raises(InvalidInput, match=r"min_segment=0:05:00 is not longer than resume_overhead=0:10:00"):
        CarbonSpec.build(region="ES", provider="trace", interruptible=True, min_segment="5m", resume_overhead="10m")


def test_a_refresh_between_segments_replans_only_the_rest_of_the_work(ledger, meter_factory) -> None:
    provider = TraceProvider(region="ES", now=ES_AFTERNOON)
    lifecycle = _lifecycle(ledger, meter_factory, provider, region="ES", expected_duration="8h", deadline="24h")
    decision = lifecycle.plan()
    assert decision.plan is not None
    ran = decision.plan["segments"][0]
    provider.set_now(datetime.fromisoformat(ran["end"]))  # the first segment has run
    waiting = replace(decision, segment_index=1, action="defer")  # as next_segment() leaves it

    refreshed = lifecycle.refresh(waiting)

    assert refreshed.plan is not None and refreshed.segment_index == 1
    segments = refreshed.plan["segments"]
    assert segments[0] == ran  # what ran stays in the plan (for the chart and the entries)
    assert sum(s["work_seconds"] for s in segments) == pytest.approx(8 * 3600)
    rest = segments[1:]
    assert rest and all(datetime.fromisoformat(s["start"]) >= datetime.fromisoformat(ran["end"]) for s in rest)
    assert rest[0]["overhead_seconds"] == 300.0  # resuming costs its overhead, also in the first new segment
    assert refreshed.start_at == decision.start_at  # the attempt still started when it started


# -- a Python callable, segment by segment ----------------------------------------------------------------


def test_a_callable_runs_in_segments_with_one_linked_entry_each_and_the_budget_settled_per_segment(
    ledger, meter_factory
) -> None:
    ledger.budgets.set(Budget.parse("gpu", "1kg", "month"))
    ledger.budgets.set(Budget.parse("power", "10kWh", "month"))  # covers every attempt, in the other unit
    lifecycle = _norway(ledger, meter_factory, speed=36000, budget="gpu", estimate="50g")
    seen: list[SegmentRun] = []
    during: list[tuple[float, float, float]] = []

    def train(segment: SegmentRun) -> bool:
        seen.append(segment)
        if segment.index == 1:
            status, power = ledger.budgets.status("gpu"), ledger.budgets.status("power")
            during.append((status.settled, status.reserved, power.reserved))
        return segment.stop_at is None  # checkpoints and pauses until its last segment, which finishes

    result = run_segments(lifecycle, train)

    assert result.done and isinstance(result.step, Run)
    assert [(s.index, s.of) for s in seen] == [(0, 2), (1, 2)]
    assert seen[0].stop_at is not None and seen[0].stop_wall is not None
    assert seen[1].stop_at is None  # the last planned segment runs to completion
    first, last = result.entries
    assert first.decision == "interrupted" and last.decision == "ran_now"
    # Linked: the same attempt, the same link, the last one points back at the first.
    assert first.identity == last.identity == lifecycle.identity
    assert first.extra["segment"]["link"] == last.extra["segment"]["link"] == lifecycle.identity.idempotency_key
    assert last.extra["segment"]["previous_entry"] == first.entry_id
    assert (first.extra["segment"]["final"], last.extra["segment"]["final"]) == (False, True)
    assert first.extra["segment"]["stop_at"] == seen[0].stop_at.isoformat()
    # Each segment its own energy and intensity; the attempt's own key is on its last entry.
    assert first.energy_kwh and last.energy_kwh and first.intensity_g_per_kwh and last.intensity_g_per_kwh
    assert first.idempotency_key != last.idempotency_key == lifecycle.identity.idempotency_key
    assert ledger.for_attempt(lifecycle.identity) == last
    # The reservation (50 g, and its kWh in the other budget) held for the whole job; the first segment's
    # charge moved from reserved to settled in both units, so nothing was counted twice.
    (settled, reserved, power_reserved), estimate = during[0], last.estimate_g
    assert first.charged_g and first.charged_kwh and estimate == 50.0
    assert settled == pytest.approx(first.charged_g)
    assert reserved == pytest.approx(estimate - first.charged_g)
    assert power_reserved == pytest.approx(last.estimate_kwh - first.charged_kwh)
    # After the last segment: settled in full, nothing held.
    status = ledger.budgets.status("gpu")
    assert status.reserved == 0 and status.open_reservations == 0
    assert status.settled == pytest.approx(first.charged_g + last.charged_g)
    assert not ledger.budgets.status("power").reserved
    assert ledger.verify().ok


def test_the_sci_of_an_interruptible_attempt_counts_every_segment(ledger, meter_factory) -> None:
    lifecycle = _norway(ledger, meter_factory, speed=36000, embodied="1mg", functional_units=10)

    def work(segment: SegmentRun) -> bool:
        # Equal real time in each segment (each metered at the fake GPU's 300 W): the first is half the work.
        time.sleep(0.1)
        return segment.stop_at is None

    first, last = run_segments(lifecycle, work).entries
    assert first.sci_g_per_unit is None and first.functional_units is None  # R is the attempt's: on its last entry
    assert first.operational_g and last.operational_g and first.operational_g > 0.2 * last.operational_g
    assert last.sci_g_per_unit == pytest.approx((first.operational_g + last.operational_g + 0.001) / 10)


def test_past_the_last_planned_segment_the_work_runs_to_completion_and_the_entry_says_so(ledger, meter_factory) -> None:
    lifecycle = _norway(ledger, meter_factory, speed=36000)
    calls: list[SegmentRun] = []

    def train(segment: SegmentRun) -> bool:
        calls.append(segment)
        return len(calls) == 3  # still not done when the last planned segment returns

    result = run_segments(lifecycle, train)

    assert result.done and [c.index for c in calls] == [0, 1, 2]
    past = calls[2]
    assert (past.of, past.planned_start, past.stop_at) == (2, None, None)
    assert [e.decision for e in result.entries] == ["interrupted", "interrupted", "ran_now"]
    assert "ran on to completion" in result.entries[2].extra["segment"]["past_plan"]


def test_a_callable_that_raises_ends_the_attempt_failed_and_settles_its_reservation(ledger, meter_factory) -> None:
    ledger.budgets.set(Budget.parse("gpu", "1kg", "month"))
    lifecycle = _norway(ledger, meter_factory, speed=36000, budget="gpu", estimate="50g")

    def train(segment: SegmentRun) -> bool:
        if segment.index == 1:
            raise RuntimeError("CUDA out of memory")
        return False

    with pytest.raises(RuntimeError, match="CUDA out of memory"):
        run_segments(lifecycle, train)

    entries = ledger.entries()
    assert [e.decision for e in entries] == ["interrupted", "failed"]
    assert entries[1].extra["segment"]["final"] is True and "CUDA out of memory" in (entries[1].error or "")
    status = ledger.budgets.status("gpu")
    assert status.open_reservations == 0 and status.settled == pytest.approx(sum(e.charged_g or 0 for e in entries))


# -- a command that checkpoints ----------------------------------------------------------------------------


def _training(tmp_path: Path, *extra: str, steps: int = 100) -> tuple[list[str], Path, Path]:
    checkpoint, log = tmp_path / "train.ckpt", tmp_path / "train.log"
    command = [sys.executable, str(TRAINING), "--steps", str(steps), "--step-seconds", "0.02"]
    return [*command, "--checkpoint", str(checkpoint), "--log", str(log), *extra], checkpoint, log


def _log(log: Path) -> list[tuple[int, str]]:
    return [(int(line.split(" ", 1)[0]), line.split(" ", 1)[1]) for line in log.read_text().splitlines()]


def test_a_command_is_stopped_at_its_segments_end_and_resumes_from_its_checkpoint(
    ledger, meter_factory, tmp_path: Path
) -> None:
    # 7200x: the first segment (3 h) lasts 1.5 s, the pause 0.5 s; 100 steps of 0.02 s need 2 s at least.
    lifecycle = _norway(ledger, meter_factory, speed=7200, grace="10s")
    command, checkpoint, log = _training(tmp_path)
    waits: list[Wait] = []

    def wait(step: Wait) -> Step:
        waits.append(step)
        return wait_then_advance(lifecycle, step)

    result = run_command(lifecycle, command, wait=wait)

    assert result.done and result.exit_code == 0
    assert json.loads(checkpoint.read_text())["step"] == 100
    lines = _log(log)
    paused = [line for segment, line in lines if segment == 0 and line.startswith("paused at ")]
    assert paused, lines  # SIGTERM at the first segment's end: it saved and exited
    at = int(paused[0].removeprefix("paused at "))
    assert 0 < at < 100
    assert (1, f"resumed from step {at}") in lines and (1, "done") in lines
    assert len(waits) == 1  # it held nothing but this process between the segments
    first, last = result.entries
    assert first.decision == "interrupted" and last.decision == "ran_now"
    assert first.extra["segment"]["stopped"] == "SIGTERM at the segment's planned end"
    assert first.extra["segment"]["exit_code"] == 143
    assert last.extra["segment"]["exit_code"] == 0 and last.extra["segment"]["previous_entry"] == first.entry_id


def test_a_command_that_ignores_sigterm_is_killed_after_the_grace_and_the_next_segment_resumes(
    ledger, meter_factory, tmp_path: Path
) -> None:
    lifecycle = _norway(ledger, meter_factory, speed=7200, grace="0.2s")
    command, checkpoint, log = _training(tmp_path, "--ignore-sigterm-in-segment", "0")

    result = run_command(lifecycle, command)

    assert result.done and json.loads(checkpoint.read_text())["step"] == 100
    killed, last = result.entries
    assert killed.decision == "interrupted"
    assert killed.extra["segment"]["stopped"].startswith("SIGKILL: still running 0.2 s after SIGTERM")
    assert killed.extra["segment"]["exit_code"] == 137
    lines = _log(log)
    saved = [int(line.removeprefix("checkpoint ")) for segment, line in lines if segment == 0 and "checkpoint" in line]
    assert saved and not any(line.startswith("paused") for _, line in lines)  # it never got to save on SIGTERM
    resumed = [int(line.split()[-1]) for segment, line in lines if segment == 1 and line.startswith("resumed")]
    # From the last checkpoint it saved before the kill: the one it logged, or the next one when the kill
    # came between saving it and logging it.
    assert resumed and resumed[0] in (saved[-1], saved[-1] + 1)
    assert last.decision == "ran_now" and last.extra["segment"]["previous_entry"] == killed.entry_id


def test_a_command_that_fails_before_its_segments_end_ends_the_attempt_failed(
    ledger, meter_factory, tmp_path: Path
) -> None:
    ledger.budgets.set(Budget.parse("gpu", "1kg", "month"))
    lifecycle = _norway(ledger, meter_factory, speed=7200, budget="gpu", estimate="50g")

    result = run_command(lifecycle, [sys.executable, "-c", "import sys; sys.exit(3)"])

    assert not result.done and result.exit_code == 3
    (entry,) = result.entries
    assert entry.decision == "failed" and entry.extra["segment"]["final"] is True
    assert entry.extra["segment"]["exit_code"] == 3
    assert ledger.budgets.status("gpu").open_reservations == 0


def test_segments_that_save_less_than_min_savings_over_starting_now_run_now_in_one_piece(ledger, meter_factory) -> None:
    provider = TraceProvider(region="ES", now=ES_AFTERNOON)
    lifecycle = _lifecycle(
        ledger, meter_factory, provider, region="ES", expected_duration="8h", deadline="24h", min_savings=50
    )
    decision = lifecycle.plan()

    assert decision.action == "run_now" and decision.start_at == ES_AFTERNOON
    assert decision.plan is not None and len(decision.plan["segments"]) == 1
    assert "below the 50 % minimum" in decision.reason
    assert lifecycle.segment(decision) == SegmentRun(0, 1, ES_AFTERNOON, ES_AFTERNOON + timedelta(hours=8), None, None)
