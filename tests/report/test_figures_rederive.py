"""Every figure of the JSON report re-derives from `greenflow ledger export` with plain Python sums.

The recomputation below shares no code with greenflow.report: it reads the exported entries (the
auditor's view) and applies the rules docs/reports.md states.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from greenflow.clock import utcnow
from greenflow.ledger import Ledger
from greenflow.report import SCHEMA, ReportPeriod, build_report

REPO = Path(__file__).resolve().parents[2]
_SCRIPT = Path(sys.executable).parent / "greenflow"
GREENFLOW = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "greenflow.cli"]
approx = pytest.approx


def export(
    url: str, tmp_path: Path, since: str = "2026-11-01T00:00Z", until: str = "2026-12-01T00:00Z"
) -> list[dict[str, Any]]:
    """The entries of a period (November 2026 by default) as `greenflow ledger export` writes them."""
    out = tmp_path / "export.json"
    result = subprocess.run(
        [*GREENFLOW, "--ledger", url, "ledger", "export", "--format", "json", "-o", str(out),
         "--since", since, "--until", until],
        cwd=REPO, env=dict(os.environ), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, Any]] = json.loads(out.read_text())
    return rows


def pue(row: dict[str, Any]) -> float:
    return row["pue"] if row["pue"] is not None else 1.0


def estimated_part(row: dict[str, Any]) -> float:
    """kWh of the entry not metered: components with method estimate + energy no component explains."""
    parts = [(row[f"energy_{c}_kwh"], row[f"method_{c}"]) for c in ("gpu", "cpu", "dram")]
    metered = sum(kwh for kwh, method in parts if kwh is not None and method not in (None, "estimate"))
    return float(row["energy_kwh"] - metered)


# -- interruptible attempts: one entry per segment, linked by extra.segment.link ------------------------------
def segment(row: dict[str, Any]) -> dict[str, Any] | None:
    found = (row.get("extra") or {}).get("segment")
    return found if isinstance(found, dict) and found.get("link") else None


def opens_attempt(row: dict[str, Any]) -> bool:
    """An attempt is counted once: by its only entry, or by its first segment's."""
    found = segment(row)
    return found is None or found["index"] == 0


def attempt_key(row: dict[str, Any]) -> str:
    found = segment(row)
    return found["link"] if found else f"seq {row['seq']}"


def attempt_decisions(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Each attempt's decision: its final entry's, else its latest entry's."""
    decided: dict[str, str] = {}
    final: set[str] = set()
    for r in sorted(rows, key=lambda r: r["seq"]):
        key = attempt_key(r)
        if key not in final:
            decided[key] = r["decision"]
            found = segment(r)
            if found is None or found["final"]:
                final.add(key)
    return decided


def line(rows: list[dict[str, Any]]) -> dict[str, Any]:
    energy = [r for r in rows if r["energy_kwh"] is not None]

    def total(values: list[float]) -> float | None:
        return sum(values) if values else None

    return {
        "entries": len(rows),
        "attempts": len([r for r in rows if opens_attempt(r)]),
        "refused": len([r for r in rows if r["decision"] == "skipped_budget"]),
        "unmeasured": len([r for r in rows if r["decision"] != "skipped_budget" and r["energy_kwh"] is None]),
        "energy_kwh": total([r["energy_kwh"] for r in energy]),
        "facility_energy_kwh": total([r["energy_kwh"] * pue(r) for r in energy]),
        "estimated_kwh": total([estimated_part(r) for r in energy]),
        "location_based_g": total([r["operational_g"] for r in rows if r["operational_g"] is not None]),
        "embodied_g": total(
            [r["embodied_g"] for r in rows if r["embodied_g"] is not None and r["decision"] != "skipped_budget"]
        ),
        "saved_g": total([r["saved_g"] for r in rows if r["saved_g"] is not None]),
    }


def assert_same(got: dict[str, Any], expected: dict[str, Any]) -> None:
    for key, value in expected.items():
        assert got[key] == (None if value is None else approx(value)), key


def check_report(report: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    figures = report["figures"]

    def value(name: str) -> Any:
        return figures[name]["value"]

    energy_rows = [r for r in rows if r["energy_kwh"] is not None]
    refused = [r for r in rows if r["decision"] == "skipped_budget"]
    unmeasured = [r for r in rows if r["decision"] != "skipped_budget" and r["energy_kwh"] is None]
    energy = sum(r["energy_kwh"] for r in energy_rows)
    estimated = sum(
        r[f"energy_{c}_kwh"] for r in energy_rows for c in ("gpu", "cpu", "dram")
        if r[f"method_{c}"] == "estimate" and r[f"energy_{c}_kwh"] is not None
    )  # fmt: skip
    not_metered = sum(estimated_part(r) for r in energy_rows)
    assert report["counts"] == {
        "entries": len(rows),
        "attempts": len([r for r in rows if opens_attempt(r)]),
        "segments": len([r for r in rows if segment(r) is not None]),
        "refused_by_budget": len(refused),
        "ran_or_attempted": len(rows) - len(refused),
        "with_energy": len(energy_rows),
        "without_energy": len(unmeasured),
        "with_location_based_emissions": len([r for r in rows if r["operational_g"] is not None]),
    }
    assert value("energy_kwh") == approx(energy)
    assert value("energy_mwh") == approx(energy / 1000)
    assert value("facility_energy_kwh") == approx(sum(r["energy_kwh"] * pue(r) for r in energy_rows))
    assert value("estimated_energy_kwh") == approx(estimated)
    assert value("unattributed_energy_kwh") == approx(not_metered - estimated)
    assert value("measured_energy_kwh") == approx(energy - not_metered)
    assert value("estimated_share") == approx(not_metered / energy)

    located = [r for r in energy_rows if r["operational_g"] is not None]
    assert value("location_based_g") == approx(sum(r["operational_g"] for r in located))
    assert figures["location_based_g"]["coverage"] == approx(
        sum(r["energy_kwh"] * pue(r) for r in located) / sum(r["energy_kwh"] * pue(r) for r in energy_rows)
    )
    declared = [r["embodied_g"] for r in rows if r["embodied_g"] is not None and r["decision"] != "skipped_budget"]
    assert value("embodied_g") == (approx(sum(declared)) if declared else None)
    with_cf = [r for r in rows if r["saved_g"] is not None and r["counterfactual_g"] is not None]
    assert value("counterfactual_g") == approx(sum(r["counterfactual_g"] for r in with_cf))
    assert value("saved_g") == approx(sum(r["saved_g"] for r in with_cf))
    decided = attempt_decisions(rows)  # a segment's saving counts under its attempt's decision
    deferred = [r["saved_g"] for r in with_cf if decided[attempt_key(r)] == "deferred"]
    assert value("deferral_saved_g") == (approx(sum(deferred)) if deferred else None)
    assert value("budget_refusals") == len(refused)

    by_method: dict[str, float] = defaultdict(float)
    by_component: dict[str, float] = defaultdict(float)
    for r in energy_rows:
        explained = 0.0
        for c in ("gpu", "cpu", "dram"):
            if r[f"energy_{c}_kwh"] is not None:
                by_method[r[f"method_{c}"] or "unrecorded"] += r[f"energy_{c}_kwh"]
                by_component[c] += r[f"energy_{c}_kwh"]
                explained += r[f"energy_{c}_kwh"]
        if abs(r["energy_kwh"] - explained) > 1e-9 * r["energy_kwh"]:
            by_method["unrecorded"] += r["energy_kwh"] - explained
            by_component["unattributed"] += r["energy_kwh"] - explained
    assert report["energy_by_method_kwh"] == approx(dict(by_method))
    assert report["energy_by_component_kwh"] == approx(dict(by_component))

    # SCI per run (an attempt: an interruptible one's segments together, its units on its final entry).
    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        runs[attempt_key(r)].append(r)
    sci: dict[str, list[list[dict[str, Any]]]] = defaultdict(list)
    for run in runs.values():
        declared = [r for r in run if r["functional_unit"] and r["functional_units"]]
        if declared and all(r["operational_g"] is not None for r in run):
            sci[declared[-1]["functional_unit"]].append(run)
    assert [s["functional_unit"] for s in report["sci"]] == sorted(sci)
    for s in report["sci"]:
        members = [r for run in sci[s["functional_unit"]] for r in run]
        numerator = sum(r["operational_g"] + (r["embodied_g"] or 0.0) for r in members)
        assert s["sci_g_per_unit"] == approx(numerator / sum(r["functional_units"] or 0.0 for r in members))
        assert s["entries"] == len(sci[s["functional_unit"]])
        assert s["energy_kwh"] == approx(sum((r["energy_kwh"] or 0.0) * pue(r) for r in members))

    keys = {
        "total": lambda r: "all",
        "team": lambda r: r["team"] or "(none)",
        "workflow": lambda r: r["workflow_id"],
        "region": lambda r: r["region"] or "(none)",
        "month": lambda r: r["recorded_at"][:7],
        "day": lambda r: r["recorded_at"][:10],
    }
    for dimension, key_of in keys.items():
        groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            groups[key_of(r)].append(r)
        lines = report["breakdowns"][dimension]
        assert [entry["key"] for entry in lines] == sorted(groups), dimension
        for got in lines:
            assert_same(got, line(groups[got["key"]]))

    listed = report["evidence"]["unmeasured_attempts"]
    assert [u["seq"] for u in listed] == [r["seq"] for r in unmeasured]
    for u, r in zip(listed, unmeasured, strict=True):
        for part in r["measurement_notes"].values():
            assert part in u["reason"]
        if r["error"]:
            assert r["error"] in u["reason"]

    budgets = {b["name"]: b for b in report["budgets"]}
    for name in {r["budget"] for r in rows if r["budget"]}:
        mine = [r for r in rows if r["budget"] == name]
        assert budgets[name]["refusals"] == len([r for r in mine if r["decision"] == "skipped_budget"])
        charged = [r["charged_g"] for r in mine if r["charged_g"] is not None]
        assert budgets[name]["charged"] == (approx(sum(charged)) if charged else None)


def test_every_figure_rederives_from_the_export(mixed_ledger_url: str, tmp_path: Path) -> None:
    rows = export(mixed_ledger_url, tmp_path)
    ledger = Ledger(mixed_ledger_url)
    report = build_report(ledger, ReportPeriod.parse("2026-11"), "all").to_dict()
    assert report["schema"] == SCHEMA
    # The fixture covers what the rules are about: otherwise the comparisons below prove little.
    decisions = {r["decision"] for r in rows}
    assert {"ran_now", "deferred", "skipped_budget"} <= decisions
    assert any(r["energy_kwh"] is None and r["decision"] != "skipped_budget" for r in rows)
    assert any(r["method_cpu"] == "estimate" for r in rows) and any(
        r["method_gpu"] == "nvml_energy_counter" for r in rows
    )
    assert any(r["energy_kwh"] is not None and r["operational_g"] is None for r in rows)
    assert len(rows) < len(ledger.entries()), "entries outside November exist and must be left out"
    check_report(report, rows)


def test_every_figure_rederives_from_the_export_with_interruptible_attempts(sqlite_url: str, tmp_path: Path) -> None:
    from tests.report.mixed_ledger import KINDS, make_entry
    from tests.report.segmented_ledger import deferred_in_two, past_the_plan

    ledger = Ledger(sqlite_url)
    deferred_in_two(ledger, tmp_path, task="train")
    past_the_plan(ledger, tmp_path, task="finetune")
    rng = random.Random(3)
    for n, kind in enumerate(KINDS, start=1):  # every other kind of entry beside them, recorded now
        ledger.append(make_entry(rng, n, utcnow(), "vision" if n % 2 else "nlp", kind))
    today = utcnow().date()
    since, until = (today - timedelta(days=1)).isoformat(), (today + timedelta(days=1)).isoformat()
    rows = export(sqlite_url, tmp_path, f"{since}T00:00Z", f"{until}T00:00Z")
    assert sum(1 for r in rows if segment(r)) == 5  # the two attempts' segment entries are in the export

    report = build_report(ledger, ReportPeriod.parse(start=since, end=today.isoformat())).to_dict()

    assert report["counts"]["attempts"] == len(rows) - 3  # 5 segment entries, 2 attempts
    check_report(report, rows)


@pytest.mark.parametrize("scope", ["team:vision", "team:nlp", "workflow:nlp_eval", "tag:gpu"])
def test_a_scoped_report_rederives_from_the_export_filtered_the_same_way(
    mixed_ledger_url: str, tmp_path: Path, scope: str
) -> None:
    kind, value = scope.split(":")
    rows = [
        r for r in export(mixed_ledger_url, tmp_path)
        if (kind == "team" and r["team"] == value) or (kind == "workflow" and r["workflow_id"] == value)
        or (kind == "tag" and value in r["tags"])
    ]  # fmt: skip
    assert rows
    report = build_report(Ledger(mixed_ledger_url), ReportPeriod.parse("2026-11"), scope).to_dict()
    assert report["scope"] == scope
    check_report(report, rows)


def test_every_figure_is_a_number_or_none_with_a_reason(mixed_ledger_url: str) -> None:
    report = build_report(Ledger(mixed_ledger_url), ReportPeriod.parse("2026-11"), "all").to_dict()
    for name, figure in report["figures"].items():
        assert figure["uncertainty"], name
        assert figure["value"] is not None or figure["reason"], name


def test_a_team_with_nothing_measured_has_no_energy_figure_not_zero(sqlite_url: str) -> None:
    from tests.report.mixed_ledger import NOVEMBER, make_entry  # the generator: only unmeasured and refused entries

    ledger = Ledger(sqlite_url)
    rng = random.Random(1)
    ledger.append(make_entry(rng, 1, NOVEMBER, "nlp", "unmeasured"))
    ledger.append(make_entry(rng, 2, NOVEMBER, "nlp", "refused"))
    report = build_report(ledger, ReportPeriod.parse("2026-11"), "team:nlp").to_dict()
    energy = report["figures"]["energy_kwh"]
    assert energy["value"] is None and "no entry" in energy["reason"]
    assert report["figures"]["location_based_g"]["value"] is None
    assert report["breakdowns"]["team"][0]["energy_kwh"] is None
    assert [u["seq"] for u in report["evidence"]["unmeasured_attempts"]] == [1]
    assert report["counts"]["refused_by_budget"] == 1


def test_csv_has_one_row_per_breakdown_line_with_the_json_numbers(mixed_ledger_url: str) -> None:
    import csv
    import io

    from greenflow.report.render_csv import render_csv

    report = build_report(Ledger(mixed_ledger_url), ReportPeriod.parse("2026-11"), "all")
    data = report.to_dict()
    rows = list(csv.DictReader(io.StringIO(render_csv(report))))
    lines = [line for dimension in data["breakdowns"].values() for line in dimension]
    assert len(rows) == len(lines)
    assert rows[0]["dimension"] == "total"
    assert float(rows[0]["energy_kwh"]) == approx(data["figures"]["energy_kwh"]["value"])
    for row, line in zip(rows, lines, strict=True):
        assert (row["dimension"], row["key"]) == (line["dimension"], line["key"])
        for name in ("energy_kwh", "location_based_g", "saved_g"):
            assert row[name] == ("" if line[name] is None else str(line[name]))
