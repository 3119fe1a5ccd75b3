"""The background sampling thread and the trapezoid integration it relies on.

Two kinds of channel are sampled on one thread:

* :class:`RateChannel` reads an instantaneous rate (GPU watts, or GPU utilisation) every tick and
  integrates it online with the trapezoid rule on the samples' own ``time.monotonic`` timestamps, so the
  integral is exact for piecewise-linear power no matter how irregular the ticks are.
* :class:`CounterChannel` polls a cumulative energy counter (RAPL) at least every ``counter_poll_interval``
  seconds. Polling is what makes wraparound safe: a counter read only at the start and the end of a long
  window could wrap more than once in between, and those wraps would be lost.

Windows do not keep samples to get their energy: they take a :class:`Snapshot` (a forced tick) at begin
and end and subtract the running integrals. Samples are kept only to show the shape of the run (for the
time-weighted carbon join); their buffer is bounded by merging the oldest samples pairwise.
"""

from __future__ import annotations

import abc
import bisect
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

DEFAULT_MAX_SAMPLES = 8192


@dataclass(frozen=True)
class ChannelState:
    """A channel at one instant: its running integral and how its reads have gone so far."""

    integral: float
    reads: int
    failures: int
    last_error: str | None


@dataclass(frozen=True)
class Snapshot:
    """All channels at monotonic time ``t`` (taken right after a forced tick)."""

    t: float
    channels: dict[str, ChannelState]


class _SampleBuffer:
    """Time-ordered samples with bounded length: past ``max_len`` the oldest half is merged pairwise."""

    def __init__(self, max_len: int) -> None:
        self.max_len = max(max_len, 4)
        self.times: list[float] = []
        self.values: list[float] = []

    def append(self, t: float, value: float) -> None:
        self.times.append(t)
        self.values.append(value)
        if len(self.times) > self.max_len:
            self._compact()

    def _compact(self) -> None:
        # Merging halves the resolution of the oldest half only: recent samples stay sharp, and the
        # buffer of a day-long window still shows its shape at ~20 s resolution.
        half = (len(self.times) // 2) & ~1
        old_t, old_v = self.times[:half], self.values[:half]
        merged_t = [(old_t[i] + old_t[i + 1]) / 2 for i in range(0, half, 2)]
        merged_v = [(old_v[i] + old_v[i + 1]) / 2 for i in range(0, half, 2)]
        self.times = merged_t + self.times[half:]
        self.values = merged_v + self.values[half:]

    def between(self, t0: float, t1: float) -> tuple[list[float], list[float]]:
        lo = bisect.bisect_left(self.times, t0)
        hi = bisect.bisect_right(self.times, t1)
        return self.times[lo:hi], self.values[lo:hi]

    def discard_before(self, t: float) -> None:
        cut = bisect.bisect_left(self.times, t)
        if cut:
            del self.times[:cut]
            del self.values[:cut]

    def clear(self) -> None:
        self.times.clear()
        self.values.clear()


class _Channel(abc.ABC):
    """State shared by both channel kinds."""

    def __init__(self, key: str, read: Callable[[], float], keep_samples: bool, max_samples: int) -> None:
        self.key = key
        self.read = read
        self.keep_samples = keep_samples
        self.buffer = _SampleBuffer(max_samples)
        self.integral = 0.0
        self.reads = 0
        self.failures = 0
        self.last_error: str | None = None

    def reset(self) -> None:
        self.buffer.clear()

    @abc.abstractmethod
    def sample(self, t: float, force: bool) -> None:
        """Take one reading at monotonic time ``t`` (``force``: even if not due yet)."""

    def _read(self) -> float | None:
        try:
            value = float(self.read())
        except Exception as exc:  # the thread must survive any backend failure; it is reported instead
            self.failures += 1
            self.last_error = f"{exc} ({type(exc).__name__})"
            return None
        self.reads += 1
        return value

    def state(self) -> ChannelState:
        return ChannelState(self.integral, self.reads, self.failures, self.last_error)


class RateChannel(_Channel):
    """An instantaneous rate (W, or a utilisation share) integrated online with the trapezoid rule."""

    def __init__(
        self,
        key: str,
        read: Callable[[], float],
        *,
        keep_samples: bool = True,
        max_samples: int = DEFAULT_MAX_SAMPLES,
    ) -> None:
        super().__init__(key, read, keep_samples, max_samples)
        self._last: tuple[float, float] | None = None

    def reset(self) -> None:
        # Never integrate across a stretch where the sampler was stopped.
        super().reset()
        self._last = None

    def sample(self, t: float, force: bool) -> None:
        # The hot path of the sampling thread: kept flat, since its cost is the meter's overhead.
        try:
            value = float(self.read())
        except Exception as exc:  # the thread must survive any backend failure; it is reported instead
            self.failures += 1
            self.last_error = f"{exc} ({type(exc).__name__})"
            return  # a failed read is skipped: the next good sample interpolates across the gap
        self.reads += 1
        last = self._last
        if last is not None:
            self.integral += (last[1] + value) / 2.0 * (t - last[0])
        self._last = (t, value)
        if self.keep_samples:
            self.buffer.append(t, value)


class CounterChannel(_Channel):
    """A cumulative energy counter in joules, polled at least every ``poll_interval`` seconds.

    ``read`` returns a total that only grows (the RAPL reader already corrects wraparound between two
    reads); the channel's integral is the energy since the sampler started.
    """

    def __init__(
        self,
        key: str,
        read: Callable[[], float],
        *,
        poll_interval: float = 1.0,
        max_samples: int = DEFAULT_MAX_SAMPLES,
    ) -> None:
        super().__init__(key, read, True, max_samples)
        self.poll_interval = poll_interval
        self._first: float | None = None
        self._last: tuple[float, float] | None = None

    def reset(self) -> None:
        super().reset()
        self._last = None

    def sample(self, t: float, force: bool) -> None:
        if not force and self._last is not None and t - self._last[0] < self.poll_interval:
            return
        total = self._read()
        if total is None:
            return
        if self._first is None:
            self._first = total
        self.integral = total - self._first
        if self._last is not None and t > self._last[0]:
            last_t, last_total = self._last
            # The mean power between two polls, placed at their midpoint: the trace of a counter.
            self.buffer.append((last_t + t) / 2.0, (total - last_total) / (t - last_t))
        self._last = (t, total)


Channel = RateChannel | CounterChannel


class Sampler:
    """Samples every channel on one daemon thread while at least one window is open.

    ``interval`` is the tick period for rate channels (GPU power); when there are none the thread wakes
    only for counter polls. Ticks are scheduled against absolute deadlines so they do not drift; a tick
    that overran is skipped, not queued.
    """

    def __init__(
        self,
        channels: Sequence[Channel],
        interval: float,
        *,
        counter_poll_interval: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
        name: str = "greenflow-meter",
    ) -> None:
        self.channels = {c.key: c for c in channels}
        self.interval = interval
        self.counter_poll_interval = counter_poll_interval
        self._now = monotonic
        self._name = name
        self._lock = threading.Lock()
        # Held while the thread runs; stop() releases it, which wakes the thread at once. A bare lock
        # acquire with a timeout costs the waking thread about half what Event.wait does, and the
        # wake-up is most of what an idle tick costs.
        self._wake = threading.Lock()
        self._thread: threading.Thread | None = None
        has_rates = any(isinstance(c, RateChannel) for c in channels)
        self._period = interval if has_rates else min(counter_poll_interval, interval * 10)

    @property
    def running(self) -> bool:
        """True while the background thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start sampling (no-op when already running or when there is nothing to sample)."""
        with self._lock:
            if self._thread is not None or not self.channels:
                return
            for channel in self.channels.values():
                channel.reset()
            self._wake.acquire()
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it (it wakes at once)."""
        thread = self._thread
        if thread is None:
            return
        self._wake.release()
        thread.join()
        with self._lock:
            self._thread = None

    def tick(self, force: bool = False) -> float:
        """Sample every channel now; returns the monotonic time of the tick."""
        with self._lock:
            t = self._now()
            for channel in self.channels.values():
                channel.sample(t, force)
            return t

    def snapshot(self) -> Snapshot:
        """A forced tick, then every channel's state: the boundary of a window."""
        with self._lock:
            t = self._now()
            for channel in self.channels.values():
                channel.sample(t, True)
            return Snapshot(t, {key: c.state() for key, c in self.channels.items()})

    def samples(self, key: str, t0: float, t1: float) -> tuple[list[float], list[float]]:
        """The kept samples of one channel with ``t0 <= t <= t1``."""
        with self._lock:
            return self.channels[key].buffer.between(t0, t1)

    def discard_before(self, t: float) -> None:
        """Drop kept samples older than ``t`` (no open window needs them)."""
        with self._lock:
            for channel in self.channels.values():
                channel.buffer.discard_before(t)

    def _run(self) -> None:
        deadline = self._now() + self._period
        while not self._wake.acquire(True, max(0.0, deadline - self._now())):
            self.tick()
            deadline += self._period
            now = self._now()
            if deadline < now:
                deadline = now + self._period
        self._wake.release()


# -- integration -----------------------------------------------------------------------------------
def trapezoid(times: Sequence[float], values: Sequence[float]) -> float:
    """∫ values dt over the samples with the trapezoid rule (exact for piecewise-linear signals)."""
    return sum((values[i] + values[i + 1]) / 2.0 * (times[i + 1] - times[i]) for i in range(len(times) - 1))


def integrate_between(times: Sequence[float], values: Sequence[float], a: float, b: float) -> float:
    """∫ over [a, b] of the piecewise-linear curve through the samples, held constant beyond its ends.

    Used to bin a trace into slots whose edges fall between samples: the value at an edge is
    interpolated, so splitting [a, b] anywhere gives parts that add up to the whole.
    """
    if b <= a or not times:
        return 0.0
    if len(times) == 1:
        return values[0] * (b - a)
    total = 0.0
    if a < times[0]:
        total += values[0] * (min(b, times[0]) - a)
    if b > times[-1]:
        total += values[-1] * (b - max(a, times[-1]))
    lo, hi = max(a, times[0]), min(b, times[-1])
    if hi > lo:
        start = max(bisect.bisect_right(times, lo) - 1, 0)
        for i in range(start, len(times) - 1):
            t0, t1 = times[i], times[i + 1]
            if t0 >= hi:
                break
            seg_a, seg_b = max(t0, lo), min(t1, hi)
            if seg_b <= seg_a or t1 == t0:
                continue
            slope = (values[i + 1] - values[i]) / (t1 - t0)
            va = values[i] + slope * (seg_a - t0)
            vb = values[i] + slope * (seg_b - t0)
            total += (va + vb) / 2.0 * (seg_b - seg_a)
    return total
