"""The lifecycle on real data: plan on the shipped Spanish trace, meter a fake GPU, record, settle.

The GPU is the autospec fake of nvidia-ml-py (a constant 300 W); everything else is real: the trace
provider on the shipped Electricity Maps data, the planner, the carbon join and the ledger.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from greenflow.errors import BudgetExceeded, InvalidInput, ProviderError
from greenflow.intensity.cache import ForecastCache
from greenflow.intensity.providers.http import RetrySettings
from greenflow.intensity.providers.trace import TraceProvider
from greenflow.intensity.providers.ukgrid import UKGridProvider
from greenflow.ledger import Budget, Identity, Ledger
from greenflow.lifecycle import Decision, Lifecycle
from greenflow.metering.meter import Meter
from greenflow.spec import CarbonSpec
from greenflow.testing.fake_nvml import FakeGpu, FakeNvml

# Midnight in Spain, June 2022: solar makes the middle of the day much greener than the night.
MIDNIGHT = datetime(2022, 6, 1, 0, 0, tzinfo=UTC)


@pytest.fixture
def ledger(sqlite_url: str) -> Ledger:
    return Ledger(sqlite_url)


@pytest.fixture
def meter_factory(tmp_path: Path):  # type: ignore[no-untyped-def]
    fake = FakeNvml([FakeGpu(uuid="GPU-11111111-2222-3333-4444-555555555555", power_w=300.0)])
    return lambda: Meter(
        nvml=fake.backend(), rapl_root=tmp_path / "no-rapl", sample_interval=0.02, environ={"CUDA_VISIBLE_DEVICES": "0"}
    )


def _lifecycle(ledger, meter_factory, *, task="train", attempt=1, provider=None, **spec):  # type: ignore[no-untyped-def]
    provider = provider or TraceProvider(region="ES", now=MIDNIGHT)
    defaults = {"region": "ES", "provider": "trace", "expected_duration": "2h", "max_delay": "14h"}
    return Lifecycle(
        CarbonSpec.build(**{**defaults, **spec}),
        Identity("cli", "train_llm", "run-1", task, attempt),
        ledger=ledger,
        cache=ForecastCache(),
        provider=provider,
        meter_factory=meter_factory,
    )


def _work(seconds: float = 0.2) -> str:
    time.sleep(seconds)
    return "model.pt"


def test_defers_to_the_green_window_and_records_what_deferring_saved(ledger, meter_factory) -> None:
    provider = TraceProvider(region="ES", now=MIDNIGHT)
    lifecycle = _lifecycle(ledger, meter_factory, provider=provider)
    decision = lifecycle.plan()
    assert decision.action == "defer"
    assert MIDNIGHT + timedelta(hours=6) < decision.start_at <= MIDNIGHT + timedelta(hours=14)
    assert decision.plan is not None and decision.plan["savings_pct"] > 10

    provider.set_now(decision.start_at)  # the replay clock reaches the window (the caller's wait)
    result = lifecycle.run(decision, _work)
    entry = result.entry
    assert result.value == "model.pt"
    assert entry.decision == "deferred"
    assert entry.deferred_seconds == pytest.approx((decision.start_at - MIDNIGHT).total_seconds())
    assert entry.method_gpu == "nvml_energy_counter"
    assert entry.energy_gpu_kwh == pytest.approx(300 * 0.2 / 3.6e6, rel=0.5)
    assert entry.energy_cpu_kwh is None and entry.measurement_notes["cpu"]  # not measured: None + reason
    assert entry.intensity_source == "actuals from trace"
    assert entry.operational_g == pytest.approx(entry.energy_kwh * entry.intensity_g_per_kwh)
    assert entry.counterfactual_intensity_g_per_kwh > entry.intensity_g_per_kwh
    assert entry.saved_g > 0
    assert entry.forecast_hash and entry.forecast and entry.forecast_provider == "trace"
    assert entry.devices[0]["device"].startswith("GPU-11111111")
    assert entry.extra["replay"]["note"]
    assert ledger.verify().ok


def test_runs_now_when_the_saving_is_below_the_minimum(ledger, meter_factory) -> None:
    decision = _lifecycle(ledger, meter_factory, min_savings=99).plan()
    assert decision.action == "run_now"
    assert decision.start_at == MIDNIGHT
    assert "below" in decision.reason or "minimum" in decision.reason


def test_budget_reserve_settle_and_refusal(ledger, meter_factory) -> None:
    ledger.budgets.set(Budget.parse("gpu", "30g", "month"))
    first = _lifecycle(ledger, meter_factory, budget="gpu", estimate="20g", max_delay="0h")
    decision = first.reserve(first.plan())
    assert decision.reservation_id and decision.estimate_source == "declared estimate 20 g"
    assert ledger.budgets.status("gpu", at=datetime.now(UTC)).reserved == 20.0

    # While the first attempt holds 20 g, a second one estimated at 20 g does not fit in 30 g.
    second = _lifecycle(ledger, meter_factory, task="evaluate", budget="gpu", estimate="20g", max_delay="0h")
    planned = second.plan()
    with pytest.raises(BudgetExceeded) as refused:
        second.reserve(planned)
    skipped = second.skip(planned, refused.value)
    assert skipped.decision == "skipped_budget"
    assert "cannot cover 20 g" in (skipped.error or "")

    entry = first.run(decision, _work, 0.05).entry
    status = ledger.budgets.status("gpu", at=datetime.now(UTC))
    assert status.reserved == 0.0
    assert status.settled == pytest.approx(entry.charged_g)
    assert entry.charged_g < 1.0  # 300 W for 0.05 s: settled to what was measured, not the estimate
    third = _lifecycle(ledger, meter_factory, task="evaluate", attempt=2, budget="gpu", estimate="20g", max_delay="0h")
    assert third.reserve(third.plan()).reservation_id


def test_a_failing_task_still_records_its_energy_and_settles(ledger, meter_factory) -> None:
    ledger.budgets.set(Budget.parse("gpu", "1kg", "month"))
    lifecycle = _lifecycle(ledger, meter_factory, budget="gpu", max_delay="0h")
    decision = lifecycle.reserve(lifecycle.plan())

    def crash() -> None:
        time.sleep(0.1)
        raise RuntimeError("CUDA out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        lifecycle.run(decision, crash)
    [entry] = ledger.entries()
    assert entry.decision == "failed"
    assert entry.error == "RuntimeError: CUDA out of memory"
    assert entry.energy_gpu_kwh and entry.energy_gpu_kwh > 0
    assert ledger.budgets.status("gpu", at=datetime.now(UTC)).reserved == 0.0


def test_a_killed_task_is_recorded_as_interrupted(ledger, meter_factory) -> None:
    lifecycle = _lifecycle(ledger, meter_factory, max_delay="0h")

    def killed() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        lifecycle.run(lifecycle.plan(), killed)
    assert [e.decision for e in ledger.entries()] == ["interrupted"]


def test_a_retried_write_of_one_attempt_records_once_and_a_retry_records_again(ledger, meter_factory) -> None:
    lifecycle = _lifecycle(ledger, meter_factory, max_delay="0h")
    decision = lifecycle.plan()
    first = lifecycle.run(decision, _work, 0.01).entry
    again = lifecycle.run(decision, _work, 0.01).entry  # e.g. a worker re-running the same try
    assert again.entry_id == first.entry_id
    retry = _lifecycle(ledger, meter_factory, attempt=2, max_delay="0h")
    retry.run(retry.plan(), _work, 0.01)
    assert [e.attempt for e in ledger.entries()] == [1, 2]


def test_estimates_come_from_the_tasks_own_history(ledger, meter_factory) -> None:
    for attempt in (1, 2, 3):
        past = _lifecycle(ledger, meter_factory, task="train", attempt=attempt, max_delay="0h")
        past.run(past.plan(), _work, 0.05)
    ledger.budgets.set(Budget.parse("gpu", "1kg", "month"))
    lifecycle = _lifecycle(ledger, meter_factory, task="train", attempt=4, budget="gpu", max_delay="0h")
    decision = lifecycle.reserve(lifecycle.plan())
    assert decision.estimate_source is not None
    assert decision.estimate_source.startswith("history: median of the last 3 measured attempts")
    fresh = _lifecycle(ledger, meter_factory, task="never_ran", budget="gpu", max_delay="0h")
    assert fresh.reserve(fresh.plan()).estimate_source.startswith("default estimate")


def _down_provider() -> UKGridProvider:
    return UKGridProvider(
        base_url="http://127.0.0.1:9", retry=RetrySettings(timeout=0.2, total_time=0.5, max_attempts=2, backoff=0.01)
    )


def _outage(ledger, meter_factory, policy: str) -> Lifecycle:  # type: ignore[no-untyped-def]
    return Lifecycle(
        CarbonSpec.build(
            region="national",
            provider="ukgrid",
            expected_duration="1h",
            max_delay="4h",
            on_provider_error=policy,
            max_staleness="0s",
        ),
        Identity("cli", "w", "r", "t"),
        ledger=ledger,
        cache=ForecastCache(),
        provider=_down_provider(),
        meter_factory=meter_factory,
    )


def test_provider_outage_run_policy_runs_now_and_says_so(ledger, meter_factory) -> None:
    lifecycle = _outage(ledger, meter_factory, "run")
    decision = lifecycle.plan()
    assert decision.action == "run_now"
    assert "on_provider_error=run" in (decision.forecast_note or "")
    entry = lifecycle.run(decision, _work, 0.01).entry
    assert entry.forecast is None and entry.forecast_hash is None
    assert "on_provider_error=run" in (entry.forecast_note or "")
    assert entry.intensity_g_per_kwh is None  # no intensity known: not guessed
    assert entry.energy_gpu_kwh is not None


def test_provider_outage_wait_policy_retries_later(ledger, meter_factory) -> None:
    decision = _outage(ledger, meter_factory, "wait").plan()
    assert decision.action == "retry"
    assert decision.start_at > decision.requested_at
    assert decision.start_at <= decision.latest_start


def test_provider_outage_fail_policy_raises_and_records_a_failed_entry(ledger, meter_factory) -> None:
    with pytest.raises(ProviderError):
        _outage(ledger, meter_factory, "fail").plan()
    [entry] = ledger.entries()
    assert entry.decision == "failed"
    assert "on_provider_error=fail" in (entry.error or "")


def test_decision_survives_serialisation_and_replanning_keeps_the_reservation(ledger, meter_factory) -> None:
    ledger.budgets.set(Budget.parse("gpu", "1kg", "month"))
    lifecycle = _lifecycle(ledger, meter_factory, budget="gpu", estimate="10g")
    decision = lifecycle.reserve(lifecycle.plan())
    assert Decision.from_dict(decision.to_dict()) == decision
    replanned = lifecycle.plan(previous=decision)
    assert replanned.reservation_id == decision.reservation_id
    assert replanned.requested_at == decision.requested_at
    assert replanned.start_at <= decision.latest_start


def test_spatial_shifting_picks_the_greener_region_and_keeps_the_alternatives(ledger, meter_factory) -> None:
    lifecycle = Lifecycle(
        CarbonSpec.build(region="ES", regions=["NO"], provider="trace", expected_duration="2h", max_delay="0h"),
        Identity("cli", "w", "r", "t"),
        ledger=ledger,
        cache=ForecastCache(),
        provider=TraceProvider(now=MIDNIGHT),
        meter_factory=meter_factory,
    )
    decision = lifecycle.plan()
    assert decision.region == "NO"  # Norway's hydro grid beats Spain at night
    assert {a["region"] for a in decision.plan["alternatives"]} == {"ES", "NO"}


def test_replanning_after_the_latest_start_runs_at_once(ledger, meter_factory) -> None:
    provider = TraceProvider(region="ES", now=MIDNIGHT)
    lifecycle = _lifecycle(ledger, meter_factory, provider=provider, max_delay="2h")
    decision = lifecycle.plan()
    provider.set_now(decision.latest_start + timedelta(minutes=5))  # e.g. a retry after the window closed
    replanned = lifecycle.plan(previous=decision)
    assert replanned.action == "run_now"
    assert replanned.start_at == decision.latest_start + timedelta(minutes=5)
    assert "has passed" in replanned.reason


def test_measured_energy_with_no_known_intensity_still_costs_the_budget(ledger, meter_factory) -> None:
    ledger.budgets.set(Budget.parse("gpu", "1kg", "month"))
    lifecycle = Lifecycle(
        CarbonSpec.build(
            region="national",
            provider="ukgrid",
            max_delay="0h",
            on_provider_error="run",
            max_staleness="0s",
            budget="gpu",
            estimate="20g",
        ),
        Identity("cli", "w", "r", "t"),
        ledger=ledger,
        cache=ForecastCache(),
        provider=_down_provider(),
        meter_factory=meter_factory,
    )
    decision = lifecycle.reserve(lifecycle.plan())
    entry = lifecycle.run(decision, _work, 0.05).entry
    assert entry.energy_gpu_kwh is not None and entry.operational_g is None  # measured, but no intensity
    intensity = decision.estimate_g / decision.estimate_kwh
    assert entry.charged_g == pytest.approx(entry.charged_kwh * intensity)
    assert entry.charged_g > 0
    assert "no grid intensity known" in entry.measurement_notes["charge"]
    assert ledger.budgets.status("gpu", at=datetime.now(UTC)).settled == pytest.approx(entry.charged_g)


def _biased_trace(tmp_path: Path) -> tuple[Path, Path]:
    """Ten days of hourly actuals and daily forecast snapshots that always forecast 05:00 60 g too green.

    Really: 90 g at 02:00, 120 g at 05:00, 200 g otherwise. Forecast: the same but 60 g at 05:00, so on
    the raw forecast 05:00 looks greenest, while 02:00 is.
    """
    day0 = datetime(2024, 3, 1, tzinfo=UTC)

    def real(moment: datetime) -> float:
        return {2: 90.0, 5: 120.0}.get(moment.hour, 200.0)

    actuals, forecasts = ["timestamp,value"], ["issued_at,slot_start,value"]
    for hour in range(10 * 24):
        moment = day0 + timedelta(hours=hour)
        actuals.append(f"{moment:%Y-%m-%dT%H:%MZ},{real(moment)}")
    for day in range(10):
        issued = day0 + timedelta(days=day)
        for hour in range(48):
            moment = issued + timedelta(hours=hour)
            value = 60.0 if moment.hour == 5 else real(moment)
            forecasts.append(f"{issued:%Y-%m-%dT%H:%MZ},{moment:%Y-%m-%dT%H:%MZ},{value}")
    (tmp_path / "actuals.csv").write_text("\n".join(actuals) + "\n")
    (tmp_path / "forecasts.csv").write_text("\n".join(forecasts) + "\n")
    return tmp_path / "forecasts.csv", tmp_path / "actuals.csv"


def test_a_corrected_forecast_changes_the_plan_and_the_entry_keeps_raw_and_parameters(
    ledger, meter_factory, tmp_path
) -> None:
    from greenflow.intensity.correction import Correction
    from greenflow.intensity.forecast import Forecast

    forecasts, actuals = _biased_trace(tmp_path)
    now = datetime(2024, 3, 9, tzinfo=UTC)
    options = {"path": str(forecasts), "actuals": str(actuals), "now": now.isoformat()}

    def lifecycle(task: str, correction: bool) -> Lifecycle:
        return _lifecycle(
            ledger,
            meter_factory,
            task=task,
            provider=TraceProvider(path=forecasts, actuals=actuals, region="X", now=now),
            region="X",
            provider_options=options,
            expected_duration="1h",
            max_delay="10h",
            forecast_correction=correction,
        )

    raw_plan = lifecycle("raw", False).plan()
    assert raw_plan.start_at == now + timedelta(hours=5) and raw_plan.correction is None

    corrected = lifecycle("corrected", True)
    decision = corrected.plan()
    assert decision.start_at == now + timedelta(hours=2)  # the forecast's known bias removed: 02:00 wins
    assert decision.plan is not None and decision.plan["expected_gco2_per_kwh"] == pytest.approx(90.0)
    entry = corrected.run(decision, _work, 0.05).entry

    raw = Forecast.from_dict(entry.forecast)
    assert {p.start.hour: p.value for p in raw.points}[5] == 60.0  # the evidence is the provider's forecast
    assert entry.forecast_hash == raw.content_hash()
    assert "X: corrected (bias+carry)" in (entry.forecast_note or "")
    record = entry.extra["forecast_correction"]
    assert record["mode"] == "bias+carry" and record["regions"]["X"]["applied"]
    parameters = record["regions"]["X"]["parameters"]
    assert parameters["bias_by_slot_of_day"][5] == pytest.approx(60.0)
    assert parameters["pairs"] == 7 * 24
    # An auditor recomputes what the plan used from the raw forecast and the stored parameters.
    again = Correction.from_dict(parameters).apply(raw)
    assert {p.start.hour: p.value for p in again.points}[5] == pytest.approx(120.0)
    assert entry.policy["forecast_correction"] == "bias+carry"
    assert ledger.verify().ok


def test_a_correction_that_cannot_be_made_is_said_and_the_plan_still_made(ledger, meter_factory) -> None:
    # The Spanish trace serves its actuals as the forecast: there is no forecast error to learn from.
    lifecycle = _lifecycle(ledger, meter_factory, forecast_correction=True)
    decision = lifecycle.plan()
    assert decision.action == "defer"
    assert decision.correction is not None and not decision.correction["regions"]["ES"]["applied"]
    assert "ES: forecast correction not applied: no past forecasts and actuals for ES" in (decision.forecast_note or "")
    assert "serves its actuals as the forecast" in (decision.forecast_note or "")
    plain = _lifecycle(ledger, meter_factory, task="plain").plan()
    assert decision.start_at == plain.start_at


# -- deferred: one rule for first attempts, resumed waits and retries -----------------------------------
def test_a_first_attempt_that_runs_at_once_is_ran_now_with_no_wait(ledger, meter_factory) -> None:
    lifecycle = _lifecycle(ledger, meter_factory, max_delay="0h")
    decision = lifecycle.plan()
    assert not decision.deferred and decision.attempt_requested_at == decision.requested_at == MIDNIGHT
    entry = lifecycle.run(decision, _work, 0.01).entry
    assert (entry.decision, entry.deferred_seconds, entry.requested_at) == ("ran_now", 0.0, MIDNIGHT)
    assert "first_requested_at" not in entry.extra
    assert entry.saved_g == pytest.approx(0.0, abs=1e-9)  # ran when it asked: nothing saved by waiting


def test_a_retry_within_the_latest_start_that_runs_at_once_is_ran_now(ledger, meter_factory) -> None:
    provider = TraceProvider(region="ES", now=MIDNIGHT)
    first = _lifecycle(ledger, meter_factory, provider=provider).plan()
    assert first.action == "defer" and first.start_at > MIDNIGHT + timedelta(hours=6)
    retried_at = first.start_at + timedelta(minutes=10)  # the first attempt ran at its window, then failed
    provider.set_now(retried_at)
    retry = _lifecycle(ledger, meter_factory, provider=provider, attempt=2)
    decision = retry.plan(previous=first, retry=True)

    assert decision.action == "run_now" and decision.start_at == retried_at
    # The deadline still counts from the first request; the retry's own request is when it asked.
    assert decision.requested_at == MIDNIGHT and decision.latest_start == first.latest_start
    assert decision.attempt_requested_at == retried_at
    assert not decision.deferred and decision.deferred_seconds == 0.0
    entry = retry.run(decision, _work, 0.01).entry
    assert entry.decision == "ran_now"  # it waited for nothing (it used to say "deferred", 12 h)
    assert entry.deferred_seconds == 0.0 and entry.requested_at == retried_at
    assert entry.extra["first_requested_at"] == MIDNIGHT.isoformat()
    # Had it started when it asked, it would have run at the same time: no saving claimed.
    assert entry.counterfactual_intensity_g_per_kwh == pytest.approx(entry.intensity_g_per_kwh, rel=0.05)
    assert abs(entry.saved_g) < 0.05 * entry.operational_g


def test_a_retry_that_waits_again_counts_only_its_own_wait(ledger, meter_factory) -> None:
    provider = TraceProvider(region="ES", now=MIDNIGHT)
    first = _lifecycle(ledger, meter_factory, provider=provider).plan()
    retried_at = MIDNIGHT + timedelta(hours=2)  # e.g. the first try was started early by hand and failed
    provider.set_now(retried_at)
    decision = _lifecycle(ledger, meter_factory, provider=provider, attempt=2).plan(previous=first, retry=True)
    assert decision.action == "defer" and decision.start_at <= first.latest_start
    assert decision.deferred
    assert decision.deferred_seconds == (decision.start_at - retried_at).total_seconds()
    assert decision.deferred_seconds < (decision.start_at - MIDNIGHT).total_seconds()


def test_past_the_latest_start_a_retry_runs_at_once_but_a_resumed_wait_was_deferred(ledger, meter_factory) -> None:
    provider = TraceProvider(region="ES", now=MIDNIGHT)
    spec = {"provider": provider, "max_delay": "2h"}
    first = _lifecycle(ledger, meter_factory, **spec).plan()
    late = first.latest_start + timedelta(minutes=5)
    provider.set_now(late)

    retry = _lifecycle(ledger, meter_factory, attempt=2, **spec)
    retried = retry.plan(previous=first, retry=True)
    assert retried.action == "run_now" and retried.start_at == late and "has passed" in retried.reason
    assert not retried.deferred and retried.latest_start == first.latest_start
    assert retry.run(retried, _work, 0.01).entry.decision == "ran_now"

    # The same attempt resuming after its wait (an Airflow trigger that fired at the latest start after a
    # provider outage) keeps its request: it waited, so it is deferred, for all of the wait.
    waiting = replace(first, action="retry", start_at=first.latest_start, wake_at=first.latest_start)
    resumed = _lifecycle(ledger, meter_factory, task="resumed", **spec).plan(previous=waiting)
    assert resumed.action == "run_now" and resumed.deferred
    assert resumed.deferred_seconds == (late - MIDNIGHT).total_seconds()
    entry = _lifecycle(ledger, meter_factory, task="resumed", **spec).run(resumed, _work, 0.01).entry
    assert entry.decision == "deferred" and entry.requested_at == MIDNIGHT


def test_past_the_latest_start_the_attempt_still_runs_in_the_greenest_region_now(ledger, meter_factory) -> None:
    provider = TraceProvider(now=MIDNIGHT)
    lifecycle = Lifecycle(
        CarbonSpec.build(region="ES", regions=["NO"], provider="trace", expected_duration="2h", max_delay="1h"),
        Identity("cli", "w", "r", "t", 2),
        ledger=ledger,
        cache=ForecastCache(),
        provider=provider,
        meter_factory=meter_factory,
    )
    first = replace(lifecycle.plan(), region="ES")
    provider.set_now(first.latest_start + timedelta(hours=1))
    decision = lifecycle.plan(previous=first, retry=True)
    assert decision.action == "run_now" and "has passed" in decision.reason
    assert decision.region == "NO"  # Norway's hydro beats Spain's night: the deadline forbids waiting, not moving
    assert decision.plan is not None and decision.plan["expected_gco2_per_kwh"] < decision.plan["now_gco2_per_kwh"]


def test_a_retry_needs_the_decision_it_retries(ledger, meter_factory) -> None:
    with pytest.raises(InvalidInput) as refused:
        _lifecycle(ledger, meter_factory).plan(retry=True)
    assert "previous" in str(refused.value) and refused.value.fix


def test_a_retry_decision_survives_serialisation_and_a_resume_keeps_its_request(ledger, meter_factory) -> None:
    provider = TraceProvider(region="ES", now=MIDNIGHT)
    first = _lifecycle(ledger, meter_factory, provider=provider).plan()
    assert "retry_requested_at" not in first.to_dict()  # what an older greenflow reads, unchanged
    retried_at = MIDNIGHT + timedelta(hours=2)
    provider.set_now(retried_at)
    retry = _lifecycle(ledger, meter_factory, provider=provider, attempt=2)
    decision = retry.plan(previous=first, retry=True)
    loaded = Decision.from_dict(decision.to_dict())
    assert loaded == decision and loaded.retry_requested_at == retried_at
    # The retry waits in a trigger; the trigger's refresh re-plans the same attempt: still the retry's request.
    provider.set_now(retried_at + timedelta(hours=1))
    refreshed = retry.plan(previous=loaded)
    assert refreshed.attempt_requested_at == retried_at and refreshed.requested_at == MIDNIGHT


def test_a_decision_written_by_an_older_greenflow_still_loads(ledger, meter_factory) -> None:
    # As a trigger's kwargs or a Prefect deferral held it before retries had a request of their own.
    old = {
        "requested_at": "2022-06-01T00:00:00+00:00",
        "start_at": "2022-06-01T12:00:00+00:00",
        "latest_start": "2022-06-01T14:00:00+00:00",
        "wake_at": "2022-06-01T12:00:00+00:00",
        "region": "ES",
        "action": "defer",
        "reason": "greener at noon",
        "plan": None,
        "forecast": None,
        "forecast_note": None,
        "correction": None,
        "policy_outcome": {},
        "replay_speed": None,
        "budget": None,
        "reservation_id": None,
        "estimate_g": None,
        "estimate_kwh": None,
        "estimate_source": None,
    }
    decision = Decision.from_dict(old)
    assert decision.retry_requested_at is None and decision.attempt_requested_at == MIDNIGHT
    assert decision.deferred and decision.deferred_seconds == 12 * 3600
    assert decision.to_dict() == old
