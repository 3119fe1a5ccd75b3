"""On a real NVIDIA GPU (skipped elsewhere): a matrix-multiply load reads more energy per second than idle."""

from __future__ import annotations

import time

import pytest

from greenflow.metering import Meter


@pytest.mark.gpu
def test_a_matmul_load_reads_more_energy_per_second_than_idle() -> None:
    torch = pytest.importorskip("torch", reason="torch is needed to put a load on the GPU")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device")
    a = torch.randn(8192, 8192, device="cuda")
    b = torch.randn(8192, 8192, device="cuda")
    with Meter(gpu_indices=[0]) as meter:
        with meter.window("idle") as idle:
            time.sleep(3.0)
        with meter.window("load") as load:
            end = time.monotonic() + 3.0
            while time.monotonic() < end:
                _ = a @ b
                torch.cuda.synchronize()
    assert idle.measurement is not None and load.measurement is not None
    assert idle.measurement.gpu.kwh is not None and load.measurement.gpu.kwh is not None
    idle_w = idle.measurement.gpu.kwh * 3.6e6 / idle.measurement.duration_s
    load_w = load.measurement.gpu.kwh * 3.6e6 / load.measurement.duration_s
    assert load.measurement.gpu.method in ("nvml_energy_counter", "nvml_power_sampling")
    assert load_w > idle_w
