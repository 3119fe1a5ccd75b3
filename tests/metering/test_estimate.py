"""The labelled CPU estimate: TDP x this process's share of the host's CPUs."""

from __future__ import annotations

import os
import time

import pytest

from greenflow.errors import InvalidInput
from greenflow.metering import Meter
from greenflow.metering.estimate import cpu_tdp, estimate_cpu, estimate_gpu_kwh
from greenflow.testing.fake_nvml import FakeNvml


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def estimated(no_rapl: str, work: float, busy: bool) -> tuple[float, float]:
    """(estimated joules, TDP x this process's CPU seconds / logical CPUs, measured around the window)."""
    with Meter(nvml=FakeNvml([]).backend(), environ={}, rapl_root=no_rapl, cpu_tdp_watts=100.0) as meter:
        before = cpu_seconds()
        with meter.window("w") as w:
            end = time.perf_counter() + work
            while busy and time.perf_counter() < end:
                pass
            if not busy:
                time.sleep(work)
        used = cpu_seconds() - before
    m = w.measurement
    assert m is not None and m.cpu.kwh is not None
    assert m.cpu.method == "estimate"
    return m.cpu.kwh * 3.6e6, 100.0 * used / (os.cpu_count() or 1)


def test_a_busy_process_is_estimated_at_its_share_of_the_tdp(no_rapl: str) -> None:
    joules, expected = estimated(no_rapl, 0.2, busy=True)
    # os.times ticks at 10 ms; the window sits inside the span the test measured.
    assert expected * 0.8 - 1.0 < joules <= expected + 1.0
    assert joules > 0


def test_a_sleeping_process_is_estimated_far_lower_than_a_busy_one(no_rapl: str) -> None:
    assert estimated(no_rapl, 0.1, busy=False)[0] < estimated(no_rapl, 0.1, busy=True)[0] / 5


def test_without_rapl_or_tdp_the_cpu_has_no_number_and_says_how_to_get_one(no_rapl: str) -> None:
    with Meter(nvml=FakeNvml([]).backend(), environ={}, rapl_root=no_rapl) as meter, meter.window("w") as w:
        pass
    assert w.measurement is not None
    assert w.measurement.cpu.kwh is None
    assert "set cpu_tdp_watts or GREENFLOW_CPU_TDP_W for an estimate" in (w.measurement.cpu.reason or "")


def test_the_tdp_comes_from_the_environment_and_is_validated() -> None:
    assert cpu_tdp(None, {"GREENFLOW_CPU_TDP_W": "205"}) == 205.0
    assert cpu_tdp(None, {}) is None
    assert cpu_tdp(65.0, {"GREENFLOW_CPU_TDP_W": "205"}) == 65.0
    with pytest.raises(InvalidInput, match="GREENFLOW_CPU_TDP_W='lots' is not a number"):
        cpu_tdp(None, {"GREENFLOW_CPU_TDP_W": "lots"})
    with pytest.raises(InvalidInput, match="GREENFLOW_CPU_TDP_W='0' must be > 0"):
        cpu_tdp(None, {"GREENFLOW_CPU_TDP_W": "0"})


def test_the_estimates_are_what_their_labels_say() -> None:
    est = estimate_cpu(200.0, cpu_seconds=30.0, duration_s=10.0, logical_cpus=8)
    assert est.share == pytest.approx(30.0 / 80.0)
    assert est.kwh == pytest.approx(200.0 * 0.375 * 10.0 / 3.6e6)
    # More CPU time than the host has (clock skew, children) never exceeds the TDP.
    assert estimate_cpu(200.0, cpu_seconds=999.0, duration_s=10.0, logical_cpus=8).share == 1.0
    assert estimate_gpu_kwh(400.0, 0.25, 3600.0) == pytest.approx(0.1)
