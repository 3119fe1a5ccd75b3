"""`greenflow report --anchor FILE [--public-key FILE]`: a signed anchor, checked, and verification from it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from greenflow.ledger import Entry, Identity, Ledger
from greenflow.ledger.anchor import key_id, public_key_from_file
from tests.cli.test_report_cli import greenflow
from tests.report.mixed_ledger import write_mixed_ledger


def _append(url: str, n: int) -> int:
    """Append ``n`` entries after the mixed ones (recorded now: outside the report's period); the new tip."""
    ledger = Ledger(url)
    for i in range(n):
        ledger.append(Entry.for_attempt(Identity("cli", "late", "run", f"t{i}"), "ran_now", charged_g=1.0))
    seq, _tip = ledger.head()
    ledger.close()
    return seq


@pytest.fixture
def anchored(ledger_url: str, tmp_path: Path) -> tuple[str, Path, Path, int]:
    """A mixed ledger anchored by the console script, then 5 more entries: (url, anchor, key, anchored seq)."""
    write_mixed_ledger(ledger_url).close()
    key = tmp_path / "anchor.key"
    made = greenflow("ledger", "keygen", "--out", str(key))
    assert made.returncode == 0, made.stderr
    anchors = tmp_path / "anchors"
    made = greenflow("--ledger", ledger_url, "ledger", "anchor", "--key", str(key), "--dir", str(anchors))
    assert made.returncode == 0, made.stderr
    (anchor,) = anchors.glob("*.json")
    seq = json.loads(anchor.read_text())["checkpoint"]["seq"]
    assert _append(ledger_url, 5) == seq + 5
    return ledger_url, anchor, key, seq


def _report(url: str, *args: str) -> dict[str, Any]:
    result = greenflow("--ledger", url, "report", "--period", "2026-11", *args)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_a_valid_anchor_is_checked_and_the_chain_verified_from_its_seq(
    anchored: tuple[str, Path, Path, int],
) -> None:
    url, anchor, key, seq = anchored
    fingerprint = key_id(public_key_from_file(f"{key}.pub"))
    for extra in ([], ["--public-key", f"{key}.pub"]):
        report = _report(url, "--anchor", str(anchor), *extra)
        shown = report["evidence"]["anchor"]
        assert (shown["status"], shown["seq"], shown["signature"]) == ("matches", seq, "valid")
        assert shown["signature_key_id"] == fingerprint
        assert shown["tip_hash"] == json.loads(anchor.read_text())["checkpoint"]["entry_hash"]
        checked = report["evidence"]["verification"]
        # Only the anchored entry and the 5 after it are recomputed, and the chain holds.
        assert (checked["ok"], checked["from_seq"], checked["entries"]) == (True, seq, 6)
        assert checked["mode"] == f"incremental from anchor seq {seq}"
    assert f"{key}.pub" in report["evidence"]["anchor"]["signature_key_source"]
    without = _report(url)["evidence"]["verification"]
    assert (without["from_seq"], without["entries"], without["mode"]) == (1, seq + 5, "full")


def _one_line_exit_2(url: str, *args: str) -> str:
    result = greenflow("--ledger", url, "report", "--period", "2026-11", *args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    return result.stderr


def test_a_forged_or_foreign_anchor_exits_2_naming_the_file(
    anchored: tuple[str, Path, Path, int], tmp_path: Path
) -> None:
    url, anchor, key, seq = anchored
    document = json.loads(anchor.read_text())
    document["checkpoint"]["seq"] = seq + 5  # claim a later tip with the old signature
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(document))
    assert str(forged) in _one_line_exit_2(url, "--anchor", str(forged))
    other = tmp_path / "other.key"
    assert greenflow("ledger", "keygen", "--out", str(other)).returncode == 0
    assert str(anchor) in _one_line_exit_2(url, "--anchor", str(anchor), "--public-key", f"{other}.pub")
    malformed = tmp_path / "old-format.json"
    malformed.write_text(json.dumps({"seq": seq, "tip_hash": document["checkpoint"]["entry_hash"]}))
    assert str(malformed) in _one_line_exit_2(url, "--anchor", str(malformed))
    assert "--anchor" in _one_line_exit_2(url, "--public-key", f"{key}.pub")


def test_a_chain_truncated_after_the_anchor_fails_the_reports_verification(
    anchored: tuple[str, Path, Path, int],
) -> None:
    url, anchor, _key, seq = anchored
    ledger = Ledger(url)
    with ledger.engine.begin() as connection:  # the last 3 entries are deleted, the recorded tip left alone
        connection.execute(text("DELETE FROM ledger_entries WHERE seq > :keep"), {"keep": seq + 2})
    ledger.close()
    report = _report(url, "--anchor", str(anchor))
    checked = report["evidence"]["verification"]
    assert checked["ok"] is False and checked["from_seq"] == seq
    assert [p["kind"] for p in checked["problems"]] == ["removed"]
    assert report["evidence"]["anchor"]["status"] == "matches"  # the anchored entry itself is intact


def test_a_chain_cut_before_the_anchor_with_a_moved_tip_fails_only_with_the_anchor(
    anchored: tuple[str, Path, Path, int],
) -> None:
    url, anchor, _key, seq = anchored
    ledger = Ledger(url)
    with ledger.engine.begin() as connection:  # cut from the anchored entry on and move the tip to match
        connection.execute(text("DELETE FROM ledger_entries WHERE seq >= :cut"), {"cut": seq})
        connection.execute(
            text(
                "UPDATE ledger_head SET seq = :s, entry_hash = (SELECT entry_hash FROM ledger_entries WHERE seq = :s)"
            ),
            {"s": seq - 1},
        )
    ledger.close()
    assert _report(url)["evidence"]["verification"]["ok"] is True  # a shorter chain is still a chain
    report = _report(url, "--anchor", str(anchor))
    assert report["evidence"]["verification"]["ok"] is False
    assert [p["kind"] for p in report["evidence"]["verification"]["problems"]] == ["anchor"]
    assert report["evidence"]["anchor"]["status"] == "mismatch"
    assert "cut" in report["evidence"]["anchor"]["detail"]
