"""``greenflow plan`` end to end through Typer, on trace files (a small one written here, and shipped data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from click.testing import Result
from typer.testing import CliRunner

from greenflow.cli import plan as plan_cli

JSON_KEYS = {
    "decision",
    "region",
    "start",
    "end",
    "expected_gco2_per_kwh",
    "now_gco2_per_kwh",
    "savings_pct",
    "deferred_seconds",
    "provider",
}


def run(*args: str) -> Result:
    app = typer.Typer()
    app.command("plan")(plan_cli.plan_command)

    @app.command("other")
    def _other() -> None:  # a second command keeps Typer from collapsing "plan" into the root
        """Unused."""

    return CliRunner().invoke(app, ["plan", *args], catch_exceptions=False)


@pytest.fixture
def trace(tmp_path: Path) -> Path:
    """Hourly intensity from 2024-05-01T00:00Z: 300, 200, 100, 400, 50, 50, 300."""
    path = tmp_path / "hourly.csv"
    rows = [f"2024-05-01T{hour:02d}:00:00Z,{value}" for hour, value in enumerate([300, 200, 100, 400, 50, 50, 300])]
    path.write_text("timestamp,gco2_per_kwh\n" + "\n".join(rows) + "\n")
    return path


def test_json_has_the_documented_shape_and_the_planned_window(trace: Path) -> None:
    result = run(
        "--trace", str(trace), "--region", "home", "--now", "2024-05-01T00:00Z",
        "--duration", "2h", "--deadline", "2024-05-01T07:00Z", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert set(payload) == JSON_KEYS
    assert payload == {
        "decision": "defer",
        "region": "home",
        "start": "2024-05-01T04:00:00Z",
        "end": "2024-05-01T06:00:00Z",
        "expected_gco2_per_kwh": pytest.approx(50.0),
        "now_gco2_per_kwh": pytest.approx(250.0),
        "savings_pct": pytest.approx(80.0),
        "deferred_seconds": 14400.0,
        "provider": "trace",
    }


def test_max_delay_counts_from_the_earliest_start(trace: Path) -> None:
    result = run(
        "--provider", "trace", "--trace", str(trace), "--now", "2024-05-01T00:00Z", "--earliest",
        "2024-05-01T01:00Z", "--duration", "90m", "--max-delay", "PT1H", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["region"] == "hourly"  # the trace file's name when no --region is given
    assert payload["start"] == "2024-05-01T01:30:00Z"  # [01:30, 03:00): 30 min of 200, an hour of 100
    assert payload["expected_gco2_per_kwh"] == pytest.approx((30 * 200 + 60 * 100) / 90)


def test_min_savings_and_threshold_reach_the_planner(trace: Path) -> None:
    common = [
        "--trace",
        str(trace),
        "--now",
        "2024-05-01T00:00Z",
        "--duration",
        "2h",
        "--deadline",
        "2024-05-01T07:00Z",
    ]
    payload = json.loads(run(*common, "--min-savings", "85", "--json").stdout)
    assert (payload["decision"], payload["start"], payload["savings_pct"]) == ("run_now", "2024-05-01T00:00:00Z", 0.0)
    payload = json.loads(run(*common, "--threshold", "160", "--json").stdout)
    assert payload["start"] == "2024-05-01T00:54:00Z"
    assert payload["expected_gco2_per_kwh"] == pytest.approx(160.0)


def test_text_output_says_why(trace: Path) -> None:
    result = run("--trace", str(trace), "--now", "2024-05-01T00:00Z", "--duration", "2h", "--max-delay", "5h")
    assert result.exit_code == 0, result.output
    assert "defer: start 2024-05-01T04:00:00Z" in result.stdout
    assert "Deferring 4h" in result.stdout


def test_several_shipped_regions_replay_real_data_with_attribution() -> None:
    result = run(
        "--provider", "trace", "--region", "ES", "--region", "NO", "--now", "2022-06-01T00:00Z",
        "--duration", "2h", "--max-delay", "12h", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["region"] == "NO"  # Norway's hydro grid is far cleaner than Spain's at any hour
    assert payload["now_gco2_per_kwh"] > payload["expected_gco2_per_kwh"]  # baseline: now, in ES
    assert "Electricity Maps" in payload["attribution"]


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--now", "2024-05-01T00:00", "--duration", "2h", "--max-delay", "1h"], "naive"),
        (["--now", "2024-05-01T00:00Z", "--duration", "2h", "--deadline", "2024-05-01T01:00Z"], "deadline="),
        (["--now", "2024-05-01T00:00Z", "--duration", "-2h", "--max-delay", "1h"], "negative"),
        (["--now", "2024-05-01T00:00Z", "--duration", "0m", "--max-delay", "1h"], "not positive"),
        (["--now", "2024-05-01T00:00Z", "--duration", "soon", "--max-delay", "1h"], "expected_duration='soon'"),
        (
            ["--now", "2024-05-01T00:00Z", "--duration", "1h", "--max-delay", "1h", "--deadline", "2024-05-02T00:00Z"],
            "both deadline and max_delay are set",
        ),
        (["--now", "2024-05-01T00:00Z", "--min-savings", "150"], "min_savings=150 is out of range"),
        (["--now", "2024-05-01T00:00Z", "--threshold", "-10"], "threshold=-10 is out of range"),
        (["--now", "2024-05-01T00:00Z", "--max-staleness", "soon"], "max_staleness='soon'"),
        (["--now", "2024-05-01T00:00Z", "--on-provider-error", "retry"], "on_provider_error='retry' is not one of"),
        (["--now", "2024-05-01T00:00Z", "--duration", "1h", "--max-delay", "1h", "--column", "nope"], "'nope'"),
        (["--now", "2024-05-01T00:00Z", "--duration", "1h", "--max-delay", "1h", "--min-savings", "-5"], "-5"),
    ],
)
def test_bad_input_is_one_line_naming_the_value_and_exits_2(trace: Path, args: list[str], named: str) -> None:
    result = run("--trace", str(trace), *args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert named in lines[0]


def test_unknown_provider_and_replay_flags_on_a_live_provider_exit_2() -> None:
    result = run("--provider", "nope", "--region", "ES", "--duration", "1h", "--max-delay", "1h")
    assert result.exit_code == 2 and "provider='nope' is unknown (use one of ukgrid" in result.stderr
    result = run(
        "--provider", "ukgrid", "--region", "GB", "--now", "2024-05-01T00:00Z", "--duration", "1h", "--max-delay", "1h"
    )
    assert result.exit_code == 2 and "--now given with --provider ukgrid" in result.stderr
    result = run(
        "--provider", "trace", "--region", "XX", "--now", "2024-05-01T00:00Z", "--duration", "1h", "--max-delay", "1h"
    )
    assert result.exit_code == 2 and "'XX'" in result.stderr


def test_without_a_duration_or_a_delay_the_tables_defaults_apply(trace: Path) -> None:
    # One default per option for every entry point: 1 h of work; a command typed at a shell starts now
    # unless given --max-delay or --deadline (the table's `plan` exception), as `greenflow run` does.
    payload = json.loads(run("--trace", str(trace), "--now", "2024-05-01T00:00Z", "--json").stdout)
    assert (payload["decision"], payload["start"], payload["end"]) == (
        "run_now",
        "2024-05-01T00:00:00Z",
        "2024-05-01T01:00:00Z",
    )


def test_deadline_may_be_a_duration_after_the_request_and_expected_duration_is_the_flags_name(trace: Path) -> None:
    by_time = run(
        "--trace", str(trace), "--now", "2024-05-01T00:00Z", "--expected-duration", "2h",
        "--deadline", "2024-05-01T07:00Z", "--json",
    )  # fmt: skip
    by_duration = run(
        "--trace", str(trace), "--now", "2024-05-01T00:00Z", "--duration", "2h", "--deadline", "7h", "--json"
    )
    assert by_time.exit_code == by_duration.exit_code == 0, by_time.output + by_duration.output
    assert json.loads(by_time.stdout) == json.loads(by_duration.stdout)
    assert json.loads(by_time.stdout)["start"] == "2024-05-01T04:00:00Z"


def test_a_deadline_already_past_is_refused(trace: Path) -> None:
    result = run(
        "--trace", str(trace), "--now", "2024-05-01T05:00Z", "--duration", "1h", "--deadline", "2024-05-01T03:00Z"
    )
    assert result.exit_code == 2
    assert "deadline=2024-05-01T03:00:00+00:00 leaves no room" in result.stderr


@pytest.fixture
def provider_down(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """ukgrid at a port nobody listens on, given up on within a second; a ledger file that must stay absent."""
    monkeypatch.setenv("GREENFLOW_HTTP_TOTAL_TIME", "0.3")
    monkeypatch.setenv("GREENFLOW_LEDGER_URL", f"sqlite:///{tmp_path / 'ledger.db'}")
    return ["--provider", "ukgrid", "--region", "national", "--provider-option", "base_url=http://127.0.0.1:9"]


@pytest.mark.parametrize(
    ("policy", "decision"), [("run", "run_now"), ("wait", "retry"), (None, "retry")], ids=["run", "wait", "default"]
)
def test_the_outage_policy_answers_when_no_forecast_can_be_had(
    provider_down: list[str], tmp_path: Path, policy: str | None, decision: str
) -> None:
    chosen = [] if policy is None else ["--on-provider-error", policy]
    result = run(*provider_down, "--max-delay", "2h", *chosen, "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["decision"] == decision  # "wait" is the table's default: retry until the latest start
    assert payload["expected_gco2_per_kwh"] is None and payload["now_gco2_per_kwh"] is None
    assert not (tmp_path / "ledger.db").exists()  # a plan writes nothing


def test_on_provider_error_fail_exits_with_the_outage_and_records_nothing(
    provider_down: list[str], tmp_path: Path
) -> None:
    result = run(*provider_down, "--max-delay", "2h", "--on-provider-error", "fail")
    assert result.exit_code == 2
    assert "on_provider_error=fail" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "ledger.db").exists()  # no `failed` attempt for a plan
