"""CarbonAwareOperator outside a DAG run: plan, reserve, defer to the trigger, resume on a fresh instance,
meter, record, settle; run at once when the window is now; failures and budget refusals recorded."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException, TaskDeferred

from greenflow.airflow.carbon_aware_base import ENTRY_XCOM_KEY
from greenflow.airflow.operators.carbon_aware import CarbonAwareOperator
from greenflow.airflow.triggers.window import CarbonWindowTrigger
from greenflow.ledger import Budget, Identity, Ledger


def _replay(now: datetime, speed: float) -> dict[str, Any]:
    return {"now": now.isoformat(), "speed": speed, "replay_started_at": datetime.now(UTC).isoformat()}


def train(epochs: int, ti: Any = None) -> dict[str, Any]:
    sum(range(100_000))
    return {"checkpoint": "ckpt.pt", "epochs": epochs, "task": ti.task_id}


def _operator(midnight: datetime, **overrides: Any) -> CarbonAwareOperator:
    args: dict[str, Any] = {
        "task_id": "train",
        "python_callable": train,
        "op_kwargs": {"epochs": 3},
        "region": "ES",
        "provider": "trace",
        "provider_options": _replay(midnight, 36_000),
        "expected_duration": "2h",
        "max_delay": "14h",
    }
    return CarbonAwareOperator(**{**args, **overrides})


def _identity(context: dict[str, Any]) -> Identity:
    ti = context["ti"]
    return Identity("airflow", ti.dag_id, ti.run_id, ti.task_id, ti.try_number)


async def _fire(trigger: CarbonWindowTrigger) -> dict[str, Any]:
    async def first() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("the trigger ended without an event")

    return await asyncio.wait_for(first(), 20)


def test_defers_then_resumes_on_a_fresh_instance_and_records_the_wait(
    gf_ledger: Ledger, make_context: Any, midnight: datetime
) -> None:
    gf_ledger.budgets.set(Budget.parse("gpu", "1kg", "month"))
    options = _replay(midnight, 36_000)
    context = make_context(task_id="train")
    op = _operator(midnight, provider_options=options, budget="gpu", estimate="20g")

    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)

    trigger = deferred.value.trigger
    assert isinstance(trigger, CarbonWindowTrigger)
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.timeout is None  # greenflow fires by the latest start itself
    assert gf_ledger.budgets.status("gpu").reserved == 20.0  # reserved before the wait
    assert gf_ledger.count() == 0

    event = asyncio.run(_fire(trigger))
    resumed = _operator(midnight, provider_options=options, budget="gpu", estimate="20g")
    value = resumed.execute_complete(context, event)

    assert value == {"checkpoint": "ckpt.pt", "epochs": 3, "task": "train"}
    entry = gf_ledger.for_attempt(_identity(context))
    assert entry is not None and entry.decision == "deferred"
    assert context["ti"].xcoms[ENTRY_XCOM_KEY] == entry.entry_id
    assert entry.planned_start is not None and entry.requested_at is not None
    assert entry.planned_start > entry.requested_at and entry.deferred_seconds and entry.deferred_seconds > 3600
    assert entry.region == "ES" and entry.forecast_provider == "trace" and entry.forecast_hash
    assert entry.energy_gpu_kwh is None and "no NVIDIA GPU" in entry.measurement_notes["gpu"]
    status = gf_ledger.budgets.status("gpu")
    assert status.reserved == 0.0 and status.settled == entry.charged_g == 20.0  # unmeasured: the estimate stays
    assert "estimate" in (entry.estimate_source or "")


def test_runs_at_once_when_the_window_is_now(gf_ledger: Ledger, make_context: Any, midnight: datetime) -> None:
    context = make_context(task_id="train")
    value = _operator(midnight, max_delay="0s").execute(context)
    assert value["epochs"] == 3
    entry = gf_ledger.for_attempt(_identity(context))
    assert entry is not None and entry.decision == "ran_now" and entry.deferred_seconds == 0.0


def test_a_failing_callable_records_its_energy_and_failed(
    gf_ledger: Ledger, make_context: Any, midnight: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GREENFLOW_CPU_TDP_W", "65")  # a labelled CPU estimate: something to record

    def crash() -> None:
        sum(range(2_000_000))
        raise RuntimeError("CUDA out of memory")

    gf_ledger.budgets.set(Budget.parse("gpu", "1kg", "month"))
    context = make_context(task_id="crash")
    op = _operator(midnight, task_id="crash", python_callable=crash, op_kwargs={}, max_delay="0s", budget="gpu")
    with pytest.raises(RuntimeError, match="CUDA out of memory"):
        op.execute(context)
    entry = gf_ledger.for_attempt(_identity(context))
    assert entry is not None and entry.decision == "failed"
    assert entry.error == "RuntimeError: CUDA out of memory"
    assert entry.method_cpu == "estimate" and entry.energy_cpu_kwh and entry.energy_cpu_kwh > 0
    assert context["ti"].xcoms[ENTRY_XCOM_KEY] == entry.entry_id
    assert gf_ledger.budgets.status("gpu").reserved == 0.0  # settled to what it used


@pytest.mark.parametrize(("setting", "raised"), [("skip", AirflowSkipException), ("fail", AirflowFailException)])
def test_budget_refusal_records_skipped_budget_then_skips_or_fails(
    gf_ledger: Ledger, make_context: Any, midnight: datetime, setting: str, raised: type[Exception]
) -> None:
    gf_ledger.budgets.set(Budget.parse("gpu", "10g", "day"))
    context = make_context(task_id="train")
    op = _operator(midnight, budget="gpu", estimate="50g", on_budget_exceeded=setting)
    with pytest.raises(raised, match="budget 'gpu' refused"):
        op.execute(context)
    entry = gf_ledger.for_attempt(_identity(context))
    assert entry is not None and entry.decision == "skipped_budget"
    assert context["ti"].xcoms[ENTRY_XCOM_KEY] == entry.entry_id
    assert gf_ledger.budgets.status("gpu").spent == 0.0


def test_the_greenflow_section_sets_the_default_refusal(monkeypatch: pytest.MonkeyPatch, midnight: datetime) -> None:
    monkeypatch.setenv("AIRFLOW__GREENFLOW__ON_BUDGET_EXCEEDED", "fail")
    assert _operator(midnight).on_budget_exceeded == "fail"
    assert _operator(midnight, on_budget_exceeded="skip").on_budget_exceeded == "skip"


def test_a_second_attempt_is_a_second_entry(gf_ledger: Ledger, make_context: Any, midnight: datetime) -> None:
    first, second = make_context(task_id="train"), make_context(task_id="train", try_number=2)
    _operator(midnight, max_delay="0s").execute(first)
    _operator(midnight, max_delay="0s").execute(second)
    assert [e.attempt for e in gf_ledger.entries()] == [1, 2]


def test_a_provider_outage_waits_then_runs_at_the_latest_start_and_says_why(
    gf_ledger: Ledger, make_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GREENFLOW_HTTP_TOTAL_TIME", "0.2")
    monkeypatch.setenv("GREENFLOW_HTTP_TIMEOUT", "0.1")
    args: dict[str, Any] = {
        "task_id": "train",
        "python_callable": lambda: "done",
        "region": "national",
        "provider": "ukgrid",
        "provider_options": {"base_url": "http://127.0.0.1:9"},  # nothing listens: the provider is down
        "expected_duration": "1h",
        "max_delay": "2s",
        "on_provider_error": "wait",
    }
    context = make_context(task_id="train")
    with pytest.raises(TaskDeferred) as deferred:
        CarbonAwareOperator(**args).execute(context)
    event = asyncio.run(_fire(deferred.value.trigger))
    assert event["fired"] == "latest_start"

    assert CarbonAwareOperator(**args).execute_complete(context, event) == "done"
    [entry] = gf_ledger.entries()
    assert entry.decision == "deferred" and entry.forecast is None
    assert "running now without a forecast (on_provider_error=wait)" in (entry.forecast_note or "")
    assert entry.policy["outcome"]["regions"][0]["kind"] == "run_now"


def test_no_forecast_under_on_provider_error_fail_records_failed_and_fails_the_task(
    gf_ledger: Ledger, make_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GREENFLOW_HTTP_TOTAL_TIME", "0.2")
    monkeypatch.setenv("GREENFLOW_HTTP_TIMEOUT", "0.1")
    ran: list[bool] = []
    context = make_context(task_id="train")
    op = CarbonAwareOperator(
        task_id="train",
        python_callable=lambda: ran.append(True),
        region="national",
        provider="ukgrid",
        provider_options={"base_url": "http://127.0.0.1:9"},  # nothing listens: the provider is down
        on_provider_error="fail",
    )
    with pytest.raises(AirflowFailException, match="on_provider_error=fail"):  # no retry: the policy said fail
        op.execute(context)
    [entry] = gf_ledger.entries()
    assert entry.decision == "failed" and "on_provider_error=fail" in (entry.error or "")
    assert context["ti"].xcoms[ENTRY_XCOM_KEY] == entry.entry_id and ran == []
