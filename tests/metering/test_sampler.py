"""Integration accuracy on known power traces (steps, ramps, noise) and the sampler's bookkeeping.

Sampling runs through the real :class:`Sampler` and :class:`RateChannel` with a fake clock, at the
default 100 ms with jittered tick times, so the error measured is the one the meter makes.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from greenflow.metering import Meter
from greenflow.metering.sampler import RateChannel, Sampler, integrate_between, trapezoid
from greenflow.testing.fake_nvml import FakeGpu, FakeNvml

INTERVAL = 0.1


def sampled_energy(power: Callable[[float], float], duration: float, seed: int) -> tuple[float, float, float]:
    """Sample ``power`` like the meter does for ``duration`` s; returns (energy, first t, last t)."""
    rng = random.Random(seed)
    clock = [0.0]
    channel = RateChannel("gpu:x", lambda: power(clock[0]))
    sampler = Sampler([channel], INTERVAL, monotonic=lambda: clock[0])
    first = sampler.snapshot()
    while clock[0] < duration - INTERVAL:
        # Thread ticks land late by up to 30 ms (scheduling); the integral uses their real times.
        clock[0] += INTERVAL + rng.uniform(0.0, 0.03)
        sampler.tick()
    clock[0] = duration
    last = sampler.snapshot()
    return last.channels["gpu:x"].integral - first.channels["gpu:x"].integral, first.t, last.t


def step_trace(levels: list[float], durations: list[float]) -> tuple[Callable[[float], float], float]:
    edges = [0.0]
    for d in durations:
        edges.append(edges[-1] + d)

    def power(t: float) -> float:
        for level, end in zip(levels, edges[1:], strict=True):
            if t < end:
                return level
        return levels[-1]

    return power, edges[-1]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.floats(50, 400), st.floats(15, 60)), min_size=2, max_size=8),
    st.integers(0, 2**16),
)
def test_steps_integrate_within_one_percent(steps: list[tuple[float, float]], seed: int) -> None:
    # Each step costs at most its height x half a sample interval; phases of >= 15 s keep that < 1%.
    levels, durations = [s[0] for s in steps], [s[1] for s in steps]
    power, total = step_trace(levels, durations)
    energy, _, _ = sampled_energy(power, total, seed)
    exact = sum(level * d for level, d in steps)
    assert abs(energy - exact) / exact < 0.01


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(30, 450), min_size=3, max_size=10), st.floats(2, 30), st.integers(0, 2**16))
def test_ramps_integrate_within_one_percent(knots: list[float], segment: float, seed: int) -> None:
    total = segment * (len(knots) - 1)

    def power(t: float) -> float:
        i = min(int(t / segment), len(knots) - 2)
        frac = (t - i * segment) / segment
        return knots[i] + (knots[i + 1] - knots[i]) * frac

    energy, _, _ = sampled_energy(power, total, seed)
    exact = sum((a + b) / 2 * segment for a, b in itertools.pairwise(knots))
    assert abs(energy - exact) / exact < 0.01


@pytest.mark.parametrize("seed", range(5))
def test_noisy_training_like_power_integrates_within_one_percent(seed: int) -> None:
    # Iterations at ~1.7 Hz between 180 and 320 W, plus a random walk, built at 1 ms resolution.
    rng = random.Random(seed)
    fine = 0.001
    n = int(120 / fine)
    walk, level = [], 0.0
    for _ in range(n + 1):
        level = max(-40.0, min(40.0, level + rng.gauss(0, 0.5)))
        walk.append(level)

    def power(t: float) -> float:
        i = min(int(t / fine), n)
        return 250 + 70 * math.sin(2 * math.pi * 1.7 * t) + walk[i]

    energy, _, _ = sampled_energy(power, 120.0, seed)
    exact = trapezoid([i * fine for i in range(n + 1)], [power(i * fine) for i in range(n + 1)])
    assert abs(energy - exact) / exact < 0.01


def test_the_meter_thread_integrates_a_live_trace_within_one_percent(tmp_path) -> None:
    def power(t: float) -> float:
        return 200.0 + 100.0 * math.sin(2 * math.pi * t)  # 1 Hz

    gpu = FakeGpu("GPU-a", power_w=power, unsupported=frozenset({"nvmlDeviceGetTotalEnergyConsumption"}))
    fake = FakeNvml([gpu])
    with Meter(nvml=fake.backend(), environ={}, rapl_root=tmp_path / "none", sample_interval=0.01) as meter:
        gpu.power_reads.clear()
        with meter.window("w") as w:
            time.sleep(0.5)
    m = w.measurement
    assert m is not None and m.gpu.kwh is not None
    t0, t1 = gpu.power_reads[0][0], gpu.power_reads[-1][0]
    k = 2 * math.pi
    exact = 200.0 * (t1 - t0) - 100.0 / k * (math.cos(k * t1) - math.cos(k * t0))
    assert m.gpu.method == "nvml_power_sampling"
    assert abs(m.gpu.kwh * 3.6e6 - exact) / exact < 0.01
    assert len(gpu.power_reads) > 10  # the thread really sampled, not just the two boundaries


def test_a_failed_read_is_skipped_and_counted() -> None:
    clock = [0.0]
    values = iter([100.0, None, 100.0])

    def read() -> float:
        value = next(values)
        if value is None:
            raise OSError("device busy")
        return value

    channel = RateChannel("gpu:x", read)
    sampler = Sampler([channel], 1.0, monotonic=lambda: clock[0])
    first = sampler.snapshot()
    clock[0] = 1.0
    sampler.tick()
    clock[0] = 2.0
    last = sampler.snapshot()
    state = last.channels["gpu:x"]
    assert state.integral - first.channels["gpu:x"].integral == pytest.approx(200.0)
    assert state.failures == 1 and state.last_error == "device busy (OSError)"


def test_integrate_between_splits_add_up_and_match_the_trapezoid() -> None:
    times = [0.0, 1.0, 2.5, 4.0]
    watts = [100.0, 300.0, 200.0, 200.0]
    whole = trapezoid(times, watts)
    assert integrate_between(times, watts, 0.0, 4.0) == pytest.approx(whole)
    parts = [integrate_between(times, watts, a, b) for a, b in ((0.0, 0.7), (0.7, 3.1), (3.1, 4.0))]
    assert sum(parts) == pytest.approx(whole)
    # Outside the samples the ends are held constant.
    assert integrate_between(times, watts, -2.0, 0.0) == pytest.approx(200.0)
    assert integrate_between(times, watts, 4.0, 5.0) == pytest.approx(200.0)
