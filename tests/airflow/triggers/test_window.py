"""CarbonWindowTrigger: survives Airflow's serde, fires at the planned or the latest start, moves the start
(earlier or later) when a fresher forecast has a greener window, and writes nothing to the ledger."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import greenflow.intensity.providers.base as provider_registry
import greenflow.lifecycle as lifecycle_module
from greenflow.airflow import resources
from greenflow.airflow.identity import identity_to_dict
from greenflow.airflow.spec_params import trigger_spec_kwargs
from greenflow.airflow.triggers.window import CarbonWindowTrigger
from greenflow.intensity.cache import ForecastCache
from greenflow.intensity.forecast import Forecast, ForecastPoint
from greenflow.ledger import Identity, Ledger
from greenflow.ledger import registry as ledger_registry
from greenflow.lifecycle import Decision, Lifecycle
from greenflow.replanning import preferred
from greenflow.spec import CarbonSpec

IDENTITY = Identity("airflow", "dag", "run-1", "train")
T0 = datetime(2024, 1, 1, tzinfo=UTC)


async def _collect(trigger: CarbonWindowTrigger, timeout: float = 20) -> list[Any]:
    async def drain() -> list[Any]:
        return [event async for event in trigger.run()]

    return await asyncio.wait_for(drain(), timeout)


def _planned(options: dict[str, Any], ledger: Ledger, **spec_args: Any) -> tuple[CarbonSpec, Decision]:
    spec = CarbonSpec.build(provider="trace", provider_options=options, **spec_args)
    decision = Lifecycle(spec, IDENTITY, ledger=ledger, cache=ForecastCache()).plan()
    return spec, decision


def _trigger(
    spec: CarbonSpec, decision: Decision, options: dict[str, Any], refresh: float = 1800
) -> CarbonWindowTrigger:
    return CarbonWindowTrigger(
        decision=decision.to_dict(),
        spec=trigger_spec_kwargs(spec, options),
        identity=identity_to_dict(IDENTITY),
        refresh_seconds=refresh,
    )


def _replay(now: datetime | str, speed: float, **extra: Any) -> dict[str, Any]:
    started = datetime.now(UTC).isoformat()
    return {
        "now": now if isinstance(now, str) else now.isoformat(),
        "speed": speed,
        "replay_started_at": started,
        **extra,
    }


def test_serialize_round_trips_through_airflow_serde_and_the_trigger_table(
    gf_ledger: Ledger, midnight: datetime
) -> None:
    from airflow.models.trigger import Trigger
    from airflow.sdk.serde import deserialize, serialize

    options = _replay(midnight, 3600)
    spec, decision = _planned(options, gf_ledger, region="ES", expected_duration="2h", max_delay="12h")
    trigger = _trigger(spec, decision, options)
    classpath, kwargs = trigger.serialize()
    assert classpath == "greenflow.airflow.triggers.window.CarbonWindowTrigger"

    assert deserialize(serialize(kwargs)) == kwargs
    stored = Trigger._decrypt_kwargs(Trigger.encrypt_kwargs(kwargs))
    rebuilt = CarbonWindowTrigger(**stored)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert Decision.from_dict(rebuilt.decision) == decision
    assert CarbonSpec.from_kwargs(rebuilt.spec) == spec
    assert "forecast" not in repr(rebuilt) and "ES" in repr(rebuilt)  # the log line stays short


def test_fires_at_the_planned_start_of_a_replayed_window(gf_ledger: Ledger, midnight: datetime) -> None:
    options = _replay(midnight, 36_000)  # ten hours of grid time per wall second
    spec, decision = _planned(options, gf_ledger, region="ES", expected_duration="2h", max_delay="14h")
    assert decision.action == "defer" and decision.start_at >= midnight + timedelta(hours=8)

    [event] = asyncio.run(_collect(_trigger(spec, decision, options)))

    fired = Decision.from_dict(event.payload["decision"])
    assert event.payload["fired"] == "planned_start"
    assert fired.start_at <= decision.start_at and fired.latest_start == decision.latest_start
    assert datetime.now(UTC) >= fired.wake_at
    assert gf_ledger.count() == 0  # the trigger writes nothing


def test_a_fresher_forecast_moves_the_start_earlier(gf_ledger: Ledger, snapshots_trace: Any) -> None:
    dirty, green = 300.0, 40.0
    early = [dirty, dirty, green, green] + [dirty] * 4 + [50.0, 50.0] + [dirty] * 14
    late = [dirty] * 8 + [50.0, 50.0] + [dirty] * 14
    path = snapshots_trace({T0: late, T0 + timedelta(minutes=30): early}, start=T0)
    options = _replay(T0, 3600, path=str(path))
    spec, decision = _planned(options, gf_ledger, region="GB", expected_duration="1h", max_delay="6h")
    assert decision.start_at == T0 + timedelta(hours=4)

    [event] = asyncio.run(_collect(_trigger(spec, decision, options)))  # refreshes every 30 min of trace time

    fired = Decision.from_dict(event.payload["decision"])
    assert event.payload["fired"] == "planned_start"
    assert event.payload["moved_earlier_from"] == decision.start_at.isoformat()
    assert fired.start_at == T0 + timedelta(hours=1)
    assert event.payload["refreshes"] >= 1


def test_a_fresher_forecast_moves_the_start_later_for_a_greener_window(gf_ledger: Ledger, snapshots_trace: Any) -> None:
    # greenflow.replanning.RULE ("greener", the best measured by benchmarks/savings.py): a fresh plan is
    # taken, earlier or later, when the fresh forecast says its window is greener than the one held.
    dirty = 300.0
    soon = [dirty, dirty, 60.0, 60.0] + [dirty] * 20
    later_and_greener = [dirty] * 8 + [10.0, 10.0] + [dirty] * 14
    path = snapshots_trace({T0: soon, T0 + timedelta(minutes=30): later_and_greener}, start=T0)
    options = _replay(T0, 3600, path=str(path))
    spec, decision = _planned(options, gf_ledger, region="GB", expected_duration="1h", max_delay="6h")
    assert decision.start_at == T0 + timedelta(hours=1)

    [event] = asyncio.run(_collect(_trigger(spec, decision, options)))

    assert Decision.from_dict(event.payload["decision"]).start_at == T0 + timedelta(hours=4)
    assert event.payload["moved_earlier_from"] is None


def test_a_refresh_moves_the_start_only_for_a_greener_window(gf_ledger: Ledger, snapshots_trace: Any) -> None:
    """Issue 15: a re-plan moved 12:00 (171 g) to 11:00 (178 g): the fresh plan ran now (saving < min_savings)."""
    dirty = 300.0
    first = [dirty] * 8 + [171.0, 171.0] + [dirty] * 14
    fresher = [dirty] + [178.0] * 7 + [171.0, 171.0] + [dirty] * 14  # now is nearly as green as the window
    path = snapshots_trace({T0: first, T0 + timedelta(minutes=30): fresher}, start=T0)
    options = _replay(T0, 3600, path=str(path))
    spec, decision = _planned(options, gf_ledger, region="GB", expected_duration="1h", max_delay="6h", min_savings=10)
    assert decision.start_at == T0 + timedelta(hours=4)

    [event] = asyncio.run(_collect(_trigger(spec, decision, options)))

    fired = Decision.from_dict(event.payload["decision"])
    assert event.payload["refreshes"] >= 1
    assert fired.start_at == T0 + timedelta(hours=4)  # 171 g kept: 178 g sooner is not greener
    assert event.payload["moved_earlier_from"] is None


@pytest.mark.parametrize("on_provider_error", ["wait", "fail"])
def test_with_no_forecast_it_fires_at_the_latest_start_and_writes_nothing(
    gf_ledger: Ledger, monkeypatch: pytest.MonkeyPatch, on_provider_error: str
) -> None:
    monkeypatch.setenv("GREENFLOW_HTTP_TOTAL_TIME", "0.2")
    monkeypatch.setenv("GREENFLOW_HTTP_TIMEOUT", "0.1")
    spec = CarbonSpec.build(
        region="national",
        provider="ukgrid",
        provider_options={"base_url": "http://127.0.0.1:9"},  # nothing listens there: every fetch fails
        expected_duration="1h",
        max_delay="1.5s",
        on_provider_error=on_provider_error,
    )
    now = datetime.now(UTC)
    waiting = Decision(
        requested_at=now,
        start_at=now + timedelta(seconds=0.3),
        latest_start=now + timedelta(seconds=1.5),
        wake_at=now + timedelta(seconds=0.3),
        region="national",
        action="retry",
        reason="forecast unavailable: retrying",
    )
    trigger = CarbonWindowTrigger(
        decision=waiting.to_dict(),
        spec=trigger_spec_kwargs(spec, {"base_url": "http://127.0.0.1:9"}),
        identity=identity_to_dict(IDENTITY),
        refresh_seconds=1800,
    )

    [event] = asyncio.run(_collect(trigger))

    fired = Decision.from_dict(event.payload["decision"])
    assert event.payload["fired"] == "latest_start"
    assert datetime.now(UTC) >= waiting.latest_start
    # Still waiting for a forecast: the task's Lifecycle.advance applies the outage policy when it resumes
    # (tests/airflow/operators/test_carbon_aware.py), with the task's own on_provider_error.
    assert fired.action == "retry" and fired.requested_at == waiting.requested_at
    assert event.payload["refreshes"] >= 1  # it asked again at the policy's retry time, through the core
    assert gf_ledger.count() == 0


def test_two_copies_of_one_trigger_fire_the_same_plan(gf_ledger: Ledger, midnight: datetime) -> None:
    options = _replay(midnight, 36_000)
    spec, decision = _planned(options, gf_ledger, region="ES", expected_duration="2h", max_delay="14h")
    kwargs = _trigger(spec, decision, options).serialize()[1]

    async def both() -> list[list[Any]]:
        return list(
            await asyncio.gather(_collect(CarbonWindowTrigger(**kwargs)), _collect(CarbonWindowTrigger(**kwargs)))
        )

    first, second = asyncio.run(both())
    assert first[0].payload["decision"]["start_at"] == second[0].payload["decision"]["start_at"]
    assert gf_ledger.count() == 0


def _hourly(midnight: datetime, values: list[float]) -> dict[str, Any]:
    points = tuple(
        ForecastPoint(midnight + timedelta(hours=i), midnight + timedelta(hours=i + 1), v) for i, v in enumerate(values)
    )
    return Forecast("ES", "trace", "average", midnight, points).to_dict()


def test_preferred_keeps_the_held_plan_when_a_refresh_has_no_forecast(midnight: datetime) -> None:
    window = {"start": midnight.isoformat(), "end": (midnight + timedelta(hours=1)).isoformat()}
    held = Decision(
        requested_at=midnight,
        start_at=midnight + timedelta(hours=5),
        latest_start=midnight + timedelta(hours=8),
        wake_at=midnight + timedelta(hours=5),
        region="ES",
        action="defer",
        reason="planned",
        plan=window,
        forecast=_hourly(midnight, [300.0] * 10),
    )
    outage = replace(held, action="retry", start_at=midnight + timedelta(hours=1), forecast=None)
    run_now_without_forecast = replace(held, action="run_now", start_at=midnight, forecast=None)
    greener_sooner = [300.0, 300.0, 100.0, 300.0, 300.0, 200.0, 300.0, 300.0, 300.0, 300.0]
    sooner = replace(held, start_at=midnight + timedelta(hours=2), forecast=_hourly(midnight, greener_sooner))
    dirtier_sooner = replace(sooner, forecast=_hourly(midnight, [300.0, 300.0, 210.0, *greener_sooner[3:]]))
    as_green_sooner = replace(sooner, forecast=_hourly(midnight, [300.0, 300.0, 200.0, *greener_sooner[3:]]))
    later = replace(held, start_at=midnight + timedelta(hours=6))
    assert preferred(held, outage) is held
    assert preferred(held, run_now_without_forecast) is held
    assert preferred(held, sooner) is sooner
    assert preferred(held, dirtier_sooner) is held  # sooner but dirtier by the fresh forecast
    assert preferred(held, as_green_sooner) is held  # moves only for a greener window
    assert preferred(held, replace(sooner, region="FR")) is held  # the held window cannot be judged
    assert preferred(held, later) is held
    assert preferred(outage, later) is later  # waiting for a forecast: any answer replaces the retry


def test_missing_connection_keeps_the_plan_and_still_fires(gf_ledger: Ledger, midnight: datetime) -> None:
    options = _replay(midnight, 36_000)
    spec, decision = _planned(options, gf_ledger, region="ES", expected_duration="2h", max_delay="14h")
    kwargs = {**_trigger(spec, decision, options).serialize()[1], "provider_conn_id": "no_such_conn"}
    [event] = asyncio.run(_collect(CarbonWindowTrigger(**kwargs)))
    assert event.payload["fired"] == "planned_start"
    assert event.payload["refreshes"] == 0
    assert event.payload["decision"]["start_at"] == decision.to_dict()["start_at"]


# greenflow's blocking entry points a waiting trigger goes through (all must run off the event loop).
BLOCKING_ENTRY_POINTS = [
    (CarbonSpec, "build"),
    (CarbonSpec, "from_kwargs"),
    (provider_registry, "get_provider"),
    (resources, "ledger_at"),
    (Ledger, "__init__"),
    (lifecycle_module, "shared_cache"),
    (Lifecycle, "__init__"),
    (Lifecycle, "plan"),
    (Decision, "from_dict"),
    (Decision, "to_dict"),
]


def test_triggers_arriving_together_do_all_their_blocking_work_off_the_event_loop(
    gf_ledger: Ledger, midnight: datetime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loop_watch: Any
) -> None:
    # 7200x: the ~12 h wait lasts ~6 s, room for the 50 triggers to set up and re-plan (first after ~0.25 s)
    # even on a loaded machine; at 36000x a slow set-up could use up the whole wait before any re-plan.
    options = _replay(midnight, 7_200)
    spec, decision = _planned(options, gf_ledger, region="ES", expected_duration="2h", max_delay="14h")
    kwargs = _trigger(spec, decision, options).serialize()[1]
    # A triggerer that has served no greenflow task yet: no ledger engine, provider or forecast cache, and a
    # ledger database it must create.
    monkeypatch.setattr(ledger_registry, "_ledgers", {})
    monkeypatch.setattr(resources, "_providers", {})
    monkeypatch.setattr(lifecycle_module, "_SHARED_CACHES", {})
    monkeypatch.setenv("GREENFLOW_LEDGER_URL", f"sqlite:///{tmp_path / 'triggerer-ledger.db'}")

    async def triggerer() -> tuple[int, list[list[Any]]]:
        # As Airflow's triggerer does: build each trigger on the loop, then run them all on it.
        triggers = [CarbonWindowTrigger(**kwargs) for _ in range(50)]
        return threading.get_ident(), list(await asyncio.gather(*(_collect(t) for t in triggers)))

    for owner, name in BLOCKING_ENTRY_POINTS:
        loop_watch.wrap(monkeypatch, owner, name)
    with loop_watch:
        loop_thread, fired = asyncio.run(triggerer())

    assert [events[0].payload["fired"] for events in fired] == ["planned_start"] * 50
    assert all(events[0].payload["refreshes"] >= 1 for events in fired)  # they re-planned while waiting
    assert loop_watch.on(loop_thread) == []
    elsewhere = loop_watch.off(loop_thread)
    # The same work did happen, in greenflow's threads: the watch saw it.
    # The trigger rebuilds its spec from its kwargs (from_kwargs: no declaration-time checks).
    for done in (
        "CarbonSpec.from_kwargs",
        "base.get_provider",
        "Ledger.__init__",
        "Lifecycle.plan",
        "Decision.to_dict",
    ):
        assert done in elsewhere
    assert any(call.startswith("sqlite3.connect:") for call in elsewhere)
    assert {call.thread_name.split("_")[0] for call in loop_watch.calls if call.thread != loop_thread} == {"greenflow"}


def test_connection_lookups_stay_async_and_the_rest_runs_off_the_loop(
    gf_ledger: Ledger, midnight: datetime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loop_watch: Any
) -> None:
    import json

    from greenflow.airflow.hooks.lookup import aget_connection

    ledger_file = tmp_path / "via-connection.db"
    monkeypatch.setenv(
        "AIRFLOW_CONN_GF_TRIGGER_LEDGER",
        json.dumps({"conn_type": "greenflow_ledger", "schema": str(ledger_file), "extra": {"driver": "sqlite"}}),
    )
    monkeypatch.setenv("AIRFLOW_CONN_GF_TRIGGER_TRACE", json.dumps({"conn_type": "greenflow_trace"}))
    options = _replay(midnight, 36_000)
    spec, decision = _planned(options, gf_ledger, region="ES", expected_duration="2h", max_delay="14h")
    kwargs = {
        **_trigger(spec, decision, options).serialize()[1],
        "provider_conn_id": "gf_trigger_trace",
        "ledger_conn_id": "gf_trigger_ledger",
    }
    monkeypatch.setattr(ledger_registry, "_ledgers", {})

    async def triggerer() -> tuple[int, list[Any]]:
        return threading.get_ident(), await _collect(CarbonWindowTrigger(**kwargs))

    asyncio.run(aget_connection("gf_trigger_trace"))  # Airflow loads its secrets backends once per process

    for owner, name in BLOCKING_ENTRY_POINTS:
        loop_watch.wrap(monkeypatch, owner, name)
    with loop_watch:
        loop_thread, [event] = asyncio.run(triggerer())

    assert event.payload["fired"] == "planned_start" and event.payload["refreshes"] >= 1
    assert loop_watch.on(loop_thread) == []
    assert ledger_file.exists()  # the forecast cache was shared through the connection's ledger
    assert "Lifecycle.plan" in loop_watch.off(loop_thread)
