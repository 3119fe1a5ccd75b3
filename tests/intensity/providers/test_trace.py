"""The trace provider on the real shipped data (Electricity Maps series, GB published-forecast snapshots)."""

from __future__ import annotations

import csv
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from greenflow.clock import utcnow
from greenflow.errors import InvalidInput
from greenflow.intensity.providers import get_provider
from greenflow.intensity.providers.trace import DATA_DIR, SHIPPED, TraceProvider, load_trace

ES_FILE = DATA_DIR / "electricitymaps" / "ES_2021-2023_hourly.csv"
GB_FORECASTS = DATA_DIR / "gb" / "forecasts.csv"
GB_ACTUALS = DATA_DIR / "gb" / "actuals.csv"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def es_rows():
    return {at(r["timestamp"]): r for r in rows(ES_FILE)}


@pytest.fixture(scope="module")
def gb_snapshots():
    snapshots: dict[datetime, dict[datetime, float]] = {}
    for r in rows(GB_FORECASTS):
        snapshots.setdefault(at(r["issued_at"]), {})[at(r["slot_start"])] = float(r["forecast_gco2_per_kwh"])
    return snapshots


def test_the_shipped_files_are_there_with_their_licences():
    for shipped in SHIPPED.values():
        assert (DATA_DIR / shipped.file).is_file()
    readme = (DATA_DIR / "README.md").read_text()
    assert "Open Database License (ODbL 1.0)" in readme
    assert '"Contains data from the National Energy System Operator Carbon Intensity API."' in readme


def test_es_replay_serves_the_hours_after_now(es_rows):
    now = at("2022-06-01T00:00Z")
    provider = get_provider("trace", region="ES", now=now)
    forecast = provider.forecast("es")
    assert forecast.region == "ES" and forecast.generated_at == now
    assert len(forecast.points) == 48
    assert forecast.points[0].start == now and forecast.points[-1].end == now + timedelta(hours=48)
    for point in forecast.points:
        assert point.value == float(es_rows[point.start]["gco2_per_kwh_lifecycle"])
    assert forecast.emission_factor == "lifecycle"
    assert "Electricity Maps" in forecast.meta["attribution"]


def test_a_partial_hour_now_includes_the_running_slot_and_nothing_before(es_rows):
    provider = TraceProvider(region="ES", now="2022-06-01T10:30Z")
    forecast = provider.forecast("ES", hours=2)
    assert [p.start.hour for p in forecast.points] == [10, 11, 12]
    provider.set_now("2022-06-02T00:00Z")
    assert provider.forecast("ES", hours=1).points[0].start == at("2022-06-02T00:00Z")


def test_column_is_chosen_by_name(es_rows):
    forecast = TraceProvider(region="ES", column="gco2_per_kwh_direct", now="2021-03-01T00:00Z").forecast("ES", hours=1)
    assert forecast.points[0].value == float(es_rows[at("2021-03-01T00:00Z")]["gco2_per_kwh_direct"])
    assert forecast.emission_factor == "direct"


def test_history_serves_the_actuals(es_rows):
    provider = TraceProvider(path=ES_FILE, region="Spain", column="gco2_per_kwh_lifecycle", now="2023-01-01T00:00Z")
    history = provider.history("Spain", at("2022-12-31T00:00Z"), at("2022-12-31T06:00Z"))
    assert [p.value for p in history.points] == [
        float(es_rows[at("2022-12-31T00:00Z") + timedelta(hours=h)]["gco2_per_kwh_lifecycle"]) for h in range(6)
    ]


def test_gb_snapshot_mode_serves_the_latest_forecast_published_by_now(gb_snapshots):
    now = at("2023-03-15T09:00Z")
    issued = max(t for t in gb_snapshots if t <= now)
    forecast = TraceProvider(region="GB", now=now).forecast("GB", hours=4)
    assert forecast.generated_at == issued
    assert forecast.meta["snapshot_issued_at"] == issued.isoformat()
    assert len(forecast.points) == 8 and forecast.points[0].start == now
    assert all(p.duration == timedelta(minutes=30) for p in forecast.points)
    assert [p.value for p in forecast.points] == [gb_snapshots[issued][p.start] for p in forecast.points]


def test_gb_snapshot_switches_exactly_at_issue_time(gb_snapshots):
    issued = sorted(gb_snapshots)[5]
    provider = TraceProvider(region="GB", now=issued - timedelta(seconds=1))
    assert provider.forecast("GB").generated_at == sorted(gb_snapshots)[4]
    provider.set_now(issued)
    assert provider.forecast("GB").generated_at == issued


def test_gb_gap_day_serves_the_older_snapshot_with_its_age_visible(gb_snapshots):
    # No snapshots were collected on 2023-03-20: the one from the 19th is what was known.
    now = at("2023-03-20T18:00Z")
    forecast = TraceProvider(region="GB", now=now).forecast("GB", hours=2)
    assert forecast.generated_at.date().isoformat() == "2023-03-19"
    assert now - forecast.generated_at > timedelta(hours=12)


def test_before_the_first_snapshot_is_bad_input():
    with pytest.raises(InvalidInput, match="before the first forecast"):
        TraceProvider(region="GB", now="2023-03-01T00:00Z").forecast("GB")


def test_gb_history_serves_actuals_with_gaps_missing():
    provider = TraceProvider(region="GB", now="2023-04-06T00:00Z")
    history = provider.history("GB", at("2023-03-19T19:00Z"), at("2023-03-19T21:00Z"))
    by_start = {p.start: p.value for p in history.points}
    assert by_start[at("2023-03-19T19:00Z")] is not None
    assert by_start[at("2023-03-19T20:00Z")] is None  # the source has no actual here: never 0
    assert history.meta["column"] == "actual_gco2_per_kwh"


def test_snapshot_file_without_actuals_refuses_history():
    provider = TraceProvider(path=GB_FORECASTS, region="gb", now="2023-03-15T00:00Z")
    with pytest.raises(InvalidInput, match="actuals=PATH"):
        provider.history("gb", at("2023-03-14T00:00Z"), at("2023-03-14T02:00Z"))
    provider = TraceProvider(
        path=GB_FORECASTS,
        actuals=GB_ACTUALS,
        actuals_column="actual_gco2_per_kwh",
        region="gb",
        now="2023-03-15T00:00Z",
    )
    assert len(provider.history("gb", at("2023-03-14T00:00Z"), at("2023-03-14T02:00Z")).points) == 4


def test_ambiguous_columns_list_the_choices(tmp_path):
    trace = tmp_path / "two.csv"
    trace.write_text("timestamp,site_a,site_b\n2022-01-01T00:00:00Z,100,200\n2022-01-01T01:00:00Z,110,210\n")
    with pytest.raises(InvalidInput) as caught:
        TraceProvider(path=trace)
    assert "site_a, site_b" in caught.value.message
    assert "--column" in caught.value.fix


def test_an_electricity_maps_export_defaults_to_life_cycle_factors():
    provider = TraceProvider(path=ES_FILE, now="2022-06-01T00:00Z")
    assert provider.forecast("ES", hours=1).emission_factor == "lifecycle"


def test_wrong_column_lists_the_choices():
    with pytest.raises(InvalidInput) as caught:
        TraceProvider(path=GB_ACTUALS, column="intensity")
    assert "'intensity'" in caught.value.message
    assert "actual_gco2_per_kwh, forecast_gco2_per_kwh" in caught.value.fix


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("when,value\n2022-01-01T00:00Z,1\n", "no timestamp column"),
        ("timestamp,value\n2022-01-01T00:00,1\n2022-01-01T01:00,2\n", "has no time zone"),
        ("timestamp,value\n2022-01-01T00:00Z,lots\n2022-01-01T01:00Z,2\n", "'lots' is not a number"),
        ("timestamp\n2022-01-01T00:00Z\n", "no value column"),
        ("timestamp,value\n2022-01-01T00:00Z,1\n2022-01-01T00:00Z,2\n", "two rows"),
    ],
)
def test_malformed_traces_are_bad_input(tmp_path, content, message):
    path = tmp_path / "trace.csv"
    path.write_text(content)
    with pytest.raises(InvalidInput, match=message):
        TraceProvider(path=path)


def test_a_small_user_trace_with_gaps_and_missing_values(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text(
        "timestamp,g\n2024-01-01T00:00Z,10\n2024-01-01T00:15Z,\n2024-01-01T00:30Z,30\n2024-01-01T01:30Z,40\n"
    )
    provider = TraceProvider(path=path, now="2024-01-01T00:00Z")
    forecast = provider.forecast("lab", hours=2)
    assert forecast.region == "lab"
    assert [(p.start.minute, p.duration.seconds // 60, p.value) for p in forecast.points] == [
        (0, 15, 10.0),
        (15, 15, None),
        (30, 15, 30.0),
        (30, 15, 40.0),
    ]


def test_now_outside_the_trace_is_bad_input():
    with pytest.raises(InvalidInput, match="outside trace"):
        TraceProvider(region="ES", now="2030-01-01T00:00Z").forecast("ES")


def test_unknown_shipped_region_lists_the_shipped_ones():
    with pytest.raises(InvalidInput) as caught:
        TraceProvider(region="XX")
    assert "'XX'" in caught.value.message and "ES" in caught.value.fix and "--trace" in caught.value.fix


def test_naive_now_is_refused():
    with pytest.raises(InvalidInput, match="naive"):
        TraceProvider(region="ES", now=datetime(2022, 1, 1))  # noqa: DTZ001 - the point of the test


def test_speed_advances_the_replay_clock():
    provider = TraceProvider(region="ES", now="2022-01-01T00:00Z", speed=3600 * 20)
    time.sleep(0.1)
    assert provider.now >= at("2022-01-01T02:00Z")


def test_replay_clock_can_be_injected():
    moments = iter([at("2022-01-01T00:00Z"), at("2022-01-01T05:00Z")])
    provider = TraceProvider(region="ES", clock=lambda: next(moments))
    assert provider.forecast("ES", hours=1).points[0].start.hour == 0
    assert provider.forecast("ES", hours=1).points[0].start.hour == 5


def test_files_are_parsed_once_per_process():
    first = load_trace(ES_FILE, "gco2_per_kwh_lifecycle")
    TraceProvider(region="ES", now="2022-01-01T00:00Z").forecast("ES")
    assert load_trace(ES_FILE, "gco2_per_kwh_lifecycle") is first
    assert len(first.series.points) == 26280


def test_replaying_every_hour_of_a_year_matches_the_file(es_rows):
    # What the savings benchmark does: a forecast per hour. Each must be the next 24 h of the file.
    provider = TraceProvider(region="ES", now="2022-01-01T00:00Z")
    start = at("2022-01-01T00:00Z")
    for hour in range(0, 24 * 365, 7):
        now = start + timedelta(hours=hour)
        provider.set_now(now)
        points = provider.forecast("ES", hours=24).points
        assert len(points) == 24 and points[0].start == now
        assert points[-1].value == float(es_rows[now + timedelta(hours=23)]["gco2_per_kwh_lifecycle"])


def test_all_shipped_zones_load():
    for name in SHIPPED:
        now = at("2023-03-20T00:00Z")
        assert TraceProvider(region=name, now=now).forecast(name, hours=1).points


def test_a_replay_shared_by_processes_agrees_on_its_clock() -> None:
    """Two provider instances (a worker and the triggerer) built apart map wall time to one trace time."""
    started = utcnow() - timedelta(seconds=10)
    a = TraceProvider(region="ES", now="2022-06-01T00:00Z", speed=360, replay_started_at=started)
    b = TraceProvider(region="ES", now="2022-06-01T00:00Z", speed=360, replay_started_at=started.isoformat())
    expected = datetime(2022, 6, 1, 1, 0, tzinfo=UTC)  # 10 s x 360 = one trace hour later
    assert abs((a.now - expected).total_seconds()) < 60
    assert abs((a.now - b.now).total_seconds()) < 5
