"""Actual intensity through the cache: N lifecycles recording together cost one request per hour-aligned window."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from greenflow.errors import ProviderError
from greenflow.intensity.cache import ForecastCache, InMemorySharedStore
from greenflow.intensity.providers.ukgrid import UKGridProvider
from greenflow.ledger import Identity, Ledger
from greenflow.lifecycle import Lifecycle
from greenflow.metering.meter import Meter
from greenflow.spec import CarbonSpec
from greenflow.testing.fake_nvml import FakeGpu, FakeNvml

HISTORY = r"/intensity/[^/]+/(?!fw48h)[^/]+"


def _z(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%MZ")


def _parse(text: str) -> datetime:
    return datetime.strptime(unquote(text), "%Y-%m-%dT%H:%MZ").replace(tzinfo=UTC)


def _half_hours(start: datetime, end: datetime, value: float) -> dict[str, Any]:
    """The API's shape: half-hour periods covering [start, end), each with a settled actual."""
    begin = start.replace(minute=0 if start.minute < 30 else 30, second=0, microsecond=0)
    data = []
    while begin < end:
        finish = begin + timedelta(minutes=30)
        data.append({"from": _z(begin), "to": _z(finish), "intensity": {"forecast": value + 50, "actual": value}})
        begin = finish
    return {"data": data}


@pytest.fixture
def grid(api, reply):  # type: ignore[no-untyped-def]
    """The fake NESO API: forecasts at 300 g, actuals at 120 g for whatever window is asked."""

    def history(seen):  # type: ignore[no-untyped-def]
        _, _, start, end = seen.path.split("/")
        return reply(200, _half_hours(_parse(start), _parse(end), 120.0))

    def forecast(seen):  # type: ignore[no-untyped-def]
        start = _parse(seen.path.split("/")[2])
        return reply(200, _half_hours(start, start + timedelta(hours=48), 250.0))

    api.route(r"/intensity/[^/]+/fw48h", forecast)
    api.route(HISTORY, history)
    return api


def _history_requests(api) -> list[tuple[datetime, datetime]]:  # type: ignore[no-untyped-def]
    return [(_parse(r.path.split("/")[2]), _parse(r.path.split("/")[3])) for r in api.seen(HISTORY)]


def test_lifecycles_recording_together_fetch_each_window_once(grid, retry, sqlite_url: str, tmp_path: Path) -> None:
    ledger = Ledger(sqlite_url)
    cache = ForecastCache()
    provider = UKGridProvider(base_url=grid.url, retry=retry)
    fake = FakeNvml([FakeGpu(uuid="GPU-11111111-2222-3333-4444-555555555555", power_w=300.0)])
    # forecast_correction off: its own past fetches at plan time (tests/intensity/test_correction_sources.py)
    # would be counted with the runs' actuals here.
    spec = CarbonSpec.build(
        region="national", provider="ukgrid", expected_duration="1h", max_delay="0h", forecast_correction=False
    )

    def lifecycle(task: str) -> Lifecycle:
        return Lifecycle(
            spec,
            Identity("cli", "fleet", "run-1", task),
            ledger=ledger,
            cache=cache,
            provider=provider,
            meter_factory=lambda: Meter(
                nvml=fake.backend(), rapl_root=tmp_path / "no-rapl", sample_interval=0.02, environ={}
            ),
        )

    tasks = [f"t{i}" for i in range(20)]
    start = threading.Barrier(len(tasks))
    errors: list[BaseException] = []

    def one(task: str) -> None:
        try:
            life = lifecycle(task)
            decision = life.plan()
            start.wait(timeout=60)
            life.run(decision, time.sleep, 0.1)
        except BaseException as error:  # reported below with the task's name
            errors.append(error)

    threads = [threading.Thread(target=one, args=(t,)) for t in tasks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors

    entries = ledger.entries()
    assert len(entries) == len(tasks)
    assert all(e.intensity_source == "actuals from ukgrid" for e in entries)
    assert all(e.intensity_g_per_kwh == pytest.approx(120.0) for e in entries)
    assert all(e.counterfactual_intensity_g_per_kwh == pytest.approx(120.0) for e in entries)
    requests = _history_requests(grid)
    # Without the cache: two requests per task (the run's actuals and the counterfactual's).
    windows = {(s, e) for s, e in requests}
    assert len(requests) == len(windows), "a window was fetched more than once"
    assert 1 <= len(requests) <= 2  # all runs fall in one hour, or straddle one boundary
    for begin, finish in requests:
        assert begin.minute == 0 and finish.minute == 0  # hour-aligned


def test_a_settled_window_is_kept_long_and_a_recent_one_refetched(grid, retry, clock) -> None:
    provider = UKGridProvider(base_url=grid.url, retry=retry, clock=clock)
    cache = ForecastCache(clock=clock)
    old = (clock.now - timedelta(hours=6), clock.now - timedelta(hours=5, minutes=20))
    recent = (clock.now - timedelta(minutes=40), clock.now - timedelta(minutes=5))

    assert cache.history(provider, "national", *old).mean_intensity(*old)[0] == pytest.approx(120.0)
    assert cache.history(provider, "national", *recent).mean_intensity(*recent)[0] == pytest.approx(120.0)
    assert len(_history_requests(grid)) == 2

    clock.advance(timedelta(minutes=1))
    cache.history(provider, "national", old[0] + timedelta(minutes=10), old[1])  # inside the cached window
    cache.history(provider, "national", *recent)
    assert len(_history_requests(grid)) == 2

    clock.advance(timedelta(minutes=30))  # actuals of the last hour may have been filled in since
    cache.history(provider, "national", *old)
    cache.history(provider, "national", *recent)
    assert len(_history_requests(grid)) == 3
    assert _history_requests(grid)[-1][0] == recent[0].replace(minute=0)


def test_workers_sharing_a_store_fetch_a_window_once(grid, retry, clock) -> None:
    store = InMemorySharedStore(clock=clock)
    window = (clock.now - timedelta(hours=3), clock.now - timedelta(hours=2, minutes=30))
    for _ in range(3):  # three processes, each with its own in-memory layer
        cache = ForecastCache(store, clock=clock)
        series = cache.history(UKGridProvider(base_url=grid.url, retry=retry, clock=clock), "national", *window)
        assert [p.value for p in series.points] == [120.0]
    assert len(_history_requests(grid)) == 1


def test_a_failed_fetch_is_not_cached(api, reply, retry, clock) -> None:
    api.route(HISTORY, reply(400, {"error": {"code": "400", "message": "bad range"}}), reply(200, {"data": []}))
    provider = UKGridProvider(base_url=api.url, retry=retry, clock=clock)
    cache = ForecastCache(clock=clock)
    window = (clock.now - timedelta(hours=3), clock.now - timedelta(hours=2))
    with pytest.raises(ProviderError):
        cache.history(provider, "national", *window)
    assert cache.history(provider, "national", *window).points == ()
    assert len(api.seen(HISTORY)) == 2
