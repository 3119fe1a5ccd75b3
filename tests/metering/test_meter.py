"""The windows API: begin/end, context manager, decorator, nesting, overlap, idle baseline, errors."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC

import pytest

from greenflow.errors import InvalidInput
from greenflow.metering import IdleBaseline, Measurement, Meter
from greenflow.testing.fake_nvml import FakeGpu, FakeNvml

J = 1 / 3.6e6
NO_COUNTER = frozenset({"nvmlDeviceGetTotalEnergyConsumption"})


def sampled_meter(no_rapl: str, watts: float = 100.0, **kwargs: object) -> Meter:
    """A meter on one GPU drawing constant ``watts`` with no energy counter (so energy = sampled power)."""
    fake = FakeNvml([FakeGpu("GPU-a", power_w=watts, unsupported=NO_COUNTER)])
    return Meter(nvml=fake.backend(), environ={}, rapl_root=no_rapl, sample_interval=0.01, **kwargs)  # type: ignore[arg-type]


def sampler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "greenflow-meter"]


def test_nested_windows_each_get_their_own_energy(no_rapl: str) -> None:
    with sampled_meter(no_rapl) as meter:
        meter.begin_window("outer")
        time.sleep(0.05)
        with meter.window("inner") as inner:
            time.sleep(0.05)
        time.sleep(0.05)
        outer = meter.end_window("outer")
    assert inner.measurement is not None
    assert outer.start < inner.measurement.start < inner.measurement.end < outer.end
    for m in (outer, inner.measurement):
        assert m.gpu.kwh == pytest.approx(100.0 * m.duration_s * J, rel=1e-3)


def test_overlapping_windows_end_in_any_order(no_rapl: str) -> None:
    with sampled_meter(no_rapl) as meter:
        meter.begin_window("a")
        time.sleep(0.03)
        meter.begin_window("b")
        time.sleep(0.03)
        a = meter.end_window("a")
        time.sleep(0.03)
        b = meter.end_window("b")
    assert a.start < b.start < a.end < b.end
    assert a.gpu.kwh == pytest.approx(100.0 * a.duration_s * J, rel=1e-3)
    assert b.gpu.kwh == pytest.approx(100.0 * b.duration_s * J, rel=1e-3)


def test_the_sampling_thread_runs_only_while_a_window_is_open(no_rapl: str) -> None:
    with sampled_meter(no_rapl) as meter:
        assert sampler_threads() == []
        meter.begin_window("w")
        assert len(sampler_threads()) == 1
        meter.end_window("w")
        assert sampler_threads() == []


def test_the_context_manager_records_energy_even_when_the_block_raises(no_rapl: str) -> None:
    meter = sampled_meter(no_rapl)
    with pytest.raises(RuntimeError, match="task failed"), meter.window("failing") as w:
        time.sleep(0.02)
        raise RuntimeError("task failed")
    meter.close()
    assert w.measurement is not None
    assert w.measurement.gpu.kwh is not None and w.measurement.gpu.kwh > 0


def test_the_decorator_meters_every_call_including_concurrent_ones(no_rapl: str) -> None:
    results: list[Measurement] = []
    with sampled_meter(no_rapl) as meter:

        @meter.measure("predict", on_result=results.append)
        def predict(x: int) -> int:
            time.sleep(0.03)
            return x * 2

        threads = [threading.Thread(target=predict, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert predict(21) == 42
        assert meter.last_measurement("predict") is results[-1]
    assert len(results) == 4
    assert {m.name for m in results} == {"predict"}
    assert all(m.gpu.kwh is not None and m.gpu.kwh > 0 for m in results)


def test_window_names_must_be_unique_while_open_and_known_when_ended(no_rapl: str) -> None:
    with sampled_meter(no_rapl) as meter:
        meter.begin_window("train")
        with pytest.raises(InvalidInput, match="'train' is already open"):
            meter.begin_window("train")
        with pytest.raises(InvalidInput, match=r"no open window 'eval' \(open: 'train'\)"):
            meter.end_window("eval")
        assert meter.open_windows == ("train",)
        meter.end_window("train")
        with pytest.raises(InvalidInput, match="window name '' is not a non-empty string"):
            meter.begin_window("")


def test_a_closed_meter_refuses_new_windows(no_rapl: str) -> None:
    meter = sampled_meter(no_rapl)
    meter.close()
    with pytest.raises(InvalidInput, match="closed"):
        meter.begin_window("late")


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"sample_interval": 0}, "sample_interval=0"),
        ({"sample_interval": 120}, "sample_interval=120"),
        ({"mig_fraction": 1.5}, "mig_fraction=1.5"),
        ({"mig_fraction": 0}, "mig_fraction=0"),
        ({"cpu_tdp_watts": -5}, "cpu_tdp_watts=-5"),
        ({"idle_baseline": {"gpus": 50.0}}, "unknown components"),
        ({"idle_baseline": {"gpu": -1.0}}, "negative"),
    ],
)
def test_bad_settings_fail_early_naming_the_value(kwargs: dict[str, object], words: str, no_rapl: str) -> None:
    with pytest.raises(InvalidInput, match=words):
        Meter(nvml=FakeNvml([]).backend(), environ={}, rapl_root=no_rapl, **kwargs)  # type: ignore[arg-type]


def test_a_bad_tdp_in_the_environment_names_the_variable(no_rapl: str) -> None:
    with pytest.raises(InvalidInput, match="GREENFLOW_CPU_TDP_W='lots'"):
        Meter(nvml=FakeNvml([]).backend(), environ={"GREENFLOW_CPU_TDP_W": "lots"}, rapl_root=no_rapl)


def test_a_declared_idle_baseline_gives_active_energy_next_to_gross(no_rapl: str) -> None:
    with sampled_meter(no_rapl, watts=100.0, idle_baseline={"gpu": 40.0}) as meter, meter.window("w") as w:
        time.sleep(0.05)
    m = w.measurement
    assert m is not None and m.gpu.kwh is not None
    assert m.gpu.active_kwh == pytest.approx(60.0 * m.duration_s * J, rel=1e-3)
    assert m.gpu.idle_watts == 40.0
    assert m.idle_baseline is not None and m.idle_baseline.source == "declared"
    assert m.active_kwh == m.gpu.active_kwh


def test_an_idle_baseline_above_the_measured_power_is_clamped_with_a_warning(no_rapl: str) -> None:
    baseline = IdleBaseline(gpu_watts=150.0)
    with sampled_meter(no_rapl, watts=100.0, idle_baseline=baseline) as meter, meter.window("w") as w:
        time.sleep(0.02)
    assert w.measurement is not None
    assert w.measurement.gpu.active_kwh == 0.0
    assert any("exceeds its mean power" in x for x in w.measurement.warnings)


def test_measure_idle_measures_mean_power_and_says_how(no_rapl: str) -> None:
    with sampled_meter(no_rapl, watts=55.0) as meter:
        baseline = meter.measure_idle(0.1)
    assert baseline.source == "measured"
    assert baseline.gpu_watts == pytest.approx(55.0, rel=1e-3)
    assert baseline.cpu_watts is None  # not measurable here, and not 0
    assert "mean power over 0.1 s" in baseline.detail
    assert baseline.measured_at is not None


def test_measurements_are_aware_utc_keep_power_traces_and_survive_json(no_rapl: str) -> None:
    with sampled_meter(no_rapl) as meter, meter.window("w") as w:
        time.sleep(0.05)
    m = w.measurement
    assert m is not None
    assert m.start.tzinfo is UTC and m.end.tzinfo is UTC
    (trace,) = m.traces
    assert trace.component == "gpu" and trace.device == "GPU-a"
    assert len(trace.samples) >= 3
    assert all(m.start <= s.at <= m.end for s in trace.samples)
    assert m.traces[0].samples[0].at == m.start
    again = Measurement.from_dict(json.loads(json.dumps(m.to_dict())))
    assert again == m


def test_long_windows_keep_a_bounded_trace_but_exact_energy(no_rapl: str) -> None:
    with sampled_meter(no_rapl, max_samples=16) as meter, meter.window("w") as w:
        time.sleep(0.4)
    m = w.measurement
    assert m is not None
    samples = m.traces[0].samples
    assert len(samples) <= 17
    # Old samples are merged; the most recent ones keep the sampling interval.
    assert (samples[-1].at - samples[-2].at).total_seconds() < 0.05
    assert m.gpu.kwh == pytest.approx(100.0 * m.duration_s * J, rel=1e-3)


def test_a_measurement_never_reports_zero_for_not_measured() -> None:
    from greenflow.metering import ComponentEnergy

    with pytest.raises(InvalidInput, match="no energy and no reason"):
        ComponentEnergy(kwh=None, method=None, reason=None)
    with pytest.raises(InvalidInput, match="negative"):
        ComponentEnergy(kwh=-1.0, method="rapl", reason=None)
