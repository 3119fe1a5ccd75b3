"""Interruptible attempts in a report: one attempt however many segment entries it left, its segments'
energy, emissions and savings each counted once, its savings under its own outcome and its SCI over all
its segments.

The segment entries are real (``tests/report/segmented_ledger.py``: the core's segment runner on a
replayed trace); one ordinary entry stands beside them.
"""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from pathlib import Path

import pytest

from greenflow.clock import utcnow
from greenflow.ledger import Entry, Identity, Ledger
from greenflow.report import Report, ReportPeriod, build_report
from greenflow.report.render_csv import render_csv
from greenflow.report.render_html import render_html
from tests.report.segmented_ledger import deferred_in_two, past_the_plan

Built = tuple[Report, list[Entry], list[Entry], Entry]


def _sum(entries: list[Entry], name: str) -> float:
    return sum(getattr(e, name) or 0.0 for e in entries)


@pytest.fixture(scope="module")
def ledger_with_segments(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """A deferred attempt in 2 segments, one run on past its plan in 3, and one ordinary attempt."""
    tmp_path: Path = tmp_path_factory.mktemp("segments")
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    deferred = deferred_in_two(ledger, tmp_path, task="train")
    past = past_the_plan(ledger, tmp_path, task="finetune")
    ordinary = ledger.append(
        Entry.for_attempt(
            Identity("airflow", "train_llm", "manual__1", "evaluate"),
            "ran_now",
            region="NO",
            energy_kwh=0.5,
            energy_gpu_kwh=0.5,
            method_gpu="nvml_energy_counter",
            intensity_g_per_kwh=30.0,
            operational_g=15.0,
            counterfactual_g=15.0,
            saved_g=0.0,
        )
    )
    today = utcnow().date()
    period = ReportPeriod.parse(start=(today - timedelta(days=1)).isoformat(), end=today.isoformat())
    report = build_report(ledger, period, verify=False)
    ledger.close()
    return report, deferred, past, ordinary


def test_an_interruptible_attempt_counts_once_with_its_segments_summed(ledger_with_segments: Built) -> None:
    report, deferred, past, ordinary = ledger_with_segments
    data = report.to_dict()
    everything = [*deferred, *past, ordinary]

    assert data["counts"]["entries"] == 6
    assert data["counts"]["attempts"] == 3  # 2 + 3 segment entries are 2 attempts
    assert data["counts"]["segments"] == 5
    total = data["breakdowns"]["total"][0]
    assert (total["entries"], total["attempts"]) == (6, 3)
    # Every segment's own energy, emissions and saving, once.
    assert data["figures"]["energy_kwh"]["value"] == pytest.approx(_sum(everything, "energy_kwh"))
    assert data["figures"]["location_based_g"]["value"] == pytest.approx(_sum(everything, "operational_g"))
    assert data["figures"]["saved_g"]["value"] == pytest.approx(_sum(everything, "saved_g"))
    assert total["saved_g"] == pytest.approx(_sum(everything, "saved_g"))
    # CSV lines carry the attempts beside the entries.
    rows = list(csv.DictReader(io.StringIO(render_csv(report))))
    assert (rows[0]["dimension"], rows[0]["entries"], rows[0]["attempts"]) == ("total", "6", "3")
    assert "3 attempts: 5 entries are segments of interruptible attempts" in render_html(report)


def test_a_deferred_attempts_savings_are_all_its_segments_under_deferred(ledger_with_segments: Built) -> None:
    report, deferred, past, ordinary = ledger_with_segments
    data = report.to_dict()

    # The first segment's entry says "interrupted" (it paused as planned), but the attempt was deferred.
    assert deferred[0].decision == "interrupted"
    assert data["figures"]["deferral_saved_g"]["value"] == pytest.approx(_sum(deferred, "saved_g"))
    by_decision = data["savings_by_decision_g"]
    assert "interrupted" not in by_decision  # no attempt ended interrupted
    assert by_decision["deferred"] == pytest.approx(_sum(deferred, "saved_g"))
    assert by_decision["ran_now"] == pytest.approx(_sum([*past, ordinary], "saved_g"))
    runs = data["charts"]["runs"]
    assert sorted(run["decision"] for run in runs) == ["deferred"] * 2 + ["ran_now"] * 4


def test_the_sci_of_an_interruptible_attempt_is_all_its_segments_over_its_units(ledger_with_segments: Built) -> None:
    report, deferred, past, _ordinary = ledger_with_segments

    (line,) = report.sci
    # Two runs (the attempts), 3 epochs each declared on their final entries; every segment's emissions.
    assert (line.functional_unit, line.entries, line.units, line.excluded) == ("epoch", 2, 6.0, 0)
    assert line.operational_g == pytest.approx(_sum([*deferred, *past], "operational_g"))
    assert line.operational_g > _sum([deferred[-1], past[-1]], "operational_g")
    assert line.sci_g_per_unit == pytest.approx(line.operational_g / 6)
