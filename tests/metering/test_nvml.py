"""The NVML seam: reference-counted init, no-GPU reasons, and which power reading is used.

Fakes are autospecs of the real nvidia-ml-py functions raising its real NVMLError_* classes; one test
uses the real library unmocked.
"""

from __future__ import annotations

import sys

import pynvml
import pytest

from greenflow.metering import Meter, NvmlBackend, NvmlUnavailable
from greenflow.testing.fake_nvml import FakeGpu, FakeNvml


def test_the_fake_is_an_autospec_of_the_real_library() -> None:
    fake = FakeNvml([FakeGpu("GPU-1")])
    # A call with the wrong arity fails as it would against the real library.
    with pytest.raises(TypeError):
        fake.module.nvmlDeviceGetTotalEnergyConsumption()
    assert fake.module.NVMLError_NotSupported is pynvml.NVMLError_NotSupported


def test_nvml_is_initialised_once_for_many_meters_and_shut_down_after_the_last(no_rapl: str) -> None:
    fake = FakeNvml([FakeGpu("GPU-1")])
    backend = fake.backend()
    first = Meter(nvml=backend, environ={}, rapl_root=no_rapl)
    second = Meter(nvml=backend, environ={}, rapl_root=no_rapl)
    assert fake.calls("nvmlInit") == 1
    first.close()
    first.close()  # closing twice gives back one hold only
    assert fake.calls("nvmlShutdown") == 0
    with second.window("still works") as w:
        pass
    assert w.measurement is not None and w.measurement.gpu.kwh is not None
    second.close()
    assert fake.calls("nvmlShutdown") == 1
    assert fake.initialised == 0


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (pynvml.NVMLError_LibraryNotFound, "NVMLError_LibraryNotFound"),
        (pynvml.NVMLError_DriverNotLoaded, "driver is not loaded"),
        (pynvml.NVMLError_NoPermission, "NVMLError_NoPermission"),
        (pynvml.NVMLError_Unknown, "NVML failed to initialise"),
    ],
)
def test_without_a_usable_gpu_the_meter_says_why(error: type[pynvml.NVMLError], words: str, no_rapl: str) -> None:
    fake = FakeNvml([FakeGpu("GPU-1")], init_error=error)
    with Meter(nvml=fake.backend(), environ={}, rapl_root=no_rapl) as meter:
        assert meter.setup.gpu.method is None
        assert words in (meter.setup.gpu.reason or "")
        with meter.window("w") as w:
            pass
    assert w.measurement is not None
    assert w.measurement.gpu.kwh is None
    assert words in (w.measurement.gpu.reason or "")
    assert fake.calls("nvmlShutdown") == 0  # nothing to shut down: init never succeeded


def test_zero_devices_is_reported_and_nvml_released(no_rapl: str) -> None:
    fake = FakeNvml([])
    with Meter(nvml=fake.backend(), environ={}, rapl_root=no_rapl) as meter:
        assert meter.setup.gpu.reason == "NVML reports no GPU on this host"
        assert fake.initialised == 0


def test_an_empty_cuda_visible_devices_does_not_even_touch_nvml(no_rapl: str) -> None:
    fake = FakeNvml([FakeGpu("GPU-1")])
    with Meter(nvml=fake.backend(), environ={"CUDA_VISIBLE_DEVICES": ""}, rapl_root=no_rapl) as meter:
        meter.begin_window("w")
        m = meter.end_window("w")
    assert fake.calls("nvmlInit") == 0
    assert m.gpu.kwh is None
    assert m.gpu.reason == "no GPU selected (CUDA_VISIBLE_DEVICES is empty)"


def test_instant_power_comes_from_the_field_value_api() -> None:
    fake = FakeNvml([FakeGpu("GPU-1", power_w=234.5)])
    backend = fake.backend()
    backend.acquire()
    handle = backend.handle_by_index(0)
    assert backend.instant_power_mw(handle) == 234_500
    call = fake.module.nvmlDeviceGetFieldValues.call_args
    assert call.args[1] == [pynvml.NVML_FI_DEV_POWER_INSTANT]
    backend.release()


def test_a_field_the_gpu_lacks_raises_the_real_not_supported_error() -> None:
    fake = FakeNvml([FakeGpu("GPU-1", instant_field=False)])
    backend = fake.backend()
    backend.acquire()
    with pytest.raises(pynvml.NVMLError_NotSupported):
        backend.instant_power_mw(backend.handle_by_index(0))
    backend.release()


def test_without_the_instant_field_power_usage_is_sampled_instead(no_rapl: str) -> None:
    fake = FakeNvml(
        [FakeGpu("GPU-1", instant_field=False, unsupported=frozenset({"nvmlDeviceGetTotalEnergyConsumption"}))]
    )
    with Meter(nvml=fake.backend(), environ={}, rapl_root=no_rapl, sample_interval=0.01) as m, m.window("w") as w:
        pass
    assert w.measurement is not None
    assert w.measurement.gpu.method == "nvml_power_sampling"
    assert fake.calls("nvmlDeviceGetPowerUsage") >= 2


def test_nvml_missing_as_a_package_is_a_reason_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes `import pynvml` raise ImportError, as on a host without it.
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with pytest.raises(NvmlUnavailable, match=r"pip install 'greenflow-carbon\[nvidia\]'"):
        NvmlBackend().acquire()


def test_unmocked_real_nvml_reports_no_gpu_and_the_meter_falls_back(no_rapl: str, real_gpus: tuple[int, str]) -> None:
    if real_gpus[0]:
        pytest.skip("this machine has a GPU; the gpu-marked tests cover it")
    with Meter(environ={}, rapl_root=no_rapl, cpu_tdp_watts=120.0) as meter, meter.window("cpu only") as w:
        # Long enough (~0.1 s of CPU) to register in the process's CPU time, which ticks every 10 ms.
        sum(i * i for i in range(2_000_000))
    m = w.measurement
    assert m is not None
    assert m.gpu.kwh is None
    assert "NVMLError_LibraryNotFound" in (m.gpu.reason or "")
    assert m.cpu.method == "estimate"
    assert m.cpu.kwh is not None and m.cpu.kwh > 0
    assert "no RAPL" in (m.cpu.reason or "")
