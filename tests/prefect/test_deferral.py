"""Deployment flow runs wait for their window in a ``Scheduled`` state; ``schedule_green`` and its CLI.

Flow runs of a deployment are executed in this process with ``run_flow`` (what a worker's process
does), so each step is visible: the run gives its process back, sits ``AwaitingGreenWindow``, and runs
later under the decision it carried. ``test_end_to_end.py`` does the same with a real worker.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
import typer
from prefect import Flow, flow
from prefect.client.orchestration import get_client
from prefect.exceptions import Pause
from prefect.flow_engine import run_flow
from typer.testing import CliRunner

from greenflow.clock import utcnow
from greenflow.errors import BudgetExceeded, InvalidInput
from greenflow.intensity import replay_clock
from greenflow.ledger import Budget, Entry, Identity
from greenflow.prefect import GREEN_WINDOW_STATE, carbon_aware, schedule_green
from greenflow.prefect.deferral import DEFERRAL_INPUT_KEY, read_deferral

pytestmark = [pytest.mark.xdist_group("prefect"), pytest.mark.usefixtures("prefect_server")]


def _deploy(flow_obj: Flow[Any, Any], name: str = "green") -> str:
    """Register a deployment (no work pool: these tests run its flow runs in-process)."""
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name(flow_obj.name)
        client.create_deployment(flow_id=flow_id, name=name, entrypoint=f"tests/prefect/test_deferral.py:{name}")
    return f"{flow_obj.name}/{name}"


def _run_from_deployment(deployment: str, parameters: dict[str, Any] | None = None) -> Any:
    with get_client(sync_client=True) as client:
        found = client.read_deployment_by_name(deployment)
        return client.create_flow_run_from_deployment(found.id, parameters=parameters or {})


def _read(flow_run_id: UUID | str) -> Any:
    with get_client(sync_client=True) as client:
        return client.read_flow_run(UUID(str(flow_run_id)))


def _states(flow_run_id: UUID | str) -> list[tuple[str, str]]:
    with get_client(sync_client=True) as client:
        return [(s.type.value, str(s.name)) for s in client.read_flow_run_states(UUID(str(flow_run_id)))]


def _wait_until(moment: Any) -> None:
    time.sleep(max((moment - utcnow()).total_seconds(), 0) + 0.2)


def test_a_deployment_run_gives_its_process_back_and_resumes_at_the_window(
    fake_gpu_meter, run_entries, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    ran: list[int] = []

    @flow(name="green-training")
    @carbon_aware(
        region="ES",
        provider="trace",
        # Midday is ~11 s away: room for a loaded CI. No replay_started_at, as users write it: greenflow
        # keeps the replay's clock, across the two processes of the run too (a second of its own, not shared).
        provider_options={"now": "2022-06-01T00:00:19Z", "speed": 4000},
        expected_duration="2h",
        max_delay="14h",
        meter_factory=fake_gpu_meter,
    )
    def green_training(epochs: int = 1) -> int:
        ran.append(epochs)
        return epochs

    created = _run_from_deployment(_deploy(green_training), {"epochs": 3})
    with pytest.raises(Pause):  # a worker's process exits here (status 0)
        run_flow(green_training, flow_run=created)
    assert ran == []
    waiting = _read(created.id)
    assert waiting.state.type.value == "SCHEDULED" and waiting.state.name == GREEN_WINDOW_STATE
    assert waiting.state.message.startswith("greenflow: deferred to 2022-06-01") and "saves" in waiting.state.message
    carried = read_deferral(created.id)
    assert carried is not None and carried.deferrals == 1 and carried.source == "deferred"
    assert waiting.next_scheduled_start_time == carried.decision.wake_at  # the window, in wall-clock time
    assert run_entries(created.id) == []  # nothing ran, nothing recorded yet

    assert carried.replay is not None  # the replay's clock travels with the run

    _wait_until(carried.decision.wake_at)
    # The worker starts the run again in a new process, which has no replay clock of its own yet.
    monkeypatch.setattr(replay_clock, "_ANCHORS", {})
    assert run_flow(green_training, flow_run=_read(created.id)) == 3
    assert ran == [3]
    done = _read(created.id)
    assert done.state.is_completed() and done.run_count == 2
    assert _states(created.id)[-4:] == [
        ("RUNNING", "Running"),
        ("SCHEDULED", GREEN_WINDOW_STATE),
        ("RUNNING", "Running"),
        ("COMPLETED", "Completed"),
    ]
    [entry] = run_entries(created.id)
    assert (entry.task_id, entry.attempt, entry.decision) == (
        "green-training",
        1,
        "deferred",
    )  # a deferral is no attempt
    assert entry.requested_at == carried.decision.requested_at and entry.planned_start == carried.decision.start_at
    # It continued the replay (it used to restart at 00:00 and record a start 12 h before its planned one).
    assert entry.planned_start <= entry.actual_start <= carried.decision.latest_start
    assert entry.energy_gpu_kwh > 0
    assert read_deferral(created.id) is None  # used up


def test_an_async_flow_of_a_deployment_defers_the_same_way(replay, fake_gpu_meter, run_entries) -> None:  # type: ignore[no-untyped-def]
    @flow(name="async-green")
    @carbon_aware(
        region="ES",
        provider="trace",
        provider_options=replay(speed=4000),
        expected_duration="2h",
        max_delay="14h",
        meter_factory=fake_gpu_meter,
    )
    async def async_green() -> str:
        await asyncio.sleep(0.01)
        return "ok"

    created = _run_from_deployment(_deploy(async_green))
    with pytest.raises(Pause):
        asyncio.run(run_flow(async_green, flow_run=created))  # type: ignore[arg-type]
    assert _read(created.id).state.name == GREEN_WINDOW_STATE
    carried = read_deferral(created.id)
    assert carried is not None
    _wait_until(carried.decision.wake_at)
    assert asyncio.run(run_flow(async_green, flow_run=_read(created.id))) == "ok"  # type: ignore[arg-type]
    [entry] = run_entries(created.id)
    assert (entry.decision, entry.attempt, entry.task_id) == ("deferred", 1, "async-green")


def test_the_reservation_is_held_while_the_run_waits_and_settled_when_it_ran(
    ledger, replay, fake_gpu_meter, run_entries
) -> None:  # type: ignore[no-untyped-def]
    ledger.budgets.set(Budget.parse("nightly", "100g", "month"))

    @flow(name="budgeted-training")
    @carbon_aware(
        region="ES",
        provider="trace",
        provider_options=replay(speed=4000),
        expected_duration="2h",
        max_delay="14h",
        budget="nightly",
        estimate="60g",
        meter_factory=fake_gpu_meter,
    )
    def budgeted_training() -> str:
        return "ok"

    deployment = _deploy(budgeted_training)
    first = _run_from_deployment(deployment)
    with pytest.raises(Pause):
        run_flow(budgeted_training, flow_run=first)
    assert ledger.budgets.status("nightly").reserved == 60.0
    # While the first run waits without a process, its hold keeps a second 60 g run out of the budget:
    # skipped (on_budget_exceeded's default), recorded, its flow function not run.
    second = _run_from_deployment(deployment)
    assert run_flow(budgeted_training, flow_run=second) is None
    assert _read(second.id).state.is_completed()
    assert [e.decision for e in run_entries(second.id)] == ["skipped_budget"]

    carried = read_deferral(first.id)
    assert carried is not None
    _wait_until(carried.decision.wake_at)
    assert run_flow(budgeted_training, flow_run=_read(first.id)) == "ok"
    [entry] = run_entries(first.id)
    assert entry.reservation_id == carried.decision.reservation_id
    status = ledger.budgets.status("nightly")
    assert status.reserved == 0.0 and status.settled == pytest.approx(entry.charged_g)


def test_schedule_green_creates_the_run_at_the_window_and_the_run_keeps_that_decision(
    fake_gpu_meter, run_entries, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    trace = {"now": "2022-06-01T00:00:23Z", "speed": 4000}  # as users write it: greenflow keeps the clock

    @flow(name="scheduled-training")
    @carbon_aware(
        region="ES",
        provider="trace",
        provider_options=trace,
        expected_duration="2h",
        max_delay="1h",
        meter_factory=fake_gpu_meter,
    )
    def scheduled_training(epochs: int = 1) -> int:
        return epochs

    deployment = _deploy(scheduled_training)
    scheduled = schedule_green(
        deployment,
        {"epochs": 4},
        region="ES",
        provider="trace",
        provider_options=trace,
        expected_duration="2h",
        max_delay="14h",
    )
    assert scheduled.decision.action == "defer"
    created = _read(scheduled.flow_run_id)
    assert created.parameters == {"epochs": 4} and "greenflow" in created.tags
    assert created.state.name == GREEN_WINDOW_STATE and created.next_scheduled_start_time == scheduled.scheduled_time
    carried = read_deferral(scheduled.flow_run_id)
    assert carried is not None and carried.source == "schedule_green" and carried.deferrals == 0

    _wait_until(scheduled.scheduled_time)
    monkeypatch.setattr(replay_clock, "_ANCHORS", {})  # a worker's new process: no replay clock of its own
    assert run_flow(scheduled_training, flow_run=_read(scheduled.flow_run_id)) == 4
    [entry] = run_entries(scheduled.flow_run_id)
    # The run used the planner's decision (14 h window, not its own 1 h max_delay) and did not plan again.
    assert entry.decision == "deferred" and entry.deferred_seconds > 2 * 3600
    assert entry.requested_at == scheduled.decision.requested_at and entry.attempt == 1
    # On the planner's replay clock, which travelled with the run (it used to restart at 00:00).
    assert entry.planned_start <= entry.actual_start <= scheduled.decision.latest_start


def test_schedule_green_schedules_nothing_when_the_budget_is_spent(ledger, replay) -> None:  # type: ignore[no-untyped-def]
    ledger.budgets.set(Budget.parse("spent", "5g", "day"))
    ledger.append(Entry.for_attempt(Identity("cli", "w", "r", "t"), "ran_now", charged_g=5.0, budget="spent"))

    @flow(name="never-scheduled")
    def never_scheduled() -> None: ...

    deployment = _deploy(never_scheduled)
    with pytest.raises(BudgetExceeded, match=r"budget 'spent' is spent .*nothing scheduled"):
        schedule_green(deployment, region="ES", provider="trace", provider_options=replay(), budget="spent")
    with get_client(sync_client=True) as client:
        assert client.read_flow_runs() == [] or all(r.name != "never-scheduled" for r in client.read_flow_runs())
    with pytest.raises(InvalidInput, match="is not '<flow name>/<deployment name>'"):
        schedule_green("just-a-name", region="ES", provider="trace")
    # The budget's name by the options table's rule (that of `greenflow budget set`), as everywhere.
    with pytest.raises(InvalidInput, match=r"budget='  spent  ' is empty or has surrounding spaces"):
        schedule_green(deployment, region="ES", provider="trace", provider_options=replay(), budget="  spent  ")


def test_cli_schedule_prints_the_run_and_its_window(replay) -> None:  # type: ignore[no-untyped-def]
    from greenflow.cli import prefect as prefect_cli

    @flow(name="cli-training")
    def cli_training(epochs: int = 1, model: str = "resnet") -> None: ...

    deployment = _deploy(cli_training)
    app = typer.Typer()
    app.add_typer(prefect_cli.app, name="prefect")
    runner = CliRunner()
    options = replay(speed=3600)
    result = runner.invoke(
        app,
        [
            "prefect",
            "schedule",
            deployment,
            "--param",
            "epochs=3",
            "--param",
            "model=vit",
            "--region",
            "ES",
            "--provider",
            "trace",
            "--provider-option",
            f"now={options['now']}",
            "--provider-option",
            "speed=3600",
            "--duration",
            "2h",
            "--max-delay",
            "14h",
            "--json",
        ],
    )
    assert result.exit_code == 0, (result.stdout, result.stderr)
    shown = json.loads(result.stdout)
    assert shown["decision"]["action"] == "defer" and shown["decision"]["region"] == "ES"
    assert shown["summary"].startswith("deferred to 2022-06-01")
    created = _read(shown["flow_run_id"])
    assert created.parameters == {"epochs": 3, "model": "vit"}
    assert created.state.name == GREEN_WINDOW_STATE

    human = runner.invoke(
        app,
        [
            "prefect",
            "schedule",
            deployment,
            "--region",
            "ES",
            "--provider",
            "trace",
            "--provider-option",
            "now=2022-06-01T12:00Z",
        ],
    )
    assert human.exit_code == 0, human.stderr
    assert "scheduled at" in human.stdout and "in ES" in human.stdout
    outside = runner.invoke(app, ["prefect", "schedule", deployment, "--region", "ES", "--provider", "trace"])
    assert outside.exit_code == 2 and "is outside trace" in outside.stderr  # the core's one-line error

    missing = runner.invoke(
        app, ["prefect", "schedule", "no-such-flow/nightly", "--region", "ES", "--provider", "trace"]
    )
    assert missing.exit_code == 2
    assert "was not found on the Prefect server" in missing.stderr
    bad = runner.invoke(app, ["prefect", "schedule", deployment, "--param", "epochs"])
    assert bad.exit_code == 2 and "--param 'epochs' is not key=value" in bad.stderr


def test_a_run_an_older_greenflow_rescheduled_resumes_deferred_after_an_upgrade(
    replay, fake_gpu_meter, run_entries
) -> None:  # type: ignore[no-untyped-def]
    @flow(name="upgraded-training")
    @carbon_aware(
        region="ES",
        provider="trace",
        provider_options=replay(speed=1.0, now="2022-06-01T12:00Z"),
        expected_duration="2h",
        max_delay="14h",
        meter_factory=fake_gpu_meter,
    )
    def upgraded_training() -> str:
        return "done"

    created = _run_from_deployment(_deploy(upgraded_training, name="upgraded"))
    # The deferral exactly as greenflow wrote it before decisions had a retry's request time: its window has come.
    midnight = datetime.fromisoformat("2022-06-01T00:00:00+00:00")
    old_decision = {
        "requested_at": midnight.isoformat(),
        "start_at": (midnight + timedelta(hours=12)).isoformat(),
        "latest_start": (midnight + timedelta(hours=14)).isoformat(),
        "wake_at": (utcnow() - timedelta(seconds=1)).isoformat(),
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
    with get_client(sync_client=True) as client:
        client.create_flow_run_input(
            flow_run_id=created.id,
            key=DEFERRAL_INPUT_KEY,
            value=json.dumps({"decision": old_decision, "deferrals": 1, "source": "deferred"}),
        )

    assert run_flow(upgraded_training, flow_run=_read(created.id)) == "done"
    [entry] = run_entries(created.id)
    assert (entry.attempt, entry.decision) == (1, "deferred")  # it waited for its window, under the old version
    assert entry.requested_at == midnight and entry.deferred_seconds == 12 * 3600
    assert "first_requested_at" not in entry.extra  # not a retry
    assert read_deferral(created.id) is None
