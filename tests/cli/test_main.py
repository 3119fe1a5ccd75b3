"""The ``greenflow`` command's root: ``--version`` and a bare call."""

from __future__ import annotations

from importlib.metadata import version

from typer.testing import CliRunner

from greenflow import distribution_name
from greenflow.cli.main import app


def test_version_prints_the_installed_distribution_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == version(distribution_name())


def test_options_without_a_command_show_the_commands_and_fail() -> None:
    result = CliRunner().invoke(app, ["--ledger", "sqlite:///unused.db"])
    assert result.exit_code == 2
    assert "run" in result.stdout and "ledger" in result.stdout
