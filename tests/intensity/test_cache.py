"""The forecast cache: single flight, TTL, the shared layer and its lease, asyncio access."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from greenflow.errors import ProviderError
from greenflow.intensity.cache import ForecastCache, InMemorySharedStore, cache_key
from greenflow.intensity.forecast import Forecast, ForecastPoint
from greenflow.intensity.providers.base import ProviderUnavailable
from greenflow.intensity.providers.trace import TraceProvider
from greenflow.intensity.providers.ukgrid import UKGridProvider

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


class CountingProvider:
    """A provider whose forecast takes ``delay`` seconds and counts the calls; ``fail`` makes it raise."""

    name = "counting"
    signal = "average"
    refresh_interval = timedelta(minutes=30)

    def __init__(self, clock, delay: float = 0.0) -> None:
        self.clock = clock
        self.delay = delay
        self.calls = 0
        self.fail = False
        self._lock = threading.Lock()

    def validate_region(self, region: str) -> str:
        return region.strip().upper()

    def forecast(self, region, *, start=None, hours=48):
        with self._lock:
            self.calls += 1
        time.sleep(self.delay)
        if self.fail:
            raise ProviderUnavailable("counting unreachable", fix="wait")
        begin = self.clock()
        points = tuple(
            ForecastPoint(begin + timedelta(minutes=30 * i), begin + timedelta(minutes=30 * (i + 1)), 100.0 + i)
            for i in range(int(hours * 2))
        )
        return Forecast(region=region, provider=self.name, signal="average", generated_at=begin, points=points)

    def history(self, region, start, end):
        raise AssertionError("the forecast cache must never ask for history")


@pytest.fixture
def provider(clock):
    return CountingProvider(clock)


def test_concurrent_misses_make_one_request(clock):
    slow = CountingProvider(clock, delay=0.2)
    cache = ForecastCache(clock=clock)
    barrier = threading.Barrier(24)
    results = []

    def worker():
        barrier.wait()
        results.append(cache.get(slow, "gb", hours=12))

    threads = [threading.Thread(target=worker) for _ in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert slow.calls == 1
    assert cache.fetches[cache_key(slow, "GB")] == 1
    assert len(results) == 24 and len({r.forecast.content_hash() for r in results}) == 1


def test_concurrent_callers_cost_one_real_http_request(api, reply, retry, clock):
    entries = [
        {
            "from": (NOW + timedelta(minutes=30 * i)).strftime("%Y-%m-%dT%H:%MZ"),
            "to": (NOW + timedelta(minutes=30 * (i + 1))).strftime("%Y-%m-%dT%H:%MZ"),
            "intensity": {"forecast": 150 + i, "index": "moderate"},
        }
        for i in range(96)
    ]
    api.route(r"/intensity/.+/fw48h", reply(200, {"data": entries}, delay=0.2))
    ukgrid = UKGridProvider(base_url=api.url, retry=retry, clock=clock)
    cache = ForecastCache(clock=clock)
    threads = [threading.Thread(target=cache.get, args=(ukgrid, region)) for region in ["GB", "national"] * 10]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(api.requests) == 1  # "GB" and "national" are one region once normalised


def test_ttl_is_the_provider_refresh_interval(provider, clock):
    cache = ForecastCache(clock=clock)
    first = cache.get(provider, "GB")
    assert first.source == "provider"
    clock.advance(timedelta(minutes=29))
    assert cache.get(provider, "GB").source == "memory"
    assert provider.calls == 1
    clock.advance(timedelta(minutes=2))
    refreshed = cache.get(provider, "GB")
    assert provider.calls == 2 and refreshed.source == "provider" and refreshed.fetched_at == clock()


def test_served_forecast_starts_at_now_or_the_asked_start(provider, clock):
    provider.refresh_interval = timedelta(hours=2)
    cache = ForecastCache(clock=clock)
    cache.get(provider, "GB")
    clock.advance(timedelta(minutes=20))
    later = cache.get(provider, "GB", hours=2)
    assert later.forecast.points[0].start == NOW  # the running slot, nothing before it
    assert later.forecast.end == NOW + timedelta(hours=2, minutes=30)
    clock.advance(timedelta(minutes=15))
    assert cache.get(provider, "GB", hours=1).forecast.points[0].start == NOW + timedelta(minutes=30)
    window = cache.get(provider, "GB", start=NOW + timedelta(hours=10), hours=1)
    assert [p.start for p in window.forecast.points] == [
        NOW + timedelta(hours=10),
        NOW + timedelta(hours=10.5),
    ]
    assert provider.calls == 1


def test_a_longer_horizon_than_cached_is_fetched(provider, clock):
    cache = ForecastCache(clock=clock, fetch_hours=24)
    cache.get(provider, "GB", hours=6)
    cache.get(provider, "GB", hours=24)
    assert provider.calls == 1
    long = cache.get(provider, "GB", hours=48)
    assert provider.calls == 2 and long.forecast.end == NOW + timedelta(hours=48)


def test_failures_are_not_cached_but_the_last_good_forecast_is_kept(provider, clock):
    cache = ForecastCache(clock=clock)
    good = cache.get(provider, "GB")
    clock.advance(timedelta(hours=1))
    provider.fail = True
    with pytest.raises(ProviderError):
        cache.get(provider, "GB")
    with pytest.raises(ProviderError):
        cache.get(provider, "GB")
    assert provider.calls == 3
    last = cache.last_good(provider, "gb")
    assert last is not None and last.fetched_at == good.fetched_at
    assert last.age(clock()) == timedelta(hours=1)


def test_shared_store_spares_other_processes_the_request(provider, clock):
    store = InMemorySharedStore(clock)
    worker_a = ForecastCache(store, clock=clock, owner="a")
    worker_b = ForecastCache(store, clock=clock, owner="b")
    worker_a.get(provider, "GB")
    from_b = worker_b.get(provider, "GB")
    assert provider.calls == 1 and from_b.source == "shared"
    assert worker_b.get(provider, "GB").source == "memory"
    clock.advance(timedelta(minutes=31))
    worker_b.get(provider, "GB")
    assert provider.calls == 2 and store.saves == 2


def test_a_held_lease_makes_others_wait_for_the_result_instead_of_fetching(provider, clock):
    store = InMemorySharedStore(clock)
    assert store.try_lease(cache_key(provider, "GB"), "other-host", clock() + timedelta(minutes=1))
    waiting = ForecastCache(store, clock=clock, owner="me", poll_interval=0.02)
    result = []
    thread = threading.Thread(target=lambda: result.append(waiting.get(provider, "GB")))
    thread.start()
    time.sleep(0.15)
    assert not result  # still waiting on the other host
    fetched = CountingProvider(clock).forecast("GB")
    store.save(cache_key(provider, "GB"), fetched, clock())
    store.release_lease(cache_key(provider, "GB"), "other-host")
    thread.join(timeout=5)
    assert result and result[0].source == "shared"
    assert provider.calls == 0


def test_a_stuck_lease_holder_does_not_block_forever(provider, clock):
    store = InMemorySharedStore(clock)
    store.try_lease(cache_key(provider, "GB"), "dead-host", clock() + timedelta(hours=1))
    cache = ForecastCache(store, clock=clock, lease_time=timedelta(seconds=0.2), poll_interval=0.02)
    started = time.monotonic()
    result = cache.get(provider, "GB")
    assert result.source == "provider" and provider.calls == 1
    assert time.monotonic() - started < 2
    assert store.load(cache_key(provider, "GB")) is not None


def test_an_expired_lease_is_taken_over(provider, clock):
    store = InMemorySharedStore(clock)
    key = cache_key(provider, "GB")
    store.try_lease(key, "dead-host", clock() + timedelta(seconds=30))
    assert not store.try_lease(key, "me", clock() + timedelta(minutes=1))
    clock.advance(timedelta(seconds=31))
    assert store.try_lease(key, "me", clock() + timedelta(minutes=1))
    store.release_lease(key, "dead-host")  # not the holder any more: no effect
    assert not store.try_lease(key, "third", clock() + timedelta(minutes=1))


def test_aget_from_an_event_loop_makes_one_request(clock):
    slow = CountingProvider(clock, delay=0.1)
    cache = ForecastCache(clock=clock)

    async def many():
        return await asyncio.gather(*(cache.aget(slow, "GB") for _ in range(10)))

    results = asyncio.run(many())
    assert len(results) == 10 and slow.calls == 1


def test_replayed_traces_are_never_cached(clock):
    trace = TraceProvider(region="ES", now="2022-06-01T00:00Z")
    cache = ForecastCache(clock=clock)
    first = cache.get(trace, "ES", hours=1)
    trace.set_now("2022-06-02T00:00Z")
    second = cache.get(trace, "ES", hours=1)
    assert first.forecast.points[0].start != second.forecast.points[0].start
    assert cache.fetches[cache_key(trace, "ES")] == 2


def test_keys_separate_providers_regions_and_scopes(provider):
    other = CountingProvider(provider.clock)
    other.cache_scope = "direct"
    assert cache_key(provider, "GB") == "counting|GB|average"
    assert cache_key(other, "GB") == "counting|GB|average|direct"
