"""ukgrid against a local server speaking the NESO Carbon Intensity API's documented shapes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from greenflow.errors import InvalidInput, ProviderError
from greenflow.intensity.providers import get_provider
from greenflow.intensity.providers.ukgrid import UKGridProvider

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _z(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%MZ")


def periods(start: datetime, count: int, *, first: int = 100, actual: bool = False) -> list[dict]:
    """``count`` half-hour entries from ``start`` with forecasts first, first+1, ..."""
    out = []
    for i in range(count):
        begin = start + timedelta(minutes=30 * i)
        intensity = {"forecast": first + i, "index": "moderate"}
        if actual:
            intensity["actual"] = first + i + 1000
        out.append({"from": _z(begin), "to": _z(begin + timedelta(minutes=30)), "intensity": intensity})
    return out


@pytest.fixture
def ukgrid(api, retry, clock):
    return UKGridProvider(base_url=api.url, retry=retry, clock=clock)


def test_national_forecast_uses_fw48h_from_now(api, reply, ukgrid):
    api.route(r"/intensity/2024-05-01T12:00Z/fw48h", reply(200, {"data": periods(NOW, 96)}))
    forecast = ukgrid.forecast("national")
    assert [r.path for r in api.requests] == ["/intensity/2024-05-01T12:00Z/fw48h"]
    assert len(forecast.points) == 96
    assert forecast.points[0].start == NOW and forecast.points[0].end == NOW + timedelta(minutes=30)
    assert [p.value for p in forecast.points[:3]] == [100.0, 101.0, 102.0]
    assert forecast.region == "national" and forecast.signal == "average" and forecast.unit == "gCO2e/kWh"
    assert forecast.generated_at == NOW
    assert "National Energy System Operator" in forecast.meta["attribution"]


def test_forecast_is_trimmed_to_the_hours_asked(api, reply, ukgrid):
    api.route(r"/intensity/.+/fw48h", reply(200, {"data": periods(NOW, 96)}))
    forecast = ukgrid.forecast("GB", hours=3)
    assert len(forecast.points) == 6
    assert forecast.end == NOW + timedelta(hours=3)


def test_null_forecast_values_stay_missing(api, reply, ukgrid):
    data = periods(NOW, 4)
    data[1]["intensity"]["forecast"] = None
    api.route(r"/intensity/.+/fw48h", reply(200, {"data": data}))
    values = [p.value for p in ukgrid.forecast("national", hours=2).points]
    assert values == [100.0, None, 102.0, 103.0]


def test_regional_forecast_reads_the_nested_data_data_shape(api, reply, ukgrid):
    nested = {
        "data": {
            "regionid": 13,
            "dnoregion": "UKPN London",
            "shortname": "London",
            "data": [{**p, "generationmix": [{"fuel": "gas", "perc": 26.7}]} for p in periods(NOW, 96, first=200)],
        }
    }
    api.route(r"/regional/intensity/2024-05-01T12:00Z/fw48h/regionid/13", reply(200, nested))
    forecast = ukgrid.forecast("London", hours=1)
    assert forecast.region == "region:13"
    assert [p.value for p in forecast.points] == [200.0, 201.0]
    assert forecast.meta["shortname"] == "London"


def test_regional_forecast_accepts_the_documented_list_shape(api, reply, ukgrid):
    listed = {"data": [{"regionid": 1, "shortname": "North Scotland", "data": periods(NOW, 4, first=10)}]}
    api.route(r"/regional/intensity/.+/fw48h/regionid/1", reply(200, listed))
    assert [p.value for p in ukgrid.forecast("1", hours=2).points] == [10.0, 11.0, 12.0, 13.0]


def test_postcode_forecast(api, reply, ukgrid):
    body = {"data": {"regionid": 12, "postcode": "RG10", "shortname": "South England", "data": periods(NOW, 4)}}
    api.route(r"/regional/intensity/2024-05-01T12:00Z/fw48h/postcode/RG10", reply(200, body))
    forecast = ukgrid.forecast("postcode:rg10", hours=2)
    assert forecast.region == "postcode:RG10" and forecast.meta["postcode"] == "RG10"
    assert len(forecast.points) == 4


def test_unknown_postcode_with_empty_body_is_a_clear_error(api, reply, ukgrid):
    api.route(r"/regional/.+/postcode/ZZ9", reply(200, body=""))
    with pytest.raises(ProviderError, match="empty body for postcode:ZZ9"):
        ukgrid.forecast("ZZ9")


def test_api_error_message_is_passed_on(api, reply, ukgrid):
    error = {"error": {"code": "400 Bad Request", "message": "Please enter a valid date in ISO8601 format"}}
    api.route(r"/intensity/.+/fw48h", reply(400, error))
    with pytest.raises(ProviderError, match="valid date in ISO8601"):
        ukgrid.forecast("national")


def test_history_is_fetched_in_14_day_chunks_with_actuals(api, reply, ukgrid):
    start = datetime(2024, 3, 1, tzinfo=UTC)
    end = start + timedelta(days=30)

    def answer(seen):
        _, _, frm, to = seen.path.split("/")
        first = datetime.strptime(frm, "%Y-%m-%dT%H:%MZ").replace(tzinfo=UTC)
        last = datetime.strptime(to, "%Y-%m-%dT%H:%MZ").replace(tzinfo=UTC)
        count = int((last - first) / timedelta(minutes=30)) + 1  # the API includes the edge period
        return reply(200, {"data": periods(first, count, actual=True)})

    api.route(r"/intensity/[^/]+/[^/]+", answer)
    history = ukgrid.history("national", start, end)
    paths = [r.path for r in api.requests]
    assert paths == [
        "/intensity/2024-03-01T00:00Z/2024-03-15T00:00Z",
        "/intensity/2024-03-15T00:00Z/2024-03-29T00:00Z",
        "/intensity/2024-03-29T00:00Z/2024-03-31T00:00Z",
    ]
    assert len(history.points) == 30 * 48  # chunk edges are not counted twice
    assert history.points[0].value == 1100.0 and not history.points[0].estimated
    assert history.meta["kind"] == "actual"


def test_history_marks_unsettled_periods_and_keeps_gaps_missing(api, reply, ukgrid):
    start = datetime(2024, 3, 1, tzinfo=UTC)
    data = periods(start, 3, actual=True)
    data[1]["intensity"]["actual"] = None  # not settled yet: the forecast stands in, flagged
    data[2]["intensity"].update(actual=None, forecast=None)  # nothing known
    api.route(r"/intensity/[^/]+/[^/]+", reply(200, {"data": data}))
    points = ukgrid.history("national", start, start + timedelta(minutes=90)).points
    assert [(p.value, p.estimated) for p in points] == [(1100.0, False), (101.0, True), (None, False)]


def test_regional_history_is_refused_because_regions_have_no_actuals(ukgrid):
    with pytest.raises(InvalidInput, match="regional entries carry forecasts only"):
        ukgrid.history("13", NOW - timedelta(days=1), NOW)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("national", "national"),
        ("GB", "national"),
        ("13", "region:13"),
        ("regionid:7", "region:7"),
        ("north west england", "region:3"),
        ("rg10", "postcode:RG10"),
        ("postcode:SW1A", "postcode:SW1A"),
    ],
)
def test_validate_region_normalises(ukgrid, given, expected):
    assert ukgrid.validate_region(given) == expected


@pytest.mark.parametrize("bad", ["18", "0", "Atlantis", "RG10 1AA!", "12345"])
def test_validate_region_rejects_with_the_fix(ukgrid, api, bad):
    with pytest.raises(InvalidInput) as caught:
        ukgrid.validate_region(bad)
    assert repr(bad) in caught.value.message and caught.value.fix
    assert api.requests == []


def test_base_url_comes_from_the_environment(api, reply, monkeypatch):
    monkeypatch.setenv("GREENFLOW_UKGRID_URL", api.url)
    api.route(r"/intensity/.+/fw48h", reply(200, {"data": periods(NOW, 4)}))
    forecast = get_provider("ukgrid").forecast("national", start=NOW, hours=2)
    assert len(forecast.points) == 4 and len(api.requests) == 1
