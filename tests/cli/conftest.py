"""Run the real ``greenflow`` Typer app in-process against a throw-away ledger."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from click.testing import Result
from typer.testing import CliRunner

from greenflow.cli.context import state
from greenflow.cli.main import app

Invoke = Callable[..., Result]


@pytest.fixture(autouse=True)
def _isolated_spool(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """`greenflow run` spools into a temp dir here (and so do the processes the tests start)."""
    monkeypatch.setenv("GREENFLOW_SPOOL_DIR", str(tmp_path_factory.mktemp("spool")))
    monkeypatch.delenv("GREENFLOW_LEDGER_WRITE", raising=False)
    for name in ("KUBERNETES_SERVICE_HOST", "SLURM_JOB_ID"):  # `auto` would pick `wait` there
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def cli(ledger_url: str) -> Iterator[Invoke]:
    """``cli("budget", "list")`` runs ``greenflow --ledger URL budget list``."""
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(app, ["--ledger", ledger_url, *args], catch_exceptions=False)

    yield invoke
    state.ledger_url = None
