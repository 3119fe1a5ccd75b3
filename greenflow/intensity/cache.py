"""The forecast cache: a thousand waiting tasks cost one API call per region per provider refresh.

Two layers, keyed by (provider, region, signal) with the provider's ``refresh_interval`` as TTL:

* in-process: a dict guarded by one lock per key, so concurrent misses for a key make **one** request
  (the others wait on the lock and then read the fresh entry);
* shared (optional): a :class:`SharedForecastStore`, e.g. the ledger database, so that workers on many
  machines share a fetch. A lease names the one process that fetches; the others poll the store.

Failed fetches are not cached; the last good forecast is kept (even past its TTL) for the outage policy.

Actual intensity (:meth:`ForecastCache.history`, what the lifecycle charges a finished run with) goes
through the same two layers, keyed by (provider, region, signal, hour-aligned window): a thousand tasks
finishing together cost one request per window. So do the forecasts a provider issued for past slots
(:meth:`ForecastCache.issued_history`, what a forecast correction learns from), under their own keys.
Settled history barely changes, so a window that ended well before it was fetched is kept for a day;
one touching the last hours, whose actuals may still be filled in, only for a few minutes.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal, Protocol

from greenflow.clock import require_aware, utcnow
from greenflow.errors import InvalidInput
from greenflow.intensity.forecast import Forecast
from greenflow.intensity.providers.base import IntensityProvider, IssuedHistoryProvider, check_hours, history_window

log = logging.getLogger("greenflow.intensity.cache")
Source = Literal["memory", "shared", "provider"]
# Actuals of a window that ended this long before they were fetched are taken as settled.
HISTORY_SETTLED_AFTER = timedelta(hours=2)


class SharedForecastStore(Protocol):
    """Storage shared by every process (the ledger database implements it)."""

    def load(self, key: str) -> tuple[Forecast, datetime] | None:
        """The stored forecast for ``key`` and when it was fetched, or ``None``."""
        ...

    def save(self, key: str, forecast: Forecast, fetched_at: datetime) -> None:
        """Store ``forecast`` for ``key`` (replacing any older one)."""
        ...

    def try_lease(self, key: str, owner: str, until: datetime) -> bool:
        """Take the fetch lease for ``key`` until ``until``: true if free, expired, or already ``owner``'s."""
        ...

    def release_lease(self, key: str, owner: str) -> None:
        """Give the lease back (only if ``owner`` holds it)."""
        ...


@dataclass(frozen=True)
class CachedForecast:
    """A forecast with where it came from and when it was fetched (the age the outage policy checks)."""

    key: str
    forecast: Forecast
    fetched_at: datetime
    source: Source

    def age(self, now: datetime) -> timedelta:
        """How long ago the forecast was fetched."""
        return require_aware(now, "now") - self.fetched_at


def cache_key(provider: IntensityProvider, region: str) -> str:
    """``provider|region|signal`` (plus the provider's ``cache_scope``, e.g. the emission-factor type).

    ``region`` must already be normalised by ``provider.validate_region``.
    """
    scope = getattr(provider, "cache_scope", "")
    key = f"{provider.name}|{region}|{provider.signal}"
    return f"{key}|{scope}" if scope else key


@dataclass(frozen=True)
class _Entry:
    cached: CachedForecast
    hours: float


class ForecastCache:
    """Thread-safe two-layer forecast cache with single-flight fetching; :meth:`aget` serves asyncio.

    ``fetch_hours`` is the horizon asked of providers (at least what the caller wants), so callers with
    different horizons share one fetch. ``lease_time`` bounds how long other processes wait for the lease
    holder before fetching themselves. ``recent_history_ttl`` and ``settled_history_ttl`` are how long
    :meth:`history` keeps a window whose actuals may still change, and one that is settled.
    """

    def __init__(
        self,
        shared: SharedForecastStore | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
        owner: str | None = None,
        fetch_hours: float = 48,
        lease_time: timedelta = timedelta(seconds=60),
        poll_interval: float = 0.25,
        recent_history_ttl: timedelta = timedelta(minutes=5),
        settled_history_ttl: timedelta = timedelta(hours=24),
    ) -> None:
        self.shared = shared
        self.owner = owner or f"greenflow-{uuid.uuid4().hex[:12]}"
        self._clock = clock
        self._fetch_hours = check_hours(fetch_hours, "cache")
        self._lease_time = lease_time
        self._poll = poll_interval
        self._recent_history_ttl = recent_history_ttl
        self._settled_history_ttl = settled_history_ttl
        self._entries: dict[str, _Entry] = {}
        self._history: dict[str, _HistoryEntry] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.fetches: Counter[str] = Counter()
        """Provider requests made per key (how a test sees that N callers cost one fetch)."""

    # -- public --------------------------------------------------------------------------------------
    def get(
        self, provider: IntensityProvider, region: str, *, start: datetime | None = None, hours: float = 48
    ) -> CachedForecast:
        """The forecast for (provider, region), fresh within the provider's TTL, restricted to the window.

        The window is [start, start + hours) with start defaulting to now. Raises whatever the provider
        raises on a failed fetch (:class:`~greenflow.errors.ProviderError` for outages), caching nothing.
        """
        region = provider.validate_region(region)
        hours = check_hours(hours, "cache")
        key = cache_key(provider, region)
        ttl = provider.refresh_interval
        if ttl <= timedelta(0):
            # Providers without a cadence (replayed traces) are asked every time.
            cached = self._fetch(provider, region, key, start=start, hours=hours)
            return cached
        cached = self._fresh(key, ttl, hours) or self._locked_get(provider, region, key, ttl, hours)
        return self._window(cached, start, hours)

    async def aget(
        self, provider: IntensityProvider, region: str, *, start: datetime | None = None, hours: float = 48
    ) -> CachedForecast:
        """:meth:`get` from an event loop (an Airflow trigger): runs in a thread, never blocks the loop."""
        import asyncio  # here: a module-level import costs every `greenflow run` ~15 ms

        return await asyncio.to_thread(self.get, provider, region, start=start, hours=hours)

    def history(self, provider: IntensityProvider, region: str, start: datetime, end: datetime) -> Forecast:
        """Actual intensity over [start, end) from ``provider.history``, fetched once per hour-aligned window.

        The request is widened to whole hours, so runs that end together share a window; a cached window
        that covers the request serves it too. Raises what the provider raises, caching nothing.
        """
        return self._past("history", provider.history, provider, region, start, end)

    def issued_history(self, provider: IntensityProvider, region: str, start: datetime, end: datetime) -> Forecast:
        """The forecasts ``provider`` issued for the past slots in [start, end), cached as :meth:`history` is.

        What a forecast correction compares the actuals with: the tasks planning in the same hour share
        one fetch (per process, and through the shared store across processes). Raises
        :class:`~greenflow.errors.InvalidInput` for a provider that does not serve them.
        """
        if not isinstance(provider, IssuedHistoryProvider):
            raise InvalidInput(
                f"provider {provider.name!r} does not publish the forecasts it issued for past slots",
                fix="use a provider that does (ukgrid national, a trace of forecast snapshots) or turn "
                "forecast_correction off",
            )
        return self._past("issued", provider.issued_history, provider, region, start, end)

    def _past(
        self,
        kind: str,
        fetch_past: Callable[[str, datetime, datetime], Forecast],
        provider: IntensityProvider,
        region: str,
        start: datetime,
        end: datetime,
    ) -> Forecast:
        region = provider.validate_region(region)
        start, end = history_window(start, end)
        base = f"{kind}|{cache_key(provider, region)}"
        if provider.refresh_interval <= timedelta(0):
            # Providers without a cadence (replayed traces) are asked every time, as for forecasts.
            with self._guard:
                self.fetches[base] += 1
            return fetch_past(region, start, end)
        begin, finish = _floor_hour(start), _ceil_hour(end)
        key = f"{base}|{begin:%Y%m%dT%H%MZ}|{finish:%Y%m%dT%H%MZ}"
        cached = self._fresh_history(base, start, end)
        if cached is None:
            with self._key_lock(key):
                # Another thread may have fetched while this one waited for the lock.
                cached = self._fresh_history(base, start, end)
                if cached is None:
                    fetch = functools.partial(self._fetch_history, fetch_past, region, key, base, begin, finish)
                    if self.shared is None:
                        cached = fetch()
                    else:
                        cached = self._through_shared(
                            key, functools.partial(self._load_history, key, base, begin, finish), fetch
                        )
        return cached.forecast.between(start, end)

    def last_good(self, provider: IntensityProvider, region: str) -> CachedForecast | None:
        """The newest forecast ever fetched for the key, however old (the outage policy judges its age)."""
        region = provider.validate_region(region)
        key = cache_key(provider, region)
        with self._guard:
            entry = self._entries.get(key)
        best = entry.cached if entry else None
        if self.shared is not None:
            stored = self._load_shared(key)
            if stored is not None and (best is None or stored[1] > best.fetched_at):
                best = CachedForecast(key, stored[0], require_aware(stored[1], "fetched_at"), "shared")
        return best

    def invalidate(self, provider: IntensityProvider, region: str) -> None:
        """Forget the in-process entry for (provider, region)."""
        key = cache_key(provider, provider.validate_region(region))
        with self._guard:
            self._entries.pop(key, None)

    # -- internals -------------------------------------------------------------------------------------
    def _load_shared(self, key: str) -> tuple[Forecast, datetime] | None:
        """The shared store's copy, or ``None`` when it holds none or one that fails today's checks.

        A copy saved by an older greenflow may hold a value now refused as malformed (NaN, negative):
        it is treated as absent and fetched again, never planned on.
        """
        assert self.shared is not None
        try:
            return self.shared.load(key)
        except InvalidInput as error:
            log.warning("greenflow: ignoring the shared cache's copy of %s: %s", key, error.message)
            return None

    def _key_lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def _fresh(self, key: str, ttl: timedelta, hours: float) -> CachedForecast | None:
        with self._guard:
            entry = self._entries.get(key)
        if entry and entry.hours >= hours and self._clock() - entry.cached.fetched_at < ttl:
            return replace(entry.cached, source="memory")
        return None

    def _locked_get(
        self, provider: IntensityProvider, region: str, key: str, ttl: timedelta, hours: float
    ) -> CachedForecast:
        with self._key_lock(key):
            # Another thread may have fetched while this one waited for the lock.
            cached = self._fresh(key, ttl, hours)
            if cached is not None:
                return cached
            if self.shared is None:
                return self._fetch_and_keep(provider, region, key, hours)
            return self._shared_get(provider, region, key, ttl, hours)

    def _shared_get(
        self, provider: IntensityProvider, region: str, key: str, ttl: timedelta, hours: float
    ) -> CachedForecast:
        return self._through_shared(
            key,
            functools.partial(self._load_fresh, key, ttl, hours),
            functools.partial(self._fetch_and_keep, provider, region, key, hours),
        )

    def _through_shared(
        self, key: str, load: Callable[[], CachedForecast | None], fetch: Callable[[], CachedForecast]
    ) -> CachedForecast:
        """The shared store's fresh copy, else one process fetches under the lease while the others wait."""
        assert self.shared is not None
        shared = self.shared
        stored = load()
        if stored is not None:
            return stored
        give_up = time.monotonic() + self._lease_time.total_seconds()
        while True:
            if shared.try_lease(key, self.owner, self._clock() + self._lease_time):
                try:
                    # The previous holder may have saved between our load and our lease.
                    stored = load()
                    if stored is not None:
                        return stored
                    cached = fetch()
                    shared.save(key, cached.forecast, cached.fetched_at)
                    return cached
                finally:
                    shared.release_lease(key, self.owner)
            # Someone else is fetching: wait for their result rather than calling the API too.
            time.sleep(self._poll)
            stored = load()
            if stored is not None:
                return stored
            if time.monotonic() >= give_up:
                # The holder is stuck or gone and its lease has not expired yet: fetch anyway.
                cached = fetch()
                shared.save(key, cached.forecast, cached.fetched_at)
                return cached

    def _load_fresh(self, key: str, ttl: timedelta, hours: float) -> CachedForecast | None:
        assert self.shared is not None
        stored = self._load_shared(key)
        if stored is None:
            return None
        forecast, fetched_at = stored
        fetched_at = require_aware(fetched_at, "fetched_at")
        if self._clock() - fetched_at >= ttl:
            return None
        cached = CachedForecast(key, forecast, fetched_at, "shared")
        # A shared entry's horizon is unknown; trust it for this request and keep it locally.
        self._keep(key, cached, hours)
        return cached

    def _fetch(
        self, provider: IntensityProvider, region: str, key: str, *, start: datetime | None, hours: float
    ) -> CachedForecast:
        with self._guard:
            self.fetches[key] += 1
        forecast = provider.forecast(region, start=start, hours=hours)
        return CachedForecast(key, forecast, self._clock(), "provider")

    def _fetch_and_keep(self, provider: IntensityProvider, region: str, key: str, hours: float) -> CachedForecast:
        wanted = max(hours, self._fetch_hours)
        cached = self._fetch(provider, region, key, start=None, hours=wanted)
        self._keep(key, cached, wanted)
        return cached

    def _keep(self, key: str, cached: CachedForecast, hours: float) -> None:
        with self._guard:
            self._entries[key] = _Entry(cached, hours)

    def _window(self, cached: CachedForecast, start: datetime | None, hours: float) -> CachedForecast:
        begin = self._clock() if start is None else require_aware(start, "start")
        window = cached.forecast.between(begin, begin + timedelta(hours=hours))
        return CachedForecast(cached.key, window, cached.fetched_at, cached.source)

    def _history_ttl(self, fetched_at: datetime, finish: datetime) -> timedelta:
        settled = fetched_at - finish >= HISTORY_SETTLED_AFTER
        return self._settled_history_ttl if settled else self._recent_history_ttl

    def _fresh_history(self, base: str, start: datetime, end: datetime) -> CachedForecast | None:
        now = self._clock()
        with self._guard:
            entries = list(self._history.values())
        for entry in entries:
            if (
                entry.base == base
                and entry.begin <= start
                and entry.finish >= end
                and now - entry.cached.fetched_at < self._history_ttl(entry.cached.fetched_at, entry.finish)
            ):
                return replace(entry.cached, source="memory")
        return None

    def _fetch_history(
        self,
        fetch_past: Callable[[str, datetime, datetime], Forecast],
        region: str,
        key: str,
        base: str,
        begin: datetime,
        finish: datetime,
    ) -> CachedForecast:
        with self._guard:
            self.fetches[key] += 1
        # The whole window, even when it ends in the next hour (as the lifecycle's own request already
        # did): runs ending minutes apart then share it, and providers answer with what they have.
        actual = fetch_past(region, begin, finish)
        cached = CachedForecast(key, actual, self._clock(), "provider")
        self._keep_history(_HistoryEntry(base, begin, finish, cached))
        return cached

    def _load_history(self, key: str, base: str, begin: datetime, finish: datetime) -> CachedForecast | None:
        assert self.shared is not None
        stored = self._load_shared(key)
        if stored is None:
            return None
        fetched_at = require_aware(stored[1], "fetched_at")
        if self._clock() - fetched_at >= self._history_ttl(fetched_at, finish):
            return None
        cached = CachedForecast(key, stored[0], fetched_at, "shared")
        self._keep_history(_HistoryEntry(base, begin, finish, cached))
        return cached

    def _keep_history(self, entry: _HistoryEntry) -> None:
        with self._guard:
            now = self._clock()
            # Drop expired windows so a long-lived worker does not accumulate every window it ever saw.
            for stale in [
                k
                for k, e in self._history.items()
                if now - e.cached.fetched_at >= self._history_ttl(e.cached.fetched_at, e.finish)
            ]:
                del self._history[stale]
            self._history[entry.cached.key] = entry


@dataclass(frozen=True)
class _HistoryEntry:
    base: str
    begin: datetime
    finish: datetime
    cached: CachedForecast


def _floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _ceil_hour(moment: datetime) -> datetime:
    floor = _floor_hour(moment)
    return floor if floor == moment else floor + timedelta(hours=1)


class InMemorySharedStore:
    """A :class:`SharedForecastStore` in one process's memory (tests, single-host setups)."""

    def __init__(self, clock: Callable[[], datetime] = utcnow) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._data: dict[str, tuple[Forecast, datetime]] = {}
        self._leases: dict[str, tuple[str, datetime]] = {}
        self.saves = 0

    def load(self, key: str) -> tuple[Forecast, datetime] | None:
        """See :meth:`SharedForecastStore.load`."""
        with self._lock:
            return self._data.get(key)

    def save(self, key: str, forecast: Forecast, fetched_at: datetime) -> None:
        """See :meth:`SharedForecastStore.save`; an older ``fetched_at`` never replaces a newer one."""
        with self._lock:
            current = self._data.get(key)
            if current is None or fetched_at >= current[1]:
                self._data[key] = (forecast, fetched_at)
                self.saves += 1

    def try_lease(self, key: str, owner: str, until: datetime) -> bool:
        """See :meth:`SharedForecastStore.try_lease`."""
        with self._lock:
            held = self._leases.get(key)
            if held is None or held[0] == owner or held[1] <= self._clock():
                self._leases[key] = (owner, until)
                return True
            return False

    def release_lease(self, key: str, owner: str) -> None:
        """See :meth:`SharedForecastStore.release_lease`."""
        with self._lock:
            if self._leases.get(key, ("", None))[0] == owner:
                del self._leases[key]
