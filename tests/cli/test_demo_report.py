"""The demo's closing report: it reads the demo's ledger without changing which ledger the CLI uses."""

from __future__ import annotations

from pathlib import Path

import pytest

from greenflow.cli.context import state
from greenflow.cli.demo_report import print_report
from greenflow.demo.layout import DemoLayout
from greenflow.ledger import Ledger


def test_the_report_reads_the_demo_ledger_and_leaves_the_cli_ledger_option_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = DemoLayout(root=tmp_path / "demo")
    layout.root.mkdir()
    Ledger(layout.ledger_url).close()  # an empty demo ledger: the report still verifies it
    chosen = f"sqlite:///{tmp_path / 'mine.db'}"
    monkeypatch.setattr(state, "ledger_url", chosen)

    assert print_report(layout, ["airflow"], 1.0) is True

    assert state.ledger_url == chosen  # a later command in this process still works on the user's ledger
    assert not (tmp_path / "mine.db").exists()
    assert str(layout.ledger_path) in capsys.readouterr().out
