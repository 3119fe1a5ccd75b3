"""Where a forecast correction's past (issued forecast, actual) pairs come from, and that N planners share them."""

from __future__ import annotations

import csv
import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import pytest

from greenflow.errors import InvalidInput
from greenflow.intensity.cache import ForecastCache
from greenflow.intensity.providers.trace import DATA_DIR, TraceProvider
from greenflow.intensity.providers.ukgrid import UKGridProvider
from greenflow.ledger import Identity
from greenflow.lifecycle import Decision, Lifecycle
from greenflow.spec import CarbonSpec

PAST = r"/intensity/[^/]+/(?!fw48h)[^/]+"
HALF_HOUR = timedelta(minutes=30)


def _z(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%MZ")


def _parse(text: str) -> datetime:
    return datetime.strptime(unquote(text), "%Y-%m-%dT%H:%MZ").replace(tzinfo=UTC)


def _half_hours(start: datetime, end: datetime, forecast: float, actual: float | None) -> dict[str, Any]:
    begin = start.replace(minute=0 if start.minute < 30 else 30, second=0, microsecond=0)
    data = []
    while begin < end:
        data.append(
            {"from": _z(begin), "to": _z(begin + HALF_HOUR), "intensity": {"forecast": forecast, "actual": actual}}
        )
        begin += HALF_HOUR
    return {"data": data}


@pytest.fixture
def grid(api, reply):  # type: ignore[no-untyped-def]
    """The fake NESO API: it has been forecasting 50 g too high (forecast 170, actual 120); now it says 300."""

    def past(seen):  # type: ignore[no-untyped-def]
        _, _, start, end = seen.path.split("/")
        return reply(200, _half_hours(_parse(start), _parse(end), 170.0, 120.0))

    def forecast(seen):  # type: ignore[no-untyped-def]
        start = _parse(seen.path.split("/")[2])
        return reply(200, _half_hours(start, start + timedelta(hours=48), 300.0, None))

    api.route(r"/intensity/[^/]+/fw48h", forecast)
    api.route(PAST, past)
    return api


def test_ukgrid_serves_the_forecast_it_had_issued_for_past_periods(grid, retry) -> None:
    provider = UKGridProvider(base_url=grid.url, retry=retry)
    start = datetime(2024, 3, 1, tzinfo=UTC)
    issued = provider.issued_history("national", start, start + timedelta(hours=2))
    actual = provider.history("national", start, start + timedelta(hours=2))
    assert [p.value for p in issued.points] == [170.0] * 4 and issued.meta["kind"] == "issued forecast"
    assert [p.value for p in actual.points] == [120.0] * 4
    with pytest.raises(InvalidInput, match="regional entries carry forecasts only"):
        provider.issued_history("13", start, start + timedelta(hours=2))


def test_the_gb_trace_serves_each_slot_as_the_latest_snapshot_before_it_began() -> None:
    snapshots: dict[datetime, dict[datetime, float]] = {}
    with (DATA_DIR / "gb" / "forecasts.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            issued = datetime.fromisoformat(row["issued_at"].replace("Z", "+00:00"))
            slot = datetime.fromisoformat(row["slot_start"].replace("Z", "+00:00"))
            snapshots.setdefault(issued, {})[slot] = float(row["forecast_gco2_per_kwh"])
    start, end = datetime(2023, 3, 17, tzinfo=UTC), datetime(2023, 3, 22, tzinfo=UTC)
    issued = TraceProvider(region="GB", now=end).issued_history("GB", start, end)
    expected = {}
    slot = start
    while slot < end:
        latest = max((t for t in snapshots if t <= slot), default=None)
        if latest is not None and slot in snapshots[latest]:
            expected[slot] = snapshots[latest][slot]
        slot += HALF_HOUR
    assert {p.start: p.value for p in issued.points} == expected
    assert len(expected) < 5 * 48  # the source skipped a day: those slots stay missing, never invented


def test_a_series_trace_has_no_forecast_errors_to_learn() -> None:
    provider = TraceProvider(region="ES", now="2022-06-01T00:00Z")
    with pytest.raises(InvalidInput, match="serves its actuals as the forecast"):
        provider.issued_history("ES", datetime(2022, 5, 30, tzinfo=UTC), datetime(2022, 6, 1, tzinfo=UTC))


def test_planners_correcting_together_fetch_the_past_once(grid, retry) -> None:
    cache = ForecastCache()
    provider = UKGridProvider(base_url=grid.url, retry=retry)
    spec = CarbonSpec.build(region="national", expected_duration="1h", max_delay="6h", forecast_correction=True)
    decisions: list[Decision] = []
    errors: list[BaseException] = []
    start = threading.Barrier(10)

    def one(task: str) -> None:
        try:
            start.wait(timeout=60)
            decisions.append(
                Lifecycle(spec, Identity("cli", "fleet", "r", task), cache=cache, provider=provider).plan()
            )
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=one, args=(f"t{i}",)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert len(decisions) == 10
    for decision in decisions:
        assert decision.plan is not None and decision.plan["expected_gco2_per_kwh"] == pytest.approx(250.0)
        assert decision.forecast is not None and decision.forecast["points"][0]["value"] == 300.0  # raw kept
        assert decision.correction is not None and decision.correction["regions"]["national"]["applied"]
    # 3 weeks + 2 days of history is two 14-day requests for the forecasts issued, two for the actuals;
    # an hour boundary crossed while the threads ran may add one more window.
    assert 4 <= len(grid.seen(PAST)) <= 8
