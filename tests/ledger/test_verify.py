"""Tamper evidence: `verify` names every modified, inserted and removed entry."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from greenflow.ledger import Entry, Identity, Ledger
from greenflow.ledger.entry import chain_hash


def _fill(ledger: Ledger, n: int = 5) -> list[Entry]:
    return [
        ledger.append(Entry.for_attempt(Identity("cli", "wf", "run", f"t{i}"), "ran_now", energy_kwh=0.1 * (i + 1)))
        for i in range(n)
    ]


def test_intact_chain_verifies(ledger: Ledger) -> None:
    entries = _fill(ledger)
    report = ledger.verify()
    assert report.ok
    assert report.entries == 5
    assert report.head_hash == entries[-1].entry_hash


def test_modified_entry_is_named(ledger: Ledger) -> None:
    entries = _fill(ledger)
    with ledger.engine.begin() as connection:
        connection.execute(text("UPDATE ledger_entries SET energy_kwh = 0.0001 WHERE seq = 3"))
    report = ledger.verify()
    assert not report.ok
    assert [(p.kind, p.seq, p.entry_id) for p in report.problems] == [("modified", 3, entries[2].entry_id)]


def test_deleted_entry_is_reported(ledger: Ledger) -> None:
    entries = _fill(ledger)
    with ledger.engine.begin() as connection:
        connection.execute(text("DELETE FROM ledger_entries WHERE seq = 2"))
    report = ledger.verify()
    assert [(p.kind, p.seq) for p in report.problems] == [("removed", 3)]
    assert "seq 2" in report.problems[0].detail
    assert report.problems[0].entry_id == entries[2].entry_id


def test_deleted_tail_is_reported(ledger: Ledger) -> None:
    _fill(ledger)
    with ledger.engine.begin() as connection:
        connection.execute(text("DELETE FROM ledger_entries WHERE seq = 5"))
    assert [(p.kind, p.seq) for p in ledger.verify().problems] == [("removed", 5)]


def test_inserted_entry_is_named(ledger: Ledger) -> None:
    entries = _fill(ledger)
    # A forger slips a well-formed entry in after seq 2, renumbering the rest and hashing it correctly.
    forged = Entry.for_attempt(Identity("cli", "wf", "run", "forged"), "ran_now", energy_kwh=0.0)
    forged = forged.replace(recorded_at=entries[1].recorded_at)
    forged_hash = chain_hash(entries[1].entry_hash, forged.content())
    with ledger.engine.begin() as connection:
        for seq in (5, 4, 3):  # one by one from the top: the primary key stays unique throughout
            connection.execute(
                text("UPDATE ledger_entries SET seq = :new WHERE seq = :old"), {"new": seq + 1, "old": seq}
            )
        row = {name: value for name, value in forged.content().items() if name not in ("tags",)}
        row.update(seq=3, prev_hash=entries[1].entry_hash, entry_hash=forged_hash, tags="")
        columns = ", ".join(row)
        placeholders = ", ".join(f":{name}" for name in row)
        import json

        params = {k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in row.items()}
        params["recorded_at"] = (
            entries[1].recorded_at.replace(tzinfo=None)
            if ledger.engine.dialect.name == "sqlite"
            else entries[1].recorded_at
        )
        connection.execute(text(f"INSERT INTO ledger_entries ({columns}) VALUES ({placeholders})"), params)
        connection.execute(text("UPDATE ledger_head SET seq = 6"))
    report = ledger.verify()
    assert [(p.kind, p.entry_id) for p in report.problems] == [("inserted", forged.entry_id)]


def test_appended_forgery_beyond_the_tip_is_named(ledger: Ledger) -> None:
    _fill(ledger, 3)
    with ledger.engine.begin() as connection:
        connection.execute(text("UPDATE ledger_head SET seq = 2"))  # roll the tip back, as if 3 were forged
    problems = ledger.verify().problems
    assert [(p.kind, p.seq) for p in problems] == [("inserted", 3)]


@pytest.mark.parametrize("column", ["decision", "workflow_id", "recorded_at"])
def test_any_hashed_column_counts(ledger: Ledger, column: str) -> None:
    _fill(ledger, 2)
    value = "2020-01-01 00:00:00" if column == "recorded_at" else "'x'"
    with ledger.engine.begin() as connection:
        if column == "recorded_at":
            connection.execute(
                text("UPDATE ledger_entries SET recorded_at = :v WHERE seq = 1"),
                {
                    "v": "2020-01-01 00:00:00+00"
                    if ledger.engine.dialect.name != "sqlite"
                    else "2020-01-01 00:00:00.000000"
                },
            )
        else:
            connection.execute(text(f"UPDATE ledger_entries SET {column} = {value} WHERE seq = 1"))
    assert [(p.kind, p.seq) for p in ledger.verify().problems] == [("modified", 1)]


def _tagged(ledger: Ledger) -> list[Entry]:
    return [
        ledger.append(
            Entry.for_attempt(
                Identity("cli", "wf", "run", f"t{i}"), "ran_now", tags=("ml", "nightly"), team="vision", charged_g=10.0
            )
        )
        for i in range(3)
    ]


@pytest.mark.parametrize("stored", ["ml,nightly,", ",ml,nightly", "ml,nightly", ",nightly,ml,", ",,ml,nightly,"])
def test_stored_tags_out_of_their_canonical_form_are_named(ledger: Ledger, stored: str) -> None:
    # Each of these parses back to the hashed tags (or their set), but `LIKE '%,ml,%'` no longer
    # matches the same entries: a charge would leave the tag budget without any hash changing.
    from greenflow.ledger import Budget

    entries = _tagged(ledger)
    ledger.budgets.set(Budget.parse("ml-day", "1000g", "day", "tag:ml"))
    spent_before = ledger.budgets.status("ml-day").spent
    with ledger.engine.begin() as connection:
        connection.execute(text("UPDATE ledger_entries SET tags = :t WHERE seq = 2"), {"t": stored})
    everything = ledger.verify().problems
    # The budget audit may also see the tag budget's running total disagree with the moved charge.
    problems = [p for p in everything if p.kind != "budget"]
    assert [(p.kind, p.seq, p.entry_id) for p in problems] == [("modified", 2, entries[1].entry_id)]
    assert all(p.kind != "budget" or "ml-day" in p.detail for p in everything)
    assert "tags" in problems[0].detail or "content" in problems[0].detail
    # A recount from the entries (what a budget without a running total does) really moves the spend.
    with ledger.engine.begin() as connection:
        recount = connection.execute(
            text("SELECT coalesce(sum(charged_g), 0) FROM ledger_entries WHERE tags LIKE '%,ml,%'")
        ).scalar_one()
    if stored in ("ml,nightly,", "ml,nightly"):
        assert recount < spent_before


def test_every_stored_column_is_under_the_hash() -> None:
    # A new column that budgets could match on must be hashed (or be the chain's own bookkeeping).
    from greenflow.ledger.entry import ENTRY_FIELDS
    from greenflow.ledger.models import EntryRow

    assert set(EntryRow.__table__.columns.keys()) == set(ENTRY_FIELDS) | {"seq", "prev_hash", "entry_hash"}


@pytest.mark.parametrize(
    "update",
    [
        "UPDATE ledger_entries SET recorded_at = replace(recorded_at, ' ', 'T') WHERE seq = 2",
        "UPDATE ledger_entries SET team = CAST(team AS BLOB) WHERE seq = 2",
        "UPDATE ledger_entries SET recorded_at = substr(recorded_at, 1, 19) WHERE seq = 2",
    ],
)
def test_sqlite_stored_forms_the_budgets_compare_are_checked(sqlite_url: str, update: str) -> None:
    # SQLite compares times as text and never matches a BLOB to TEXT: these edits read back as the
    # hashed values (or close) but change which period or team budget counts the entry.
    ledger = Ledger(sqlite_url)
    _tagged(ledger)
    with ledger.engine.begin() as connection:
        connection.execute(text(update))
    assert [(p.kind, p.seq) for p in ledger.verify().problems] == [("modified", 2)]
