"""Signed anchors: a cut end of the chain (with its tip moved back) is caught; incremental verify."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import text

from greenflow.errors import InvalidInput
from greenflow.ledger import Entry, Identity, Ledger
from greenflow.ledger.anchor import (
    Anchor,
    generate_key,
    key_id,
    load_private_key,
    make_anchor,
    private_key_from_env,
    private_key_pem,
    read_anchor,
    write_anchor,
)


def _fill(ledger: Ledger, start: int, n: int) -> list[Entry]:
    return [
        ledger.append(Entry.for_attempt(Identity("cli", "wf", "run", f"t{i}"), "ran_now", charged_g=1.0 + i))
        for i in range(start, start + n)
    ]


def _truncate(ledger: Ledger, keep: int) -> None:
    """What an attacker who can write the database does: cut the end and move the tip back to match."""
    with ledger.engine.begin() as connection:
        connection.execute(text("DELETE FROM ledger_entries WHERE seq > :keep"), {"keep": keep})
        connection.execute(
            text(
                "UPDATE ledger_head SET seq = :keep, "
                "entry_hash = (SELECT entry_hash FROM ledger_entries WHERE seq = :keep)"
            ),
            {"keep": keep},
        )


def _anchored(ledger: Ledger, tmp_path: Path) -> Anchor:
    key = generate_key()
    return read_anchor(write_anchor(make_anchor(ledger, key), tmp_path), key.public_key())


def test_truncated_end_passes_plain_verify_but_not_the_anchor(ledger: Ledger, tmp_path: Path) -> None:
    _fill(ledger, 0, 10)
    anchor = _anchored(ledger, tmp_path)
    _truncate(ledger, keep=7)
    assert ledger.verify().ok  # the shorter chain is a valid chain: nothing else can tell
    report = ledger.verify(anchors=[anchor])
    assert not report.ok
    assert [(p.kind, p.seq) for p in report.problems] == [("anchor", 10)]
    assert anchor.source in report.problems[0].detail


def test_rewritten_anchored_entry_is_caught(ledger: Ledger, tmp_path: Path) -> None:
    _fill(ledger, 0, 5)
    anchor = _anchored(ledger, tmp_path)
    with ledger.engine.begin() as connection:
        connection.execute(text("UPDATE ledger_entries SET entry_hash = :h WHERE seq = 5"), {"h": "f" * 64})
        connection.execute(text("UPDATE ledger_head SET entry_hash = :h"), {"h": "f" * 64})
    kinds = {(p.kind, p.seq) for p in ledger.verify(anchors=[anchor], full=False).problems}
    assert ("anchor", 5) in kinds


def test_anchor_of_another_ledger_is_reported(ledger: Ledger, tmp_path: Path) -> None:
    other = Ledger(f"sqlite:///{tmp_path / 'other.db'}")
    _fill(other, 100, 3)
    _fill(ledger, 0, 3)
    anchor = _anchored(other, tmp_path)
    problems = ledger.verify(anchors=[anchor]).problems
    assert [p.kind for p in problems] == ["anchor"]
    assert "another ledger" in problems[0].detail


def test_incremental_verify_recomputes_only_from_the_newest_anchor(ledger: Ledger, tmp_path: Path) -> None:
    _fill(ledger, 0, 10)
    older = _anchored(ledger, tmp_path / "a")
    _fill(ledger, 10, 5)
    newer = _anchored(ledger, tmp_path / "b")
    _fill(ledger, 15, 4)
    report = ledger.verify(anchors=[older, newer], full=False)
    assert report.ok
    assert (report.from_seq, report.entries, report.head_seq) == (15, 5, 19)
    # A change after the newest anchor is caught incrementally ...
    with ledger.engine.begin() as connection:
        connection.execute(text("UPDATE ledger_entries SET charged_g = 0 WHERE seq IN (3, 17)"))
    assert [(p.kind, p.seq) for p in ledger.verify(anchors=[older, newer], full=False).problems] == [("modified", 17)]
    # ... one before it only by a full verification (the documented limit of the incremental mode).
    full = ledger.verify(anchors=[older, newer], full=True)
    assert [(p.kind, p.seq) for p in full.problems] == [("modified", 3), ("modified", 17)]
    assert full.entries == 19


def test_incremental_verify_still_sees_a_cut_after_the_anchor(ledger: Ledger, tmp_path: Path) -> None:
    _fill(ledger, 0, 4)
    anchor = _anchored(ledger, tmp_path)
    _fill(ledger, 4, 4)
    with ledger.engine.begin() as connection:
        connection.execute(text("DELETE FROM ledger_entries WHERE seq = 6"))
    assert [(p.kind, p.seq) for p in ledger.verify(anchors=[anchor], full=False).problems] == [("removed", 7)]


def _edit(path: Path, change: dict[str, object]) -> Path:
    document = json.loads(path.read_text())
    document["checkpoint"].update(change)
    path.write_text(json.dumps(document))
    return path


def test_bad_anchors_are_invalid_input_naming_the_file(sqlite_url: str, tmp_path: Path) -> None:
    ledger = Ledger(sqlite_url)
    _fill(ledger, 0, 3)
    key = generate_key()
    path = write_anchor(make_anchor(ledger, key), tmp_path)
    assert read_anchor(path).checkpoint.seq == 3  # intact: the embedded key checks it
    with pytest.raises(InvalidInput, match=r"signed by key .* not by the given key"):
        read_anchor(path, generate_key().public_key())
    forged = _edit(Path(str(path)), {"seq": 2})
    with pytest.raises(InvalidInput, match=f"{forged.name}.*signature does not match"):
        read_anchor(forged)
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(InvalidInput, match=r"junk\.json' is not JSON"):
        read_anchor(tmp_path / "junk.json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "x"}))
    with pytest.raises(InvalidInput, match="is not a greenflow-anchor/1 document"):
        read_anchor(tmp_path / "other.json")
    # Swapping in another key (and signing with it) is caught by the key id the anchor names.
    document = json.loads(write_anchor(make_anchor(ledger, key), tmp_path / "again").read_text())
    raw = generate_key().public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    document["public_key"] = base64.b64encode(raw).decode()
    (tmp_path / "swapped.json").write_text(json.dumps(document))
    with pytest.raises(InvalidInput, match="embedded public key"):
        read_anchor(tmp_path / "swapped.json")


def test_private_keys_load_from_pem_base64_and_env_without_leaking(tmp_path: Path) -> None:
    key = generate_key()
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    encoded = base64.b64encode(raw).decode()
    expected = key_id(key.public_key())
    assert key_id(load_private_key(private_key_pem(key), "test").public_key()) == expected
    assert key_id(load_private_key(encoded, "test").public_key()) == expected
    loaded = private_key_from_env({"GREENFLOW_ANCHOR_KEY": encoded})
    assert loaded is not None and key_id(loaded.public_key()) == expected
    assert private_key_from_env({}) is None
    with pytest.raises(InvalidInput) as error:
        load_private_key(encoded[:-8] + "AAAA", "$GREENFLOW_ANCHOR_KEY")
    assert encoded[:20] not in str(error.value)
    with pytest.raises(InvalidInput, match="not an unencrypted PEM"):
        load_private_key("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----", "file 'k'")


def test_an_empty_ledger_cannot_be_anchored(sqlite_url: str) -> None:
    with pytest.raises(InvalidInput, match="no entries to anchor"):
        make_anchor(Ledger(sqlite_url), generate_key())
