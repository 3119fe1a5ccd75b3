"""The Measurement record: totals that never count a missing component, and a lossless JSON form."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from greenflow.errors import InvalidInput
from greenflow.metering import ComponentEnergy, Measurement, Meter
from greenflow.testing.fake_nvml import FakeGpu, FakeNvml

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def test_total_counts_only_measured_components_and_names_the_missing_ones() -> None:
    m = Measurement(
        name="w",
        start=T0,
        end=T0 + timedelta(minutes=1),
        gpu=ComponentEnergy(0.5, "nvml_energy_counter", None),
        cpu=ComponentEnergy(0.25, "estimate", "no RAPL; estimate: CPU TDP 100 W x 10% of the host's CPUs"),
        dram=ComponentEnergy.missing("no RAPL dram domain"),
        host="h",
    )
    assert m.total_kwh == 0.75
    assert m.missing == ("dram",)
    assert m.duration_s == 60.0
    assert m.active_kwh is None


def test_nothing_measured_totals_to_none_not_zero() -> None:
    missing = ComponentEnergy.missing("no device")
    m = Measurement(name="w", start=T0, end=T0, gpu=missing, cpu=missing, dram=missing, host="h")
    assert m.total_kwh is None
    assert m.missing == ("gpu", "cpu", "dram")


def test_naive_or_reversed_times_are_refused() -> None:
    missing = ComponentEnergy.missing("no device")
    with pytest.raises(InvalidInput, match="naive"):
        Measurement(name="w", start=datetime(2024, 5, 1), end=T0, gpu=missing, cpu=missing, dram=missing, host="h")  # noqa: DTZ001
    with pytest.raises(InvalidInput, match="ends before it starts"):
        Measurement(name="w", start=T0, end=T0 - timedelta(seconds=1), gpu=missing, cpu=missing, dram=missing, host="h")


def test_a_full_measurement_survives_a_json_round_trip(rapl_server) -> None:
    mig = "MIG-11111111-aaaa-bbbb-cccc-000000000001"
    fake = FakeNvml([FakeGpu("GPU-a", mig_mode=True, mig_uuids=(mig,))])
    with Meter(
        nvml=fake.backend(),
        environ={"CUDA_VISIBLE_DEVICES": mig},
        rapl_root=rapl_server.root,
        mig_fraction=0.5,
        idle_baseline={"gpu": 10.0, "cpu": 1.0},
        sample_interval=0.01,
    ) as meter:
        meter.begin_window("w")
        rapl_server.add("intel-rapl:0", 5_000_000)
        m = meter.end_window("w")
    assert m.gpu.apportioned and m.cpu.method == "rapl" and m.idle_baseline is not None
    assert Measurement.from_dict(json.loads(json.dumps(m.to_dict()))) == m
