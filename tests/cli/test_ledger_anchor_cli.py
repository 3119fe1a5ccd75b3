"""`greenflow ledger keygen|anchor` and `greenflow ledger verify --anchor/--public-key/--full`."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import text

from greenflow.ledger import Entry, Identity, Ledger
from greenflow.ledger.anchor import load_private_key


def _record(url: str, start: int, n: int) -> None:
    ledger = Ledger(url)
    for i in range(start, start + n):
        ledger.append(Entry.for_attempt(Identity("cli", "wf", "run", f"t{i}"), "ran_now", charged_g=2.0))
    ledger.close()


def _keygen(cli, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    key = tmp_path / "keys" / "anchor"
    key.parent.mkdir()
    result = cli("ledger", "keygen", "--out", str(key))
    assert result.exit_code == 0, result.output
    assert "ed25519:" in result.stdout
    assert key.stat().st_mode & 0o077 == 0  # the private key is readable by its owner only
    return key


def test_truncation_with_a_moved_tip_fails_only_verify_with_the_anchor(cli, ledger_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _record(ledger_url, 0, 10)
    key = _keygen(cli, tmp_path)
    anchors = tmp_path / "anchors"
    made = cli("ledger", "anchor", "--key", str(key), "--dir", str(anchors))
    assert made.exit_code == 0, made.output
    (anchor_file,) = anchors.glob("*.json")
    assert cli("ledger", "verify", "--anchor", str(anchors)).exit_code == 0

    ledger = Ledger(ledger_url)
    with ledger.engine.begin() as connection:  # cut the last 3 entries and move the recorded tip to match
        connection.execute(text("DELETE FROM ledger_entries WHERE seq > 7"))
        connection.execute(
            text("UPDATE ledger_head SET seq = 7, entry_hash = (SELECT entry_hash FROM ledger_entries WHERE seq = 7)")
        )
    ledger.close()
    assert cli("ledger", "verify").exit_code == 0
    failed = cli("ledger", "verify", "--anchor", str(anchor_file), "--public-key", f"{key}.pub", "--json")
    assert failed.exit_code == 1
    report = json.loads(failed.stdout)
    assert [(p["kind"], p["seq"]) for p in report["problems"]] == [("anchor", 10)]
    assert anchor_file.name in cli("ledger", "verify", "--anchor", str(anchor_file)).stdout


def test_anchor_from_the_environment_to_stdout_and_incremental_verify(  # type: ignore[no-untyped-def]
    cli, ledger_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = load_private_key((_keygen(cli, tmp_path)).read_bytes(), "test")
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    monkeypatch.setenv("GREENFLOW_ANCHOR_KEY", base64.b64encode(raw).decode())
    _record(ledger_url, 0, 6)
    made = cli("ledger", "anchor")
    assert made.exit_code == 0, made.output
    assert base64.b64encode(raw).decode() not in made.output  # the private key never leaves
    anchor_file = tmp_path / "anchor.json"
    anchor_file.write_text(made.stdout)
    assert json.loads(made.stdout)["checkpoint"]["seq"] == 6
    _record(ledger_url, 6, 4)
    incremental = json.loads(cli("ledger", "verify", "--anchor", str(anchor_file), "--json").stdout)
    assert (incremental["ok"], incremental["from_seq"], incremental["entries"]) == (True, 6, 5)
    full = json.loads(cli("ledger", "verify", "--anchor", str(anchor_file), "--full", "--json").stdout)
    assert (full["ok"], full["from_seq"], full["entries"]) == (True, 1, 10)


def test_bad_anchor_input_is_exit_2_with_one_line(cli, ledger_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _record(ledger_url, 0, 3)
    key = _keygen(cli, tmp_path)
    anchors = tmp_path / "anchors"
    assert cli("ledger", "anchor", "--key", str(key), "--dir", str(anchors)).exit_code == 0
    (anchor_file,) = anchors.glob("*.json")
    other = tmp_path / "other"
    assert cli("ledger", "keygen", "--out", str(other)).exit_code == 0

    wrong_key = cli("ledger", "verify", "--anchor", str(anchor_file), "--public-key", f"{other}.pub")
    assert wrong_key.exit_code == 2
    assert "not by the given key" in wrong_key.stderr

    document = json.loads(anchor_file.read_text())
    document["checkpoint"]["seq"] = 2  # a forged checkpoint: the signature no longer matches
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(document))
    bad_signature = cli("ledger", "verify", "--anchor", str(forged))
    assert bad_signature.exit_code == 2
    assert "forged.json" in bad_signature.stderr and "signature does not match" in bad_signature.stderr

    junk = tmp_path / "junk.json"
    junk.write_text("not an anchor")
    assert cli("ledger", "verify", "--anchor", str(junk)).exit_code == 2
    assert cli("ledger", "verify", "--anchor", str(tmp_path / "missing.json")).exit_code == 2

    no_key = cli("ledger", "anchor")
    assert no_key.exit_code == 2 and "GREENFLOW_ANCHOR_KEY" in no_key.stderr
    not_a_key = cli("ledger", "anchor", "--key", str(junk))
    assert not_a_key.exit_code == 2 and "Traceback" not in not_a_key.output
    again = cli("ledger", "keygen", "--out", str(key))
    assert again.exit_code == 2 and "already exists" in again.stderr
    for result in (wrong_key, bad_signature, no_key):
        assert len(result.stderr.strip().splitlines()) == 1
