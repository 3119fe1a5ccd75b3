"""The forecast cache's shared layer on the ledger: many processes, one provider request per refresh."""

from __future__ import annotations

import multiprocessing
import time
import traceback
from datetime import UTC, datetime, timedelta

from greenflow.intensity.cache import ForecastCache
from greenflow.intensity.forecast import Forecast, ForecastPoint
from greenflow.ledger import Ledger
from greenflow.ledger.forecast_store import LedgerForecastStore

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _forecast(value: float = 100.0, generated_at: datetime = NOW) -> Forecast:
    points = tuple(
        ForecastPoint(NOW + timedelta(minutes=30 * i), NOW + timedelta(minutes=30 * (i + 1)), value + i)
        for i in range(96)
    )
    return Forecast(region="GB", provider="fleet", signal="average", generated_at=generated_at, points=points)


def test_save_and_load_round_trip(ledger: Ledger) -> None:
    store = LedgerForecastStore(ledger)
    assert store.load("fleet|GB|average") is None
    store.save("fleet|GB|average", _forecast(), NOW)
    forecast, fetched_at = store.load("fleet|GB|average") or (None, None)
    assert forecast == _forecast()
    assert fetched_at == NOW


def test_an_older_fetch_never_replaces_a_newer_one(ledger: Ledger) -> None:
    store = LedgerForecastStore(ledger)
    store.save("k", _forecast(200.0), NOW + timedelta(minutes=5))
    store.save("k", _forecast(100.0), NOW)
    loaded = store.load("k")
    assert loaded is not None and loaded[0].points[0].value == 200.0


def test_lease_is_exclusive_until_released_or_expired(ledger: Ledger) -> None:
    now = [NOW]
    store = LedgerForecastStore(ledger, clock=lambda: now[0])
    assert store.try_lease("k", "worker-a", NOW + timedelta(seconds=60))
    assert not store.try_lease("k", "worker-b", NOW + timedelta(seconds=60))
    assert store.try_lease("k", "worker-a", NOW + timedelta(seconds=90))  # the holder may renew
    store.release_lease("k", "worker-b")  # not b's to release
    assert not store.try_lease("k", "worker-b", NOW + timedelta(seconds=60))
    now[0] = NOW + timedelta(seconds=91)  # a stuck holder's lease runs out
    assert store.try_lease("k", "worker-b", NOW + timedelta(seconds=150))
    store.release_lease("k", "worker-b")
    assert store.try_lease("k", "worker-c", NOW + timedelta(seconds=200))


class _SlowCountingProvider:
    name = "fleet"
    signal = "average"
    refresh_interval = timedelta(minutes=30)

    def __init__(self, counter: multiprocessing.sharedctypes.Synchronized[int]) -> None:  # type: ignore[name-defined]
        self.counter = counter

    def validate_region(self, region: str) -> str:
        return region

    def forecast(self, region: str, *, start: datetime | None = None, hours: float = 48) -> Forecast:
        with self.counter.get_lock():
            self.counter.value += 1
        time.sleep(0.5)  # a slow provider: everyone else must wait for this fetch, not start their own
        return _forecast()


def _ask(url: str, counter, barrier, results) -> None:  # type: ignore[no-untyped-def]
    try:
        ledger = Ledger(url, create_if_empty=False)
        cache = ForecastCache(LedgerForecastStore(ledger), poll_interval=0.05)
        barrier.wait()
        cached = cache.get(_SlowCountingProvider(counter), "GB", start=NOW, hours=24)
        results.put(cached.forecast.points[0].value)
        ledger.close()
    except BaseException:  # report it: a child's traceback is otherwise lost
        results.put(traceback.format_exc())


def test_eight_worker_processes_share_one_provider_request(ledger_url: str) -> None:
    Ledger(ledger_url).close()
    # spawn, not fork: a test worker may have threads (caches, servers) whose locks a fork would copy.
    context = multiprocessing.get_context("spawn")
    counter = context.Value("i", 0)
    barrier, results = context.Barrier(8), context.Queue()
    processes = [context.Process(target=_ask, args=(ledger_url, counter, barrier, results)) for _ in range(8)]
    for process in processes:
        process.start()
    values = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    assert values == [100.0] * 8
    assert counter.value == 1
