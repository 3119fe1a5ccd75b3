"""Exports others read: SCI terms (GSF) and one run's evidence JSON, through the console script."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from greenflow.ledger import EntryFilter, Ledger
from greenflow.ledger.anchor import generate_key, make_anchor, write_anchor
from greenflow.report import ReportPeriod, build_report

REPO = Path(__file__).resolve().parents[2]
_SCRIPT = Path(sys.executable).parent / "greenflow"
GREENFLOW = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "greenflow.cli"]


def greenflow(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the console script on the ledger at ``url``."""
    return subprocess.run(
        [*GREENFLOW, "--ledger", url, *args],
        cwd=REPO,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_sci_export_states_e_i_m_r_and_they_give_the_sci(mixed_ledger_url: str) -> None:
    result = greenflow(mixed_ledger_url, "report", "--period", "2026-11", "--format", "sci")
    assert result.returncode == 0, result.stderr
    sci = json.loads(result.stdout)
    assert sci["schema"] == "greenflow.sci/1" and "location-based" in sci["method"]
    report = build_report(Ledger(mixed_ledger_url), ReportPeriod.parse("2026-11"), "all").to_dict()
    assert [u["functional_unit"] for u in sci["units"]] == [s["functional_unit"] for s in report["sci"]]
    for unit in sci["units"]:
        assert unit["E_kwh"] * unit["I_g_per_kwh"] == pytest.approx(unit["E_times_I_g"])
        expected = (unit["E_times_I_g"] + (unit["M_g"] or 0.0)) / unit["R"]
        assert unit["sci_g_per_R"] == pytest.approx(expected)


def test_run_evidence_cites_energy_method_region_source_emissions_and_anchor(
    mixed_ledger_url: str, tmp_path: Path
) -> None:
    ledger = Ledger(mixed_ledger_url)
    entry = next(e for e in ledger.entries(EntryFilter(decision="ran_now")) if e.operational_g is not None)
    anchor = write_anchor(make_anchor(ledger, generate_key()), tmp_path)
    result = greenflow(mixed_ledger_url, "evidence", entry.entry_id, "--anchor", str(anchor))
    assert result.returncode == 0, result.stderr
    card = json.loads(result.stdout)
    assert card["schema"] == "greenflow.run-evidence/1"
    assert card["energy"]["total_kwh"] == pytest.approx(entry.energy_kwh)
    assert card["energy"]["components"]["gpu"]["method"] == entry.method_gpu
    assert card["region"] == entry.region
    assert card["intensity"]["source"] == entry.intensity_source
    assert card["emissions"]["operational_g"] == pytest.approx(entry.operational_g)
    assert card["ledger"]["entry_hash"] == entry.entry_hash and card["ledger"]["chain_verified"] is True
    assert card["ledger"]["covered_by_anchor"] is True
    assert card["ledger"]["anchor"]["signature"] == "valid"
    assert "not available offline" in card["boamps"]


def test_an_anchor_the_ledger_no_longer_matches_is_reported_as_a_mismatch(
    mixed_ledger_url: str, tmp_path: Path
) -> None:
    key = generate_key()
    signed = make_anchor(Ledger(mixed_ledger_url), key)
    # A correctly signed anchor of another chain (same seq, other hash): the ledger does not hold it.
    other = replace(signed.checkpoint, entry_hash="f" * 64)
    foreign = replace(signed, checkpoint=other, signature=base64.b64encode(key.sign(other.signed_bytes())).decode())
    anchor = write_anchor(foreign, tmp_path)
    report = build_report(Ledger(mixed_ledger_url), ReportPeriod.parse("2026-11"), "all", anchor=anchor).to_dict()
    assert report["evidence"]["anchor"]["status"] == "mismatch"
    assert report["evidence"]["anchor"]["signature"] == "valid"
    assert report["evidence"]["verification"]["ok"] is False


@pytest.mark.parametrize(
    "text", ["not json", '{"seq": "x", "tip_hash": "abc"}', '{"seq": 3}', '{"format": "greenflow-anchor/1"}']
)
def test_a_bad_anchor_file_exits_2_naming_it(mixed_ledger_url: str, tmp_path: Path, text: str) -> None:
    anchor = tmp_path / "anchor.json"
    anchor.write_text(text)
    result = greenflow(mixed_ledger_url, "report", "--period", "2026-11", "--anchor", str(anchor))
    assert result.returncode == 2 and str(anchor) in result.stderr and "Traceback" not in result.stderr


def test_evidence_for_an_unknown_entry_exits_2(mixed_ledger_url: str) -> None:
    result = greenflow(mixed_ledger_url, "evidence", "no-such-entry")
    assert result.returncode == 2 and "no-such-entry" in result.stderr
