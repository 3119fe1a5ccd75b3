"""Per-region data for the ``trace`` provider: ``{region}`` in a path (one file per region) or a column.

The files are slices of the shipped Electricity Maps traces for Spain and Norway in June 2022 (Norway's
hydro grid is far greener than Spain's at every hour), written the way a user would write their own.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from greenflow.errors import InvalidInput
from greenflow.intensity.cache import ForecastCache
from greenflow.intensity.providers import get_provider
from greenflow.intensity.providers.trace import DATA_DIR, TraceProvider
from greenflow.ledger import Identity, Ledger
from greenflow.lifecycle import Lifecycle
from greenflow.planning import Candidate, plan
from greenflow.spec import CarbonSpec

MIDNIGHT = datetime(2022, 6, 1, 0, 0, tzinfo=UTC)
COLUMN = "gco2_per_kwh_lifecycle"


def _shipped(zone: str, days: int = 3) -> list[tuple[str, str]]:
    """(timestamp, lifecycle value) rows of a shipped trace from MIDNIGHT for ``days``."""
    end = MIDNIGHT + timedelta(days=days)
    with open(DATA_DIR / "electricitymaps" / f"{zone}_2021-2023_hourly.csv", newline="") as handle:
        return [
            (row["timestamp"], row[COLUMN])
            for row in csv.DictReader(handle)
            if MIDNIGHT <= datetime.fromisoformat(row["timestamp"].replace("Z", "+00:00")) < end
        ]


@pytest.fixture(scope="module")
def data() -> dict[str, list[tuple[str, str]]]:
    found = {zone: _shipped(zone) for zone in ("ES", "NO")}
    # The premise of the planning tests, checked on the data rather than assumed.
    assert max(float(v) for _, v in found["NO"]) < min(float(v) for _, v in found["ES"])
    return found


def _write_series(path: Path, rows: list[tuple[str, str]], column: str = COLUMN) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["timestamp", column])
        writer.writerows(rows)
    return path


@pytest.fixture
def per_region_files(tmp_path: Path, data: dict[str, list[tuple[str, str]]]) -> str:
    for zone, rows in data.items():
        _write_series(tmp_path / f"trace-{zone}.csv", rows)
    return str(tmp_path / "trace-{region}.csv")


@pytest.fixture
def wide_file(tmp_path: Path, data: dict[str, list[tuple[str, str]]]) -> Path:
    """One CSV with a column per region: ``timestamp,ES,NO``."""
    path = tmp_path / "wide.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["timestamp", "ES", "NO"])
        for (stamp, es), (stamp_no, no) in zip(data["ES"], data["NO"], strict=True):
            assert stamp == stamp_no
            writer.writerow([stamp, es, no])
    return path


def _values(provider: TraceProvider, region: str) -> list[float | None]:
    return [p.value for p in provider.forecast(region, hours=48).points]


def _expected(rows: list[tuple[str, str]]) -> list[float]:
    return [float(v) for _, v in rows[:48]]


def _plan(provider: TraceProvider, regions: tuple[str, ...]):  # type: ignore[no-untyped-def]
    candidates = [Candidate(region, provider.forecast(region, hours=24)) for region in regions]
    return plan(candidates, duration=timedelta(hours=2), max_delay=timedelta(hours=12), now=MIDNIGHT)


# -- each region gets its own data --------------------------------------------------------------------
def test_one_file_per_region_serves_each_region_its_own_file(per_region_files, data) -> None:
    provider = TraceProvider(path=per_region_files, now=MIDNIGHT)
    assert _values(provider, "ES") == _expected(data["ES"])
    assert _values(provider, "NO") == _expected(data["NO"])
    assert provider.forecast("NO", hours=1).meta["trace"] == "trace-NO.csv"


def test_one_column_per_region_serves_each_region_its_own_column(wide_file, data) -> None:
    provider = TraceProvider(path=wide_file, column="{region}", now=MIDNIGHT)
    assert _values(provider, "ES") == _expected(data["ES"])
    assert _values(provider, "NO") == _expected(data["NO"])
    assert provider.forecast("NO", hours=1).meta["column"] == "NO"


def test_the_planner_moves_the_job_to_the_region_whose_data_is_greener(per_region_files, tmp_path, data) -> None:
    per_region = _plan(TraceProvider(path=per_region_files, now=MIDNIGHT), ("ES", "NO"))
    assert per_region.region == "NO" and per_region.savings_pct is not None and per_region.savings_pct > 50
    # One plain file gives every region the same series: nothing to gain by moving, the job stays home.
    shared = _plan(TraceProvider(path=_write_series(tmp_path / "es.csv", data["ES"]), now=MIDNIGHT), ("ES", "NO"))
    assert shared.region == "ES"
    assert per_region.expected_intensity is not None and shared.expected_intensity is not None
    assert per_region.expected_intensity < shared.expected_intensity


def test_swapping_the_files_swaps_the_chosen_region(tmp_path, data) -> None:
    _write_series(tmp_path / "trace-ES.csv", data["NO"])
    _write_series(tmp_path / "trace-NO.csv", data["ES"])
    chosen = _plan(TraceProvider(path=str(tmp_path / "trace-{region}.csv"), now=MIDNIGHT), ("NO", "ES"))
    assert chosen.region == "ES"


@pytest.mark.parametrize("layout", ["files", "columns"])
def test_lifecycle_plans_across_regions_with_their_own_data(layout, per_region_files, wide_file, sqlite_url) -> None:
    data_options = {"path": per_region_files} if layout == "files" else {"path": str(wide_file), "column": "{region}"}
    options = {**data_options, "now": MIDNIGHT.isoformat()}
    spec = CarbonSpec.build(
        region="ES", regions=["NO"], provider="trace", provider_options=options, expected_duration="2h", max_delay="12h"
    )
    lifecycle = Lifecycle(
        spec, Identity("cli", "train_llm", "run-1", "train", 1), ledger=Ledger(sqlite_url), cache=ForecastCache()
    )
    decision = lifecycle.plan(requested_at=MIDNIGHT)
    assert decision.region == "NO"
    assert decision.plan is not None and decision.plan["savings_pct"] > 50


def test_actuals_per_region(per_region_files, tmp_path, data) -> None:
    # Forecasts and actuals in separate per-region files: history() reads the region's own actuals.
    for zone in ("ES", "NO"):
        _write_series(tmp_path / f"actual-{zone}.csv", [(t, str(float(v) + 1)) for t, v in data[zone]])
    provider = TraceProvider(path=per_region_files, actuals=str(tmp_path / "actual-{region}.csv"), now=MIDNIGHT)
    for zone in ("ES", "NO"):
        history = provider.history(zone, MIDNIGHT, MIDNIGHT + timedelta(hours=3))
        assert [p.value for p in history.points] == [float(v) + 1 for _, v in data[zone][:3]]
        assert history.meta["trace"] == f"actual-{zone}.csv"


def test_a_doubled_brace_is_a_literal_brace(tmp_path, data) -> None:
    _write_series(tmp_path / "trace-{x}.csv", data["ES"])
    provider = TraceProvider(path=str(tmp_path / "trace-{{x}}.csv"), region="ES", now=MIDNIGHT)
    assert _values(provider, "ES") == _expected(data["ES"])


# -- errors, when the spec is built ----------------------------------------------------------------------
def test_a_planned_region_without_its_file_is_refused_when_the_spec_is_built(per_region_files) -> None:
    with pytest.raises(InvalidInput) as caught:
        CarbonSpec.build(
            region="ES",
            regions=["NO", "FR"],
            provider="trace",
            provider_options={"path": per_region_files, "now": MIDNIGHT.isoformat()},
            expected_duration="1h",
            max_delay="6h",
        )
    message = str(caught.value)
    assert "'FR'" in message and "trace-FR.csv" in message and "trace-{region}.csv" in message
    assert caught.value.fix is not None and "trace-FR.csv" in caught.value.fix


def test_a_planned_region_without_its_column_is_refused_naming_the_columns(wide_file) -> None:
    provider = get_provider("trace", path=str(wide_file), column="{region}", now=MIDNIGHT)
    assert provider.validate_region("NO") == "NO"
    with pytest.raises(InvalidInput) as caught:
        provider.validate_region("FR")
    assert "'FR'" in str(caught.value) and "wide.csv" in str(caught.value)
    assert caught.value.fix is not None and "ES, NO" in caught.value.fix


def test_a_missing_per_region_actuals_file_is_refused_with_the_region(per_region_files, tmp_path, data) -> None:
    _write_series(tmp_path / "actual-ES.csv", data["ES"])
    provider = TraceProvider(path=per_region_files, actuals=str(tmp_path / "actual-{region}.csv"), now=MIDNIGHT)
    assert provider.validate_region("ES") == "ES"
    with pytest.raises(InvalidInput, match=r"actual-NO\.csv"):
        provider.validate_region("NO")


def test_the_provider_region_is_checked_at_construction(per_region_files) -> None:
    with pytest.raises(InvalidInput, match=r"trace-FR\.csv"):
        TraceProvider(path=per_region_files, region="FR", now=MIDNIGHT)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"path": "/data/trace-{zone}.csv"}, "{zone}"),
        ({"path": "/data/trace-{region:>4}.csv"}, "{region:>4}"),
        ({"path": "/data/trace-{region!r}.csv"}, "{region!r}"),
        ({"path": "/data/trace-{}.csv"}, "{}"),
        ({"path": "/data/trace-{region.csv"}, "path='/data/trace-{region.csv'"),
        ({"path": "/data/trace.csv", "column": "{Region}"}, "{Region}"),
    ],
)
def test_a_placeholder_other_than_region_is_refused_naming_it(options, named) -> None:
    with pytest.raises(InvalidInput) as caught:
        TraceProvider(**options)
    assert named in str(caught.value)
    assert caught.value.fix is not None and "{region}" in caught.value.fix


def test_region_placeholder_needs_a_path() -> None:
    with pytest.raises(InvalidInput) as caught:
        TraceProvider(column="{region}", region="ES")
    assert "{region}" in str(caught.value) and caught.value.fix is not None and "path=" in caught.value.fix


@pytest.mark.parametrize("label", ["../NO", "a/b", ".."])
def test_a_region_label_cannot_reach_another_directory(per_region_files, label) -> None:
    provider = TraceProvider(path=per_region_files, now=MIDNIGHT)
    with pytest.raises(InvalidInput) as caught:
        provider.validate_region(label)
    assert repr(label) in str(caught.value)


def test_a_wide_file_that_cannot_be_read_fails_at_construction(tmp_path) -> None:
    with pytest.raises(InvalidInput, match=r"missing\.csv"):
        TraceProvider(path=tmp_path / "missing.csv", column="{region}")
