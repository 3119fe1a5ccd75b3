"""GPU energy through the meter: counter deltas, fallbacks, estimates, several GPUs and MIG."""

from __future__ import annotations

import time

import pynvml
import pytest

from greenflow.metering import Meter
from greenflow.metering.gpu import COUNTER_BACKWARDS, SHORT_WINDOW
from greenflow.testing.fake_nvml import FakeGpu, FakeNvml

J = 1 / 3.6e6  # kWh per joule
NO_COUNTER = frozenset({"nvmlDeviceGetTotalEnergyConsumption"})
NO_POWER = frozenset({"nvmlDeviceGetPowerUsage"})
MIG_1 = "MIG-11111111-aaaa-bbbb-cccc-000000000001"


def meter(fake: FakeNvml, no_rapl: str, **kwargs: object) -> Meter:
    kwargs.setdefault("environ", {})
    kwargs.setdefault("sample_interval", 0.01)
    return Meter(nvml=fake.backend(), rapl_root=no_rapl, **kwargs)  # type: ignore[arg-type]


def run(m: Meter, seconds: float = 0.0):
    with m.window("job") as w:
        if seconds:
            time.sleep(seconds)
    m.close()
    assert w.measurement is not None
    return w.measurement


def test_counter_deltas_of_several_gpus_are_summed_with_a_breakdown(no_rapl: str) -> None:
    # Readings in call order: probe when the meter is built, window start, window end.
    fake = FakeNvml(
        [
            FakeGpu("GPU-a", energy_mj=[9_000_000, 9_000_000, 12_600_000]),  # 3600 J
            FakeGpu("GPU-b", energy_mj=[100, 100, 7_200_100]),  # 7200 J
        ]
    )
    m = run(meter(fake, no_rapl))
    assert m.gpu.method == "nvml_energy_counter"
    assert m.gpu.kwh == pytest.approx(10_800 * J)
    assert [(d.device, d.kwh) for d in m.gpu.devices] == [
        ("GPU-a", pytest.approx(3600 * J)),
        ("GPU-b", pytest.approx(7200 * J)),
    ]
    assert m.gpu_uuids == ("GPU-a", "GPU-b")
    assert m.gpu.apportioned is False


def test_a_window_shorter_than_the_counter_update_period_is_flagged(no_rapl: str) -> None:
    short = run(meter(FakeNvml([FakeGpu("GPU-a")]), no_rapl))
    assert SHORT_WINDOW in short.warnings
    long = run(meter(FakeNvml([FakeGpu("GPU-a")]), no_rapl), seconds=0.12)
    assert SHORT_WINDOW not in long.warnings


def test_a_counter_that_goes_backwards_falls_back_to_power_sampling(no_rapl: str) -> None:
    fake = FakeNvml([FakeGpu("GPU-a", power_w=150.0, energy_mj=[5_000_000, 5_000_000, 1_000])])
    m = run(meter(fake, no_rapl), seconds=0.2)
    assert m.gpu.method == "nvml_power_sampling"
    assert f"GPU-a: {COUNTER_BACKWARDS}" in m.warnings
    # Constant power: the trapezoid over the window's own samples is exact.
    assert m.gpu.kwh == pytest.approx(150.0 * m.duration_s * J, rel=1e-3)


def test_a_counter_unreadable_at_the_end_falls_back_and_says_why(no_rapl: str) -> None:
    gpu = FakeGpu("GPU-a", power_w=80.0)
    fake = FakeNvml([gpu])
    mtr = meter(fake, no_rapl)
    mtr.begin_window("job")
    gpu.errors["nvmlDeviceGetTotalEnergyConsumption"] = pynvml.NVMLError_GpuIsLost
    m = mtr.end_window("job")
    mtr.close()
    assert m.gpu.method == "nvml_power_sampling"
    assert any("energy counter unreadable" in w and "NVMLError_GpuIsLost" in w for w in m.warnings)


def test_without_a_counter_power_is_sampled_and_integrated(no_rapl: str) -> None:
    fake = FakeNvml([FakeGpu("GPU-a", power_w=lambda t: 100.0 + 200.0 * t, unsupported=NO_COUNTER)])
    m = run(meter(fake, no_rapl), seconds=0.3)
    assert m.gpu.method == "nvml_power_sampling"
    assert "NVMLError_NotSupported" in (m.gpu.reason or "")
    reads = fake.gpus[0].power_reads
    first, last = reads[-len(m.traces[0].samples)][0], reads[-1][0]
    # A ramp is piecewise linear: the trapezoid is exact between the first and last sample.
    expected = 100.0 * (last - first) + 100.0 * (last**2 - first**2)
    assert m.gpu.kwh == pytest.approx(expected * J, rel=1e-3)


def test_power_reads_that_fail_mid_window_are_bridged_and_reported(no_rapl: str) -> None:
    def flaky(t: float) -> float:
        if int(t * 100) % 3 == 0:
            raise pynvml.NVMLError_Unknown()
        return 120.0

    fake = FakeNvml([FakeGpu("GPU-a", unsupported=NO_COUNTER)])
    mtr = meter(fake, no_rapl)
    fake.gpus[0].power_w = flaky
    m = run(mtr, seconds=0.2)
    assert m.gpu.method == "nvml_power_sampling"
    assert any("power read(s) failed" in w for w in m.warnings)
    assert m.gpu.kwh == pytest.approx(120.0 * m.duration_s * J, rel=0.15)


def test_without_counter_or_power_the_gpu_is_estimated_from_limit_and_utilisation(no_rapl: str) -> None:
    fake = FakeNvml(
        [FakeGpu("GPU-a", instant_field=False, unsupported=NO_COUNTER | NO_POWER, limit_w=300.0, utilization=0.4)]
    )
    m = run(meter(fake, no_rapl), seconds=0.1)
    assert m.gpu.method == "estimate"
    assert m.gpu.kwh == pytest.approx(300.0 * 0.4 * m.duration_s * J, rel=1e-3)
    assert "estimate: power limit 300 W x mean utilisation 40%" in (m.gpu.reason or "")


def test_with_nothing_readable_the_gpu_has_no_number_and_every_reason(no_rapl: str) -> None:
    everything = NO_COUNTER | NO_POWER | {"nvmlDeviceGetEnforcedPowerLimit", "nvmlDeviceGetUtilizationRates"}
    fake = FakeNvml([FakeGpu("GPU-a", instant_field=False, unsupported=frozenset(everything))])
    m = run(meter(fake, no_rapl))
    assert m.gpu.kwh is None
    reason = m.gpu.reason or ""
    assert "energy counter unavailable" in reason
    assert "power unreadable" in reason
    assert "no estimate" in reason
    assert m.total_kwh is None


def test_one_unmeasurable_gpu_leaves_the_component_without_a_partial_sum(no_rapl: str) -> None:
    dead = FakeGpu("GPU-b", instant_field=False, unsupported=frozenset(NO_COUNTER | NO_POWER))
    dead.errors["nvmlDeviceGetUtilizationRates"] = pynvml.NVMLError_NotSupported
    fake = FakeNvml([FakeGpu("GPU-a"), dead])
    m = run(meter(fake, no_rapl), seconds=0.05)
    assert m.gpu.kwh is None
    assert (m.gpu.reason or "").startswith("1 of 2 GPUs not measured")
    assert m.gpu.devices[0].kwh is not None  # the measured GPU stays in the breakdown


def test_only_the_visible_gpus_are_metered(no_rapl: str) -> None:
    fake = FakeNvml([FakeGpu("GPU-a", power_w=100.0), FakeGpu("GPU-b", power_w=300.0)])
    m = run(meter(fake, no_rapl, environ={"CUDA_VISIBLE_DEVICES": "GPU-b"}))
    assert m.gpu_uuids == ("GPU-b",)
    assert [d.device for d in m.gpu.devices] == ["GPU-b"]


def test_a_mig_slice_is_charged_its_declared_fraction_of_the_whole_gpu(no_rapl: str) -> None:
    fake = FakeNvml([FakeGpu("GPU-a", mig_mode=True, mig_uuids=(MIG_1,), energy_mj=[0, 0, 7_000_000])])
    m = run(meter(fake, no_rapl, environ={"CUDA_VISIBLE_DEVICES": MIG_1}, mig_fraction=1 / 7))
    assert m.gpu_uuids == (MIG_1,)
    assert m.gpu.apportioned is True
    assert m.gpu.kwh == pytest.approx(1000 * J)
    device = m.gpu.devices[0]
    assert device.whole_device_kwh == pytest.approx(7000 * J)
    assert device.fraction == pytest.approx(1 / 7)


def test_a_mig_slice_without_a_declared_fraction_is_not_charged_the_whole_gpu(no_rapl: str) -> None:
    fake = FakeNvml([FakeGpu("GPU-a", mig_mode=True, mig_uuids=(MIG_1,), energy_mj=[0, 0, 7_000_000])])
    m = run(meter(fake, no_rapl, environ={"CUDA_VISIBLE_DEVICES": MIG_1}))
    assert m.gpu.kwh is None
    assert "mig_fraction" in (m.gpu.reason or "")
    assert m.gpu.devices[0].whole_device_kwh == pytest.approx(7000 * J)


def test_a_whole_gpu_in_mig_mode_warns_that_other_tenants_are_included(no_rapl: str) -> None:
    fake = FakeNvml([FakeGpu("GPU-a", mig_mode=True, mig_uuids=(MIG_1,))])
    m = run(meter(fake, no_rapl))
    assert any("in MIG mode but selected whole" in w for w in m.warnings)


def test_setup_tells_the_plan_before_any_window(no_rapl: str) -> None:
    fake = FakeNvml([FakeGpu("GPU-a"), FakeGpu("GPU-b", unsupported=NO_COUNTER)])
    with meter(fake, no_rapl) as mtr:
        setup = mtr.setup
    assert setup.gpu.method == "nvml_power_sampling"
    assert setup.gpu.devices == ("GPU-a", "GPU-b")
    assert setup.sample_interval == 0.01


def test_a_visible_device_that_does_not_exist_leaves_the_gpu_unmeasured_and_says_which(no_rapl: str) -> None:
    fake = FakeNvml([FakeGpu("GPU-a")])
    m = run(meter(fake, no_rapl, environ={"CUDA_VISIBLE_DEVICES": "3", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}))
    assert m.gpu.kwh is None
    assert m.gpu.reason == (
        "none of the GPUs in CUDA_VISIBLE_DEVICES='3' exists on this host: CUDA_VISIBLE_DEVICES='3': "
        "GPU index 3 does not exist (NVML sees 1 GPU(s)); it and every entry after it are not metered"
    )
    assert fake.initialised == 0  # NVML was released since there is nothing to read


def test_a_backwards_counter_without_power_readings_falls_back_to_the_estimate_and_says_so(no_rapl: str) -> None:
    gpu = FakeGpu("GPU-a", energy_mj=[5_000, 5_000, 10], instant_field=False, unsupported=NO_POWER, utilization=1.0)
    m = run(meter(FakeNvml([gpu]), no_rapl), seconds=0.05)
    assert m.gpu.method == "estimate"
    assert "GPU-a: energy counter went backwards (driver reload?): fell back to an estimate" in m.warnings
