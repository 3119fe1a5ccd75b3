"""The launcher's command-line parsing and choices, and what its fast path must not import."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest
import typer

from greenflow.cli.fast_run import _RUN_OPTIONS, parse_run
from greenflow.cli.flags import given_options
from greenflow.cli.main import app
from greenflow.cli.write_mode import write_mode
from greenflow.errors import InvalidInput
from greenflow.options import EntryPoint, options_for
from greenflow.spec import CarbonSpec

# The commands' own flags; every other flag is a carbon option of the table.
RUN_ONLY = {"--workflow", "--run-id", "--task", "--attempt", "--quiet", "-q", "--decision", "--ledger-write"}
PLAN_ONLY = {"--earliest", "--now", "--trace", "--column", "--actuals", "--json", "--duration"}


def _flags(name: str) -> set[str]:
    command = typer.main.get_command(app).commands[name]  # type: ignore[attr-defined]
    return {opt for param in command.params for opt in (*param.opts, *param.secondary_opts) if opt.startswith("-")}


def _table_flags(entry_point: EntryPoint) -> set[str]:
    flags = {option.flag for option in options_for(entry_point) if option.flag is not None}
    # A bool option is a switch: its --no- spelling turns it off (forecast_correction's default is "auto").
    switches = {f"--no-{o.flag[2:]}" for o in options_for(entry_point) if o.flag and "bool" in o.type.split(" | ")}
    return flags | switches


def test_the_launcher_knows_every_option_of_greenflow_run() -> None:
    assert _flags("run") == set(_RUN_OPTIONS)


@pytest.mark.parametrize(("entry_point", "own"), [("run", RUN_ONLY), ("plan", PLAN_ONLY)])
def test_the_commands_take_exactly_the_tables_options(entry_point: EntryPoint, own: set[str]) -> None:
    table = _table_flags(entry_point)
    assert "--threshold" in table and "--max-staleness" in table  # flags the commands used to lack
    assert _flags(entry_point) - own == table
    if entry_point == "run":
        assert set(_RUN_OPTIONS) - own == table
        assert {"--embodied", "--functional-unit", "--functional-units", "--sample-interval"} <= table
        assert {"--interruptible", "--resume-overhead", "--min-segment", "--grace"} <= table


def test_the_commands_defaults_are_the_tables() -> None:
    # No flag given: the spec each command declares is the table's defaults at its entry point.
    from greenflow.options import defaults_for

    for entry_point in ("run", "plan"):
        spec = CarbonSpec.declare(given_options({}, entry_point), entry_point)
        expected = CarbonSpec.declare(defaults_for(entry_point), entry_point)
        assert spec == expected
    run_spec = CarbonSpec.declare(given_options({}, "run"), "run")
    assert run_spec.on_provider_error == "wait" and run_spec.max_delay == timedelta(0)


def test_a_plain_run_is_parsed_for_the_fast_path() -> None:
    request = parse_run(
        ["--ledger", "sqlite:///x.db", "run", "-q", "--tag", "a", "--tag=b", "--pue", "1.2", "--", "ls"]
    )
    assert request is not None
    assert request.command == ("ls",)
    assert request.ledger == "sqlite:///x.db"
    assert request.get("quiet") is True and request.get("tag") == ["a", "b"] and request.get("pue") == "1.2"
    assert not request.plans_or_reserves
    assert given_options(request.options, "run") == {"tags": ["a", "b"], "pue": "1.2"}
    assert CarbonSpec.declare(given_options(request.options, "run"), "run").pue == 1.2


def test_options_end_at_the_command_as_with_typer() -> None:
    request = parse_run(["run", "--task", "t", "python", "train.py", "--task", "inner"])
    assert request is not None
    assert request.command == ("python", "train.py", "--task", "inner")
    assert request.get("task") == "t"


@pytest.mark.parametrize(
    "args",
    [
        ["run", "--help"],
        ["run", "--nope", "--", "true"],
        ["run", "--attempt", "first", "--", "true"],
        ["run", "--"],
        ["--version"],
        ["budget", "list"],
        ["run", "--task", "--", "true"],
    ],
)
def test_anything_unusual_is_left_to_typer(args: list[str]) -> None:
    assert parse_run(args) is None


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--region", "national"), ("--budget", "gpu"), ("--decision", "env:X"), ("--provider", "trace")],
)
def test_runs_that_plan_or_reserve_take_the_full_path(flag: str, value: str) -> None:
    request = parse_run(["run", flag, value, "--", "true"])
    assert request is not None and request.plans_or_reserves


def test_write_mode_waits_where_the_command_ending_may_take_everything_down() -> None:
    assert write_mode(None, {}, pid=4242) == "background"
    assert write_mode(None, {}, pid=1) == "wait"
    assert write_mode(None, {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, pid=4242) == "wait"
    assert write_mode(None, {"SLURM_JOB_ID": "77"}, pid=4242) == "wait"
    assert write_mode("background", {"SLURM_JOB_ID": "77"}, pid=1) == "background"
    assert write_mode(None, {"GREENFLOW_LEDGER_WRITE": "wait"}, pid=4242) == "wait"
    with pytest.raises(InvalidInput, match="'later' is not one of"):
        write_mode("later", {}, pid=4242)


def test_the_fast_path_imports_neither_sqlalchemy_nor_typer_nor_rich_nor_a_provider_client() -> None:
    # What `greenflow run -- CMD` loads before CMD starts: no CLI framework, no ledger, and (with no region,
    # nothing to plan) no HTTP client nor the forecast machinery.
    code = (
        "import sys, greenflow.cli.launcher, greenflow.spool, greenflow.metering.meter\n"
        "from greenflow.cli.fast_run import parse_run\n"
        "from greenflow.cli.flags import given_options\n"
        "from greenflow.spec import CarbonSpec\n"
        "request = parse_run(['run', '--pue', '1.2', '--', 'true'])\n"
        "CarbonSpec.declare(given_options(request.options, 'run'), 'run')\n"
        "heavy = ('sqlalchemy', 'typer', 'rich', 'click', 'requests', 'greenflow.intensity.cache')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("switch", "expected"),
    [([], "auto"), (["--forecast-correction"], "bias+carry"), (["--no-forecast-correction"], None)],
)
def test_a_switch_given_either_way_or_not_at_all(switch: list[str], expected: str | None) -> None:
    # Without the switch the table's default ("auto") stands; --no-... turns it off, on both paths.
    request = parse_run(["run", *switch, "--", "true"])
    assert request is not None
    assert CarbonSpec.declare(given_options(request.options, "run"), "run").forecast_correction == expected
    typer_path = typer.main.get_command(app).commands["run"]  # type: ignore[attr-defined]
    context = typer_path.make_context("run", [*switch, "--", "true"])
    options = {k: v for k, v in context.params.items() if k not in {"command"}}
    assert CarbonSpec.declare(given_options(options, "run"), "run").forecast_correction == expected
