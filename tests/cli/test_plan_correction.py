"""``greenflow plan --forecast-correction``: the lifecycle's correction, offline on the shipped GB forecast snapshots.

The GB trace keeps the forecasts NESO issued for each half hour next to what each half hour turned out to
be, so the correction has a week of (forecast, actual) pairs to learn from; the Spanish trace serves its
actuals as its forecast, so there is nothing to learn there and the output must say so.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from greenflow.cli.main import app
from greenflow.ledger import Identity
from greenflow.lifecycle import Lifecycle
from greenflow.spec import CarbonSpec

NOW = "2023-03-28T14:00Z"
WINDOW = ["--now", NOW, "--duration", "2h", "--max-delay", "20h"]


def plan(*args: str) -> Result:
    return CliRunner().invoke(app, ["plan", "--provider", "trace", *args], catch_exceptions=False)


def plan_json(*args: str) -> dict[str, Any]:
    result = plan(*args, "--json")
    assert result.exit_code == 0, result.output
    payload: dict[str, Any] = json.loads(result.stdout)
    return payload


def test_the_correction_moves_the_plan_as_the_lifecycle_does() -> None:
    plain = plan_json("--region", "GB", *WINDOW, "--no-forecast-correction")
    corrected = plan_json("--region", "GB", *WINDOW, "--forecast-correction")

    assert "forecast_correction" not in plain  # the documented shape is unchanged with the correction off
    by_default = plan_json("--region", "GB", *WINDOW)  # the table's default ("auto") corrects where it can
    assert by_default.pop("forecast_correction")["mode"] == "auto"
    assert by_default == {key: value for key, value in corrected.items() if key != "forecast_correction"}
    record = corrected["forecast_correction"]
    assert record["mode"] == "bias+carry"
    gb = record["regions"]["GB"]
    assert gb["applied"] and gb["reason"].startswith("corrected (bias+carry)")
    assert gb["parameters"]["pairs"] > 0
    # The GB forecast's recent errors move the greenest start, and the intensities are the corrected ones.
    assert corrected["start"] != plain["start"]
    assert corrected["now_gco2_per_kwh"] != plain["now_gco2_per_kwh"]

    # The same correction the lifecycle makes (what `greenflow run --forecast-correction` records).
    spec = CarbonSpec.build(
        region="GB",
        provider="trace",
        provider_options={"now": NOW},
        expected_duration="2h",
        max_delay="20h",
        forecast_correction=True,
    )
    decision = Lifecycle(spec, Identity("cli", "plan", "r", "t")).plan()
    assert decision.correction is not None
    core = decision.correction["regions"]["GB"]["parameters"]
    assert gb["parameters"]["bias_by_slot_of_day"] == pytest.approx(core["bias_by_slot_of_day"])
    assert gb["parameters"]["carry_residual"] == pytest.approx(core["carry_residual"])
    assert datetime.fromisoformat(corrected["start"]) == decision.start_at.astimezone(UTC)


def test_each_region_says_whether_it_was_corrected_and_why_not() -> None:
    payload = plan_json("--region", "GB", "--region", "ES", *WINDOW, "--forecast-correction")
    regions = payload["forecast_correction"]["regions"]
    assert list(regions) == ["GB", "ES"]
    assert regions["GB"]["applied"]
    assert not regions["ES"]["applied"] and "parameters" not in regions["ES"]
    assert "serves its actuals as the forecast" in regions["ES"]["reason"]

    human = plan("--region", "GB", "--region", "ES", *WINDOW, "--forecast-correction")
    assert human.exit_code == 0, human.output
    lines = human.stdout.splitlines()
    assert any(line.startswith("GB: corrected (bias+carry)") for line in lines)
    assert any(line.startswith("ES: forecast correction not applied:") for line in lines)
    # With the correction off nothing is said about corrections.
    assert "correct" not in plan("--region", "GB", "--region", "ES", *WINDOW, "--no-forecast-correction").stdout


def test_a_region_that_cannot_be_corrected_is_planned_as_without_the_flag() -> None:
    plain = plan_json("--region", "ES", *WINDOW)
    asked = plan_json("--region", "ES", *WINDOW, "--forecast-correction")
    assert not asked.pop("forecast_correction")["regions"]["ES"]["applied"]
    assert asked == plain
