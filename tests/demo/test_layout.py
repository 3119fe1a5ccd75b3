"""The demo directory: rebuilt on every run, but never someone else's directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from greenflow.demo.layout import MARKER, DemoLayout, find_examples
from greenflow.errors import InvalidInput

REPO = Path(__file__).resolve().parents[2]


def test_a_rerun_starts_from_an_empty_demo_directory(tmp_path: Path) -> None:
    layout = DemoLayout(tmp_path / "demo")
    layout.prepare_fresh()
    layout.ledger_path.write_text("old ledger")
    (layout.logs / "airflow.log").write_text("old log")
    layout.prepare_fresh()
    assert not layout.ledger_path.exists() and not (layout.logs / "airflow.log").exists()
    assert (layout.root / MARKER).exists() and (layout.airflow_home / "dags").is_dir()
    assert layout.ledger_url == f"sqlite:///{tmp_path / 'demo' / 'ledger.db'}"


def test_a_directory_the_demo_did_not_make_is_refused_and_left_alone(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(InvalidInput) as refused:
        DemoLayout(tmp_path).prepare_fresh()
    assert str(tmp_path) in refused.value.message and "new or empty directory" in (refused.value.fix or "")
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_the_examples_are_found_from_the_checkout_or_named_when_missing(tmp_path: Path) -> None:
    examples = find_examples(tmp_path, REPO / "greenflow")  # not under the cwd: the package's checkout
    assert examples.dag_file == REPO / "dags" / "greenflow_example_training.py"
    assert examples.flow_file == REPO / "flows" / "training.py"
    with pytest.raises(InvalidInput) as missing:
        find_examples(tmp_path, tmp_path / "site-packages" / "greenflow")
    assert "greenflow_example_training.py" in missing.value.message and "make demo" in (missing.value.fix or "")
