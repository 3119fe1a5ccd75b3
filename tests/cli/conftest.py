"""Run the real ``greenflow`` Typer app in-process against a throw-away ledger."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from click.testing import Result
from typer.testing import CliRunner

from greenflow.cli.context import state
from greenflow.cli.main import app

Invoke = Callable[..., Result]


@pytest.fixture
def cli(ledger_url: str) -> Iterator[Invoke]:
    """``cli("budget", "list")`` runs ``greenflow --ledger URL budget list``."""
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(app, ["--ledger", ledger_url, *args], catch_exceptions=False)

    yield invoke
    state.ledger_url = None
