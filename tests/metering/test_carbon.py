"""Energy x intensity over time: each slot of the run is charged at its own intensity, by energy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from greenflow.errors import InvalidInput
from greenflow.intensity.forecast import Forecast, ForecastPoint
from greenflow.metering import ComponentEnergy, Measurement, PowerSample, PowerTrace, emissions

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def series(*values: float | None, start: datetime = T0, step: timedelta = HOUR) -> Forecast:
    points = tuple(ForecastPoint(start + i * step, start + (i + 1) * step, v) for i, v in enumerate(values))
    return Forecast(region="GB", provider="trace", signal="average", generated_at=T0, points=points)


def measured(
    start: datetime,
    end: datetime,
    gpu_kwh: float | None = 1.0,
    cpu_kwh: float | None = None,
    gpu_trace: list[tuple[datetime, float]] | None = None,
) -> Measurement:
    def component(kwh: float | None, method: str) -> ComponentEnergy:
        if kwh is None:
            return ComponentEnergy.missing("not measured in this test")
        return ComponentEnergy(kwh, method, None)  # type: ignore[arg-type]

    traces = ()
    if gpu_trace:
        traces = (PowerTrace("gpu", "GPU-a", tuple(PowerSample(at, w) for at, w in gpu_trace)),)
    return Measurement(
        name="job",
        start=start,
        end=end,
        gpu=component(gpu_kwh, "nvml_energy_counter"),
        cpu=component(cpu_kwh, "rapl"),
        dram=ComponentEnergy.missing("no dram domain"),
        host="h",
        traces=traces,
    )


def test_a_run_across_a_green_and_a_dirty_hour_is_charged_for_each_by_energy() -> None:
    start, edge, end = T0 + 30 * timedelta(minutes=1), T0 + HOUR, T0 + 90 * timedelta(minutes=1)
    # 100 W in the green half hour, 300 W in the dirty one: 1/4 of the energy is green.
    trace = [(start, 100.0), (edge - timedelta(seconds=1), 100.0), (edge, 300.0), (end, 300.0)]
    account = emissions(measured(start, end, gpu_kwh=0.2, gpu_trace=trace), series(100.0, 400.0))
    assert account.distribution == "power_samples"
    assert [s.energy_kwh for s in account.slots] == [pytest.approx(0.05, rel=1e-3), pytest.approx(0.15, rel=1e-3)]
    assert [s.intensity_g_per_kwh for s in account.slots] == [100.0, 400.0]
    # Energy-weighted: (0.05*100 + 0.15*400)/0.2 = 325, not the time-weighted 250.
    assert account.intensity_g_per_kwh == pytest.approx(325.0, rel=1e-3)
    assert account.operational_g == pytest.approx(65.0, rel=1e-3)
    assert sum(s.emissions_g or 0 for s in account.slots) == pytest.approx(account.operational_g)
    assert account.coverage == pytest.approx(1.0)


def test_without_samples_energy_is_spread_evenly_over_time() -> None:
    start, end = T0 + timedelta(minutes=30), T0 + timedelta(minutes=90)
    account = emissions(measured(start, end, gpu_kwh=0.2), series(100.0, 400.0))
    assert account.distribution == "even"
    assert account.intensity_g_per_kwh == pytest.approx(250.0)
    assert [s.start for s in account.slots] == [start, T0 + HOUR]


def test_each_component_is_shaped_by_its_own_trace() -> None:
    start, end = T0 + timedelta(minutes=30), T0 + timedelta(minutes=90)
    trace = [(start, 0.0), (T0 + HOUR - timedelta(seconds=1), 0.0), (T0 + HOUR, 200.0), (end, 200.0)]
    account = emissions(measured(start, end, gpu_kwh=0.1, cpu_kwh=0.1, gpu_trace=trace), series(100.0, 300.0))
    assert account.distribution == "mixed"
    # GPU all in the dirty hour, CPU evenly: (0.1*300 + 0.05*100 + 0.05*300) / 0.2 = 250
    assert account.intensity_g_per_kwh == pytest.approx(250.0, rel=1e-3)
    assert account.components == ("gpu", "cpu")


def test_energy_where_the_series_has_no_value_is_charged_at_the_mean_and_flagged() -> None:
    start, end = T0 + timedelta(minutes=30), T0 + timedelta(minutes=90)
    account = emissions(measured(start, end, gpu_kwh=0.2), series(200.0, None))
    assert account.coverage == pytest.approx(0.5)
    assert account.intensity_g_per_kwh == pytest.approx(200.0)
    assert account.operational_g == pytest.approx(40.0)
    assert [s.filled for s in account.slots] == [False, True]
    assert any("50.0% of the energy fell where the series has no value" in w for w in account.warnings)


def test_a_gap_between_slots_is_a_slot_of_its_own() -> None:
    points = (
        ForecastPoint(T0, T0 + HOUR, 100.0),
        ForecastPoint(T0 + 2 * HOUR, T0 + 3 * HOUR, 300.0),
    )
    forecast = Forecast(region="GB", provider="trace", signal="average", generated_at=T0, points=points)
    account = emissions(measured(T0, T0 + 3 * HOUR, gpu_kwh=0.3), forecast)
    assert [(s.start, s.end, s.filled) for s in account.slots] == [
        (T0, T0 + HOUR, False),
        (T0 + HOUR, T0 + 2 * HOUR, True),
        (T0 + 2 * HOUR, T0 + 3 * HOUR, False),
    ]
    assert account.coverage == pytest.approx(2 / 3)


def test_no_intensity_over_the_run_gives_no_number_and_a_reason() -> None:
    account = emissions(measured(T0 + 5 * HOUR, T0 + 6 * HOUR), series(100.0, 200.0))
    assert account.operational_g is None and account.intensity_g_per_kwh is None
    assert account.energy_kwh == 1.0
    assert account.coverage == 0.0
    assert "no intensity covers the run (2024-05-01T15:00:00Z-2024-05-01T16:00:00Z)" in (account.reason or "")
    assert "covers 2024-05-01T10:00:00Z-2024-05-01T12:00:00Z" in (account.reason or "")


def test_pue_is_applied_here_and_recorded_separately() -> None:
    m = measured(T0, T0 + HOUR, gpu_kwh=1.0)
    plain = emissions(m, series(200.0))
    with_pue = emissions(m, series(200.0), pue=1.2)
    assert plain.pue is None and plain.operational_g == pytest.approx(200.0)
    assert with_pue.pue == 1.2
    assert with_pue.energy_kwh == 1.0  # metered energy is untouched
    assert with_pue.facility_energy_kwh == pytest.approx(1.2)
    assert with_pue.operational_g == pytest.approx(240.0)


@pytest.mark.parametrize("pue", [0.9, float("nan"), -1.0])
def test_an_impossible_pue_is_refused(pue: float) -> None:
    with pytest.raises(InvalidInput, match="is not a PUE"):
        emissions(measured(T0, T0 + HOUR), series(200.0), pue=pue)


def test_unmeasured_components_are_left_out_with_a_warning_never_as_zero() -> None:
    account = emissions(measured(T0, T0 + HOUR, gpu_kwh=0.5, cpu_kwh=None), series(100.0))
    assert account.components == ("gpu",)
    assert account.energy_kwh == 0.5
    assert any(w.startswith("cpu not measured") for w in account.warnings)


def test_nothing_measured_gives_no_energy_and_the_reasons() -> None:
    account = emissions(measured(T0, T0 + HOUR, gpu_kwh=None), series(100.0))
    assert account.energy_kwh is None and account.operational_g is None
    assert (account.reason or "").startswith("no energy measured: gpu: not measured in this test")


def test_a_zero_length_run_is_charged_at_the_slot_it_falls_in() -> None:
    moment = T0 + HOUR + timedelta(minutes=5)
    account = emissions(measured(moment, moment, gpu_kwh=0.001), series(100.0, 400.0))
    assert account.intensity_g_per_kwh == 400.0
    assert len(account.slots) == 1


def test_the_account_can_be_limited_to_some_components() -> None:
    account = emissions(measured(T0, T0 + HOUR, gpu_kwh=0.5, cpu_kwh=0.25), series(100.0), components=("cpu",))
    assert account.energy_kwh == 0.25
    with pytest.raises(InvalidInput, match="unknown components"):
        emissions(measured(T0, T0 + HOUR), series(100.0), components=("disk",))  # type: ignore[arg-type]


@settings(max_examples=80, deadline=None)
@given(
    values=st.lists(st.one_of(st.none(), st.floats(0, 900)), min_size=1, max_size=8),
    offset=st.integers(-30, 200),
    minutes=st.integers(0, 600),
    watts=st.lists(st.floats(0, 500), min_size=0, max_size=20),
)
def test_slot_energies_add_up_and_the_intensity_stays_within_the_series(
    values: list[float | None], offset: int, minutes: int, watts: list[float]
) -> None:
    start = T0 + timedelta(minutes=offset)
    end = start + timedelta(minutes=minutes)
    step = (end - start) / max(len(watts) - 1, 1)
    trace = [(start + i * step, w) for i, w in enumerate(watts)] if minutes else None
    account = emissions(measured(start, end, gpu_kwh=2.0, gpu_trace=trace), series(*values, step=timedelta(minutes=45)))
    assert sum(s.energy_kwh for s in account.slots) == pytest.approx(2.0)
    if account.intensity_g_per_kwh is None:
        assert account.reason and account.operational_g is None
    else:
        known = [v for v in values if v is not None]
        assert min(known) - 1e-9 <= account.intensity_g_per_kwh <= max(known) + 1e-9
        assert account.operational_g == pytest.approx(2.0 * account.intensity_g_per_kwh)


def test_the_account_is_json_safe() -> None:
    import json

    account = emissions(measured(T0, T0 + 2 * HOUR), series(100.0, 200.0), pue=1.1)
    data = json.loads(json.dumps(account.to_dict()))
    assert data["slots"][0]["start"] == "2024-05-01T10:00:00Z"
    assert data["pue"] == 1.1


def test_energy_measured_as_zero_is_zero_grams_not_unknown() -> None:
    account = emissions(measured(T0 + HOUR / 2, T0 + HOUR + HOUR / 2, gpu_kwh=0.0), series(100.0, 300.0))
    assert account.operational_g == 0.0
    assert account.intensity_g_per_kwh == pytest.approx(200.0)  # time-weighted: no energy to weight by
    assert account.reason is None


def test_zero_energy_outside_the_series_is_still_unknown() -> None:
    account = emissions(measured(T0 + 5 * HOUR, T0 + 6 * HOUR, gpu_kwh=0.0), series(100.0))
    assert account.operational_g is None and account.reason
