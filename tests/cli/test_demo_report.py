"""The demo's closing report: it reads the demo's ledger without changing which ledger the CLI uses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from greenflow.cli.context import state
from greenflow.cli.demo_report import print_report
from greenflow.demo.layout import DemoLayout
from greenflow.intensity.cache import ForecastCache
from greenflow.intensity.providers.trace import TraceProvider
from greenflow.ledger import Identity, Ledger
from greenflow.lifecycle import Lifecycle
from greenflow.metering import Meter, SimulatedPower
from greenflow.spec import CarbonSpec
from greenflow.units import format_mass

MIDNIGHT = datetime(2022, 6, 1, tzinfo=UTC)


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


def test_simulated_savings_are_of_real_size_and_labelled_simulated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = DemoLayout(root=tmp_path / "demo")
    layout.root.mkdir()
    ledger = Ledger(layout.ledger_url)
    provider = TraceProvider(region="ES", now=MIDNIGHT)
    lifecycle = Lifecycle(
        CarbonSpec.build(region="ES", provider="trace", expected_duration="2h", max_delay="10h"),
        Identity("airflow", "greenflow_example_training", "run-1", "train", 1),
        ledger=ledger,
        cache=ForecastCache(),
        provider=provider,
        meter_factory=lambda: Meter(
            simulated_gpu=SimulatedPower(300, duration=timedelta(hours=2)),
            environ={"CUDA_VISIBLE_DEVICES": ""},
            rapl_root=tmp_path / "no-rapl",
        ),
    )
    decision = lifecycle.plan()
    provider.set_now(decision.start_at)
    entry = lifecycle.run(decision, lambda: None).entry
    ledger.close()
    assert entry.saved_g is not None and entry.saved_g > 10  # 0.6 kWh moved from midnight to the midday window

    assert print_report(layout, ["airflow"], 1.0) is True

    out = " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert f"saved in total: {format_mass(entry.saved_g)} (SIMULATED energy) over 1 run(s)" in out
    assert "600 Wh (GPU SIMULATED)" in out
    assert "SIMULATED: the GPU energy of train (airflow) is simulated, not measured" in out
