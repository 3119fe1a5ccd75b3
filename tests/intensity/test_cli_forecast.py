"""``greenflow forecast`` (greenflow/cli/forecast.py) on a local Typer app: JSON shape, table, exit codes."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta

import pytest
import typer
from typer.testing import CliRunner

from greenflow.cli.forecast import forecast
from greenflow.intensity.providers.trace import DATA_DIR


@pytest.fixture
def run(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    app = typer.Typer()
    app.command()(forecast)
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args))

    return invoke


def test_json_shape_for_a_shipped_trace(run):
    result = run("--provider", "trace", "--region", "ES", "--now", "2022-06-01T00:00Z", "--hours", "6", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert set(payload) == {"provider", "region", "signal", "unit", "generated_at", "points", "attribution"}
    assert payload["provider"] == "trace" and payload["region"] == "ES" and payload["signal"] == "average"
    assert payload["unit"] == "gCO2e/kWh" and payload["generated_at"] == "2022-06-01T00:00:00Z"
    assert len(payload["points"]) == 6
    assert set(payload["points"][0]) == {"start", "end", "value"}
    assert payload["points"][0]["start"] == "2022-06-01T00:00:00Z"
    with open(DATA_DIR / "electricitymaps" / "ES_2021-2023_hourly.csv", newline="") as handle:
        row = next(r for r in csv.DictReader(handle) if r["timestamp"] == "2022-06-01T00:00:00Z")
    assert payload["points"][0]["value"] == float(row["gco2_per_kwh_lifecycle"])
    assert "Electricity Maps" in payload["attribution"]


def test_trace_path_and_column(run):
    path = DATA_DIR / "gb" / "actuals.csv"
    result = run(
        "--trace",
        str(path),
        "--column",
        "actual_gco2_per_kwh",
        "--now",
        "2023-03-14T00:00Z",
        "--hours",
        "1",
        "--json",
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["provider"] == "trace" and payload["region"] == "actuals"
    assert [p["value"] for p in payload["points"]] == [81.0, 85.0]


def test_table_output(run):
    result = run("--provider", "trace", "--region", "GB", "--now", "2023-03-15T09:00Z", "--hours", "1")
    assert result.exit_code == 0, result.output
    assert "2023-03-15T09:00:00+00:00" in result.stdout and "gCO2e/kWh" in result.stdout
    assert "National Energy System Operator" in result.stdout


def test_live_provider_through_its_env_url(run, api, reply, monkeypatch):
    now = datetime.now(UTC)
    start = now.replace(minute=now.minute // 30 * 30, second=0, microsecond=0)
    entries = [
        {
            "from": (start + timedelta(minutes=30 * i)).strftime("%Y-%m-%dT%H:%MZ"),
            "to": (start + timedelta(minutes=30 * (i + 1))).strftime("%Y-%m-%dT%H:%MZ"),
            "intensity": {"forecast": 100 + i, "actual": None, "index": "low"},
        }
        for i in range(96)
    ]
    api.route(r"/intensity/.+/fw48h", reply(200, {"data": entries}))
    monkeypatch.setenv("GREENFLOW_UKGRID_URL", api.url)
    result = run("--provider", "ukgrid", "--region", "national", "--hours", "2", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["provider"] == "ukgrid" and payload["region"] == "national"
    values = [p["value"] for p in payload["points"]]
    assert values[:4] == [100.0, 101.0, 102.0, 103.0] and len(values) in (4, 5)  # 5 when now is mid-slot
    assert payload["points"][0]["start"] == start.isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--provider", "greengrid", "--region", "X"), "unknown intensity provider 'greengrid'"),
        (
            ("--provider", "trace", "--region", "XX", "--now", "2022-01-01T00:00Z"),
            "no shipped trace for region 'XX'",
        ),
        (("--provider", "trace", "--region", "ES", "--now", "2022-06-01T00:00"), "naive"),
        (("--provider", "trace", "--region", "ES", "--now", "tomorrow"), "not an ISO 8601 time"),
        (
            ("--provider", "trace", "--region", "ES", "--now", "2022-06-01T00:00Z", "--column", "co2"),
            "no value column 'co2'",
        ),
        (
            (
                "--trace",
                str(DATA_DIR / "gb" / "actuals.csv"),
                "--now",
                "2023-03-15T00:00Z",
            ),
            "several value columns",
        ),
        (("--provider", "ukgrid", "--region", "national", "--now", "2022-01-01T00:00Z"), "--now given"),
        (("--provider", "ukgrid", "--region", "99"), "not between 1 and 17"),
        (
            ("--provider", "trace", "--region", "ES", "--now", "2022-01-01T00:00Z", "--hours", "-3"),
            "hours=-3.0",
        ),
        (("--region", "ES"), "--provider is missing"),
        (("--provider", "watttime"), "--region is missing"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(run, args, message):
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert result.stdout == ""
