"""``greenflow prefect schedule --forecast-correction``: the flag reaches the core, and the output says per region
whether the forecast was corrected.

Creating the flow run needs a Prefect server (tests/prefect/test_deferral.py covers that end to end); here
``schedule_green`` plans for real, with the options the CLI gave it, and stops short of Prefect.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from greenflow.cli.main import app
from greenflow.ledger import Identity
from greenflow.lifecycle import Lifecycle
from greenflow.options import PLANNING_OPTION_NAMES, check_option_names
from greenflow.spec import CarbonSpec

COMMON = ["--provider", "trace", "--provider-option", "now=2023-03-28T14:00Z", "--duration", "2h"]


@pytest.fixture
def planned(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[dict[str, Any]]:
    """The options each ``schedule_green`` call got; the call plans as the real one does, without Prefect."""
    if "prefect" not in sys.modules and "PREFECT_HOME" not in os.environ:
        monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))  # importing Prefect must not touch ~
    from greenflow.prefect import deferral

    calls: list[dict[str, Any]] = []

    def schedule_green(deployment: str | None, parameters: Any, *, region: str | None, regions: Any, **kw: Any) -> Any:
        options = {k: v for k, v in kw.items() if k not in ("budget", "credentials", "ledger", "flow_run_name", "tags")}
        check_option_names(options, PLANNING_OPTION_NAMES)  # as schedule_green checks them
        calls.append(options)
        spec = CarbonSpec.build(region=region, regions=list(regions), **options)
        decision = Lifecycle(spec, Identity("prefect", "f", "r", "schedule_green")).plan()
        return deferral.ScheduledRun("id-1", "green-run", str(deployment), decision.wake_at, decision, decision.region)

    monkeypatch.setattr(deferral, "schedule_green", schedule_green)
    return calls


def schedule(*args: str) -> Result:
    return CliRunner().invoke(app, ["prefect", "schedule", "train/nightly", *args], catch_exceptions=False)


def test_the_flag_turns_the_correction_on_and_the_json_shows_it_per_region(planned: list[dict[str, Any]]) -> None:
    result = schedule(
        "--region", "GB", "--also-region", "ES", *COMMON, "--max-delay", "20h", "--forecast-correction", "--json"
    )
    assert result.exit_code == 0, result.output
    assert planned[-1]["forecast_correction"] is True
    correction = json.loads(result.stdout)["decision"]["correction"]
    assert correction["mode"] == "bias+carry"
    assert correction["regions"]["GB"]["applied"]
    assert not correction["regions"]["ES"]["applied"]
    assert "serves its actuals as the forecast" in correction["regions"]["ES"]["reason"]

    plain = schedule("--region", "GB", *COMMON, "--max-delay", "20h", "--json")
    assert plain.exit_code == 0, plain.output
    assert planned[-1]["forecast_correction"] is False  # off unless asked, as the core's default
    assert json.loads(plain.stdout)["decision"]["correction"] is None


def test_the_human_output_says_why_a_region_was_not_corrected(planned: list[dict[str, Any]]) -> None:
    result = schedule("--region", "ES", *COMMON, "--max-delay", "20h", "--forecast-correction")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any(line.startswith("ES: forecast correction not applied:") for line in lines), result.stdout
    assert "flow run green-run (id-1) of train/nightly" in result.stdout
