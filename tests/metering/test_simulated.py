"""Simulated GPU power: a declared draw over the represented time, labelled ``simulated`` from meter to report."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from greenflow.errors import InvalidInput
from greenflow.intensity.cache import ForecastCache
from greenflow.intensity.providers.trace import TraceProvider
from greenflow.ledger import Identity, Ledger
from greenflow.lifecycle import Lifecycle
from greenflow.metering import Meter, SimulatedPower
from greenflow.report.attempt import ReportAttempt
from greenflow.report.figures import split_energy
from greenflow.spec import CarbonSpec
from greenflow.testing.fake_nvml import FakeGpu, FakeNvml

KWH = 3.6e6  # joules
MIDNIGHT = datetime(2022, 6, 1, 0, 0, tzinfo=UTC)


def _meter(no_rapl: str, environ: dict[str, str] | None = None, **kwargs: object) -> Meter:
    # A real (fake) 50 W GPU is present: the simulated draw must replace it, never add to it.
    fake = FakeNvml([FakeGpu("GPU-a", power_w=50.0)])
    return Meter(nvml=fake.backend(), environ=environ or {}, rapl_root=no_rapl, sample_interval=0.01, **kwargs)  # type: ignore[arg-type]


def test_energy_is_the_declared_watts_times_the_declared_duration(no_rapl: str) -> None:
    meter = _meter(no_rapl, simulated_gpu=SimulatedPower(300, duration=timedelta(hours=2)))
    with meter.window("train") as window:
        time.sleep(0.05)
    m = window.measurement
    assert m is not None
    assert m.gpu.kwh == pytest.approx(0.6)  # 300 W x 2 h, however long the stand-in really ran
    assert m.gpu.method == "simulated" and m.gpu.devices[0].device == "simulated-gpu"
    assert "simulated, not measured" in (m.gpu.reason or "") and "300 W x 2.00 h" in (m.gpu.reason or "")
    assert m.duration_s == pytest.approx(7200)  # the window spans the hours the job represents
    assert any("simulated" in w for w in m.warnings)
    assert meter.setup.gpu.method == "simulated"


def test_a_time_scale_makes_each_real_second_stand_for_scaled_seconds(no_rapl: str) -> None:
    meter = _meter(no_rapl, simulated_gpu=SimulatedPower(300, time_scale=3600))
    with meter.window("train") as window:
        time.sleep(0.1)
    m = window.measurement
    assert m is not None
    assert m.duration_s >= 0.1 * 3600  # at least the hours the stand-in's 0.1 s represent
    assert m.gpu.kwh == pytest.approx(300 * m.duration_s / KWH)  # watts x the represented span, exactly


def test_the_environment_declares_it_for_meters_built_anywhere(no_rapl: str) -> None:
    env = {"GREENFLOW_SIMULATED_GPU_W": "250", "GREENFLOW_SIMULATED_TIME_SCALE": "1800"}
    meter = _meter(no_rapl, env)
    with meter.window("x") as window:
        time.sleep(0.05)
    m = window.measurement
    assert m is not None and m.gpu.method == "simulated"
    assert m.gpu.kwh == pytest.approx(250 * m.duration_s / KWH)
    assert m.duration_s >= 0.05 * 1800
    assert _meter(no_rapl).setup.gpu.method != "simulated"  # unset: the real meter as before


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"GREENFLOW_SIMULATED_GPU_W": "lots"}, "GREENFLOW_SIMULATED_GPU_W='lots' is not a number"),
        ({"GREENFLOW_SIMULATED_GPU_W": "0"}, "watts=0.0 is not a number in (0, 100000]"),
        ({"GREENFLOW_SIMULATED_GPU_W": "300", "GREENFLOW_SIMULATED_TIME_SCALE": "-1"}, "time_scale=-1.0"),
    ],
)
def test_bad_declarations_fail_early_naming_the_value(env: dict[str, str], words: str, no_rapl: str) -> None:
    with pytest.raises(InvalidInput, match="give") as error:
        _meter(no_rapl, env)
    assert words in str(error.value)


def test_a_simulated_run_is_labelled_in_its_entry_and_not_reported_as_measured(sqlite_url: str, no_rapl: str) -> None:
    ledger = Ledger(sqlite_url)
    provider = TraceProvider(region="ES", now=MIDNIGHT)
    lifecycle = Lifecycle(
        CarbonSpec.build(region="ES", provider="trace", expected_duration="2h", max_delay="14h"),
        Identity("cli", "train_llm", "run-1", "train", 1),
        ledger=ledger,
        cache=ForecastCache(),
        provider=provider,
        meter_factory=lambda: _meter(no_rapl, simulated_gpu=SimulatedPower(300, duration=timedelta(hours=2))),
    )
    decision = lifecycle.plan()
    assert decision.action == "defer"
    provider.set_now(decision.start_at)
    entry = lifecycle.run(decision, time.sleep, 0.01).entry

    assert entry.method_gpu == "simulated" and entry.energy_gpu_kwh == pytest.approx(0.6)
    assert "simulated, not measured" in entry.measurement_notes["gpu"]
    assert entry.actual_start is not None and entry.ended_at is not None
    assert entry.ended_at - entry.actual_start == timedelta(hours=2)
    # Real magnitudes: 0.6 kWh in the midday window instead of at midnight saves tens of grams.
    assert entry.operational_g is not None and entry.operational_g > 10
    assert entry.saved_g is not None and entry.saved_g > 10
    assert ledger.verify().ok

    measured, estimated, _ = split_energy(ReportAttempt.from_entry(entry))
    assert measured == 0 and estimated == pytest.approx(entry.energy_kwh)


def test_a_stand_in_slowed_by_a_loaded_machine_is_charged_its_declared_length(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The demo's stand-ins sleep their trace time / 3600; a busy host stretches that sleep. The simulated job
    # is the declared one (300 W x expected_duration), not the stand-in's stretched real time x the scale.
    monkeypatch.setenv("GREENFLOW_SIMULATED_GPU_W", "300")
    monkeypatch.setenv("GREENFLOW_SIMULATED_TIME_SCALE", "3600")
    now = datetime(2022, 6, 1, 12, tzinfo=UTC)
    spec = CarbonSpec.build(region="ES", provider="trace", expected_duration="2h", max_delay="0s")
    lifecycle = Lifecycle(
        spec,
        Identity("cli", "demo", "r", "train"),
        ledger=Ledger(sqlite_url),
        cache=ForecastCache(),
        provider=TraceProvider(region="ES", now=now),
    )
    entry = lifecycle.run(lifecycle.plan(), time.sleep, 0.05).entry  # 0.05 s x 3600 would be 3 min
    assert entry.method_gpu == "simulated"
    assert entry.energy_gpu_kwh == pytest.approx(0.6)  # 300 W x 2 h
