"""Interruptible attempts in the Carbon Ledger UI: the Carbon tab shows an attempt's segments (planned and
run) and lists their entries with one total; the ledger list marks segment entries and its totals count
an attempt once however many segments it ran in, each segment's energy and saving once.

The entries are real: interruptible attempts driven through the core (``tests/report/segmented_ledger.py``:
``run_segments`` with a callable, ``run_command`` with a command stopped by SIGTERM at its segment's end)
on the shipped Norwegian trace, replayed fast, metered by the autospec fake of nvidia-ml-py.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from greenflow.ledger import Ledger
from greenflow.steps import Run
from tests.report.segmented_ledger import RUN, interruptible, past_the_plan, stopped_by_sigterm

TI = "/greenflow/api/task-instance"


def _embedded(html: str, element_id: str) -> Any:
    return json.loads(re.search(rf'<script type="application/json" id="{element_id}">(.*?)</script>', html, re.S)[1])


def _total(values: list[float | None]) -> float:
    return sum(v for v in values if v is not None)


# -- the Carbon tab ------------------------------------------------------------------------------------------


def test_the_carbon_tab_shows_one_attempt_with_its_segments_planned_and_run_and_one_total(
    make_client: Callable[..., Any], sqlite_url: str, tmp_path: Path
) -> None:
    ledger = Ledger(sqlite_url)
    entries = past_the_plan(ledger, tmp_path)
    client = make_client(sqlite_url)
    params = {"dag_id": "train_llm", "run_id": RUN, "task_id": "train"}

    body = client.get(TI, params=params).json()

    (attempt,) = body["attempts"]  # three entries, one attempt
    final = entries[-1]
    assert (attempt["attempt"], attempt["decision"], attempt["entry_id"]) == (1, "ran_now", final.entry_id)
    assert attempt["in_progress"] is False
    segments = attempt["segments"]
    assert [s["entry_id"] for s in segments] == [e.entry_id for e in entries]
    assert [s["label"] for s in segments] == ["segment 1/2", "segment 2/2", "segment 3, past the 2 planned"]
    assert [s["final"] for s in segments] == [False, False, True]
    assert "ran on to completion" in segments[2]["past_plan"] and segments[0]["past_plan"] is None
    # The attempt's figures are its segments' sums: each segment's energy, emissions and saving once.
    assert attempt["energy"]["total_kwh"] == pytest.approx(_total([e.energy_kwh for e in entries]))
    assert attempt["accounting"]["operational_g"] == pytest.approx(_total([e.operational_g for e in entries]))
    assert attempt["accounting"]["saved_g"] == pytest.approx(_total([e.saved_g for e in entries]))
    assert attempt["accounting"]["counterfactual_g"] == pytest.approx(_total([e.counterfactual_g for e in entries]))
    assert [s["energy_kwh"] for s in segments] == pytest.approx([e.energy_kwh for e in entries])
    # SCI over the whole attempt: all its emissions per the 3 epochs its final entry declares, as the core
    # stores it on that entry.
    assert attempt["accounting"]["sci_g_per_unit"] == pytest.approx(_total([e.operational_g for e in entries]) / 3)
    assert attempt["accounting"]["sci_g_per_unit"] == pytest.approx(final.sci_g_per_unit)
    # Started with its first segment; the intensity during the run covers every segment.
    assert attempt["actual_start"] == entries[0].actual_start.isoformat()
    assert len(attempt["run_intensity"]["slots"]) == sum(len(e.measurement_notes["carbon"]["slots"]) for e in entries)
    # The planned segments, for the chart: the plan the attempt ran on.
    plan = final.extra["plan"]["segments"]
    assert [(s["start"], s["end"]) for s in attempt["window"]["segments"]] == [(s["start"], s["end"]) for s in plan]

    html = client.get("/greenflow/task", params=params).text
    assert re.findall(r'<tr data-segment="(\d+)"', html) == ["0", "1", "2"]
    assert html.count('<span class="badge decision-paused">paused</span>') == 2
    assert "segment 3, past the 2 planned" in html and "ran on to completion" in html
    assert "Attempt 1: 3 segments" in html  # the total row
    assert "the planned segments and the segments that ran" in html
    chart = _embedded(html, f"gf-attempt-{final.seq}")  # what the forecast chart draws
    assert len(chart["window"]["segments"]) == 2 and len(chart["segments"]) == 3
    assert all(s["actual_start"] and s["ended_at"] for s in chart["segments"])
    assert 'class="attempts"' not in html  # one attempt: no attempt picker with one button per segment


def test_a_command_stopped_at_its_segments_end_shows_how_it_ended(
    make_client: Callable[..., Any], sqlite_url: str, tmp_path: Path
) -> None:
    ledger = Ledger(sqlite_url)
    first, last = stopped_by_sigterm(ledger, tmp_path)
    client = make_client(sqlite_url)
    params = {"dag_id": "train_llm", "run_id": RUN, "task_id": "finetune"}

    (attempt,) = client.get(TI, params=params).json()["attempts"]

    stopped, done = attempt["segments"]
    assert (stopped["stopped"], stopped["exit_code"]) == ("SIGTERM at the segment's planned end", 143)
    assert (done["stopped"], done["exit_code"], done["final"]) == (None, 0, True)
    html = client.get("/greenflow/task", params=params).text
    assert "SIGTERM at the segment&#39;s planned end" in html and "exit code 143" in html
    assert f'data-entry="{first.entry_id}"' in html and f'data-entry="{last.entry_id}"' in html


def test_an_attempt_between_its_segments_is_shown_in_progress(
    make_client: Callable[..., Any], sqlite_url: str, tmp_path: Path
) -> None:
    ledger = Ledger(sqlite_url)
    lifecycle = interruptible(ledger, tmp_path, "train")
    step = lifecycle.advance()
    assert isinstance(step, Run)  # the first segment starts now
    with lifecycle.metered_segment(step.decision) as active:
        active.done = False  # checkpointed at the segment's end; the next segment is still to come
    client = make_client(sqlite_url)

    body = client.get(TI, params={"dag_id": "train_llm", "run_id": RUN, "task_id": "train"}).json()

    (attempt,) = body["attempts"]
    assert attempt["in_progress"] is True and attempt["decision"] == "interrupted"
    assert [s["label"] for s in attempt["segments"]] == ["segment 1/2"]


# -- the Carbon Ledger list and its totals -----------------------------------------------------------------


def test_the_ledger_marks_segment_entries_and_counts_an_interruptible_attempt_once(
    make_client: Callable[..., Any], ledger: Ledger, ledger_url: str, tmp_path: Path, ui: Any
) -> None:
    segments = past_the_plan(ledger, tmp_path)
    whole = ledger.append(ui.make_entry("train_llm", RUN, "evaluate", at=ui.NOW, kwh=0.5, intensity=200.0))
    client = make_client(ledger_url)

    rows = client.get("/greenflow/api/entries", params={"sort": "seq", "order": "asc"}).json()["entries"]
    assert [r["segment"] for r in rows] == [
        {"index": 0, "of": 2, "final": False, "label": "segment 1/2"},
        {"index": 1, "of": 2, "final": False, "label": "segment 2/2"},
        {"index": 2, "of": 2, "final": True, "label": "segment 3, past the 2 planned"},
        None,
    ]

    totals = client.get("/greenflow/api/totals").json()["totals"]
    assert (totals["entries"], totals["attempts"], totals["segments"]) == (4, 2, 3)
    everything = [*segments, whole]
    assert totals["energy_kwh"] == pytest.approx(_total([e.energy_kwh for e in everything]))
    assert totals["operational_g"] == pytest.approx(_total([e.operational_g for e in everything]))
    assert totals["saved_g"] == pytest.approx(_total([e.saved_g for e in everything]))
    (day,) = [d for d in client.get("/greenflow/api/totals").json()["days"] if d["entries"]]
    assert (day["attempts"], day["segments"]) == (2, 3)

    html = client.get("/greenflow/ledger").text
    assert html.count('<span class="badge decision-paused"') == 2  # planned pauses are not red interruptions
    assert "segment 2/2" in html and "segment 3, past the 2 planned · final" in html
    assert '0 / 2</div><div class="label">attempts deferred' in html
    assert "4 entries, 3 of them segments" in html
    # A segment's own SCI would be its emissions over the whole attempt's units: the list points to the attempt.
    assert html.count(">per attempt</a>") == 3

    exported = list(csv.DictReader(io.StringIO(client.get("/greenflow/api/entries.csv?sort=seq&order=asc").text)))
    assert [(r["segment_index"], r["segment_of"]) for r in exported] == [("0", "2"), ("1", "2"), ("2", "2"), ("", "")]
