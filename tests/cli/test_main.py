"""The ``greenflow`` command's root: ``--version`` and a bare call."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

from typer.testing import CliRunner

import greenflow
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


def test_version_is_answered_without_importing_the_command_line_framework_or_the_ledger() -> None:
    # `greenflow --version` is what install checks and health probes run: it must not cost the ~1 s
    # of CPU that importing Typer, Rich, SQLAlchemy and the lifecycle does.
    code = (
        "import sys; from greenflow.cli.launcher import main; code = main(['--version']); "
        "print(code, sorted({m.split('.')[0] for m in sys.modules} & {'typer', 'rich', 'sqlalchemy', 'click'}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.splitlines() == [greenflow.__version__, "0 []"]
