"""Budget state under the chain: `verify` re-derives the budget tables and names every edit (issue 14, item 2)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, text, update

from greenflow.ledger import Budget, Entry, EntryFilter, Identity, Ledger
from greenflow.ledger.database import create_ledger_engine, head_revision, upgrade
from greenflow.ledger.entry import GENESIS_HASH, chain_hash
from greenflow.ledger.models import EntryRow, HeadRow
from greenflow.ledger.store import entry_row_values


def _id(task: str) -> Identity:
    return Identity("cli", "train", "run-1", task)


def _spend(ledger: Ledger) -> str:
    """A budget with 1092 g settled, a checkpoint, and an open 7 g reservation; returns that reservation."""
    ledger.budgets.set(Budget.parse("gpu", "5kg", "month"))
    for i, grams in enumerate((500.0, 592.0)):
        held = ledger.budgets.reserve("gpu", _id(f"t{i}"), grams, estimate_source="x")
        ledger.append(Entry.for_attempt(_id(f"t{i}"), "ran_now", charged_g=grams), settle=held.reservation_id)
    return ledger.budgets.reserve("gpu", _id("open"), 7.0, estimate_source="x").reservation_id


def _budget_problems(ledger: Ledger) -> list[str]:
    report = ledger.verify()
    return [p.detail for p in report.problems if p.kind == "budget"]


def test_an_intact_ledger_with_budgets_verifies(ledger: Ledger) -> None:
    _spend(ledger)
    ledger.budgets.release(ledger.budgets.reserve("gpu", _id("released"), 1.0, estimate_source="x").reservation_id)
    now = datetime.now(UTC)
    ledger.budgets.reserve("gpu", _id("dies"), 3.0, estimate_source="x", ttl=timedelta(seconds=1), at=now)
    ledger.budgets.reap_expired(now + timedelta(seconds=2))
    ledger.budgets.set(Budget.parse("gpu", "6kg", "month"))  # a change is a new chained event
    report = ledger.verify()
    assert report.ok, report.problems


def test_zeroing_the_settled_checkpoint_is_reported(ledger: Ledger) -> None:
    _spend(ledger)
    assert ledger.budgets.status("gpu").spent == 1099.0
    with ledger.engine.begin() as connection:
        connection.execute(text("UPDATE budgets SET usage_settled = 0"))
    assert ledger.budgets.status("gpu").spent == 7.0  # the edit works on the tables ...
    [problem] = _budget_problems(ledger)  # ... and verify says so
    assert problem.startswith("budget 'gpu': settled checkpoint says 0 gCO2e")
    assert "the entries sum to 1092" in problem


def test_raising_a_limit_outside_greenflow_is_reported(ledger: Ledger) -> None:
    _spend(ledger)
    with ledger.engine.begin() as connection:
        connection.execute(text("UPDATE budgets SET limit_value = 1e9 WHERE name = 'gpu'"))
    [problem] = _budget_problems(ledger)
    assert (
        "budget 'gpu': definition differs from the chain: limit_value is 1000000000.0, the chain says 5000.0" in problem
    )


def test_a_budget_created_outside_greenflow_is_reported(ledger: Ledger) -> None:
    _spend(ledger)
    with ledger.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO budgets (name, scope_kind, period, timezone, unit, limit_value, created_at, updated_at, "
                "revision) SELECT 'rogue', scope_kind, period, timezone, unit, limit_value, created_at, updated_at, 1 "
                "FROM budgets WHERE name = 'gpu'"
            )
        )
    assert _budget_problems(ledger) == [
        "budget 'rogue': has no chained definition (created or renamed outside greenflow)"
    ]


def test_shrinking_an_open_reservation_is_reported(ledger: Ledger) -> None:
    reservation_id = _spend(ledger)
    with ledger.engine.begin() as connection:
        connection.execute(
            text("UPDATE budget_reservations SET amount = 0.001 WHERE reservation_id = :r"), {"r": reservation_id}
        )
    [problem] = _budget_problems(ledger)
    assert problem == f"budget 'gpu': reservation {reservation_id} (open, 0.001) was changed outside greenflow"


@pytest.mark.parametrize(
    "edit",
    [
        "UPDATE budget_reservations SET status = 'open' WHERE status = 'settled'",
        "UPDATE budget_reservations SET amount = amount * 10 WHERE status = 'settled'",
        "UPDATE budget_reservations SET entry_id = NULL WHERE status = 'settled'",
    ],
)
def test_editing_a_settled_reservation_is_reported(ledger: Ledger, edit: str) -> None:
    _spend(ledger)
    with ledger.engine.begin() as connection:
        connection.execute(text(edit))
    problems = _budget_problems(ledger)
    assert len(problems) >= 2 and all(p.startswith("budget 'gpu': reservation ") for p in problems), problems


def test_budget_events_are_chained_but_never_counted_as_attempts(ledger: Ledger) -> None:
    _spend(ledger)
    assert ledger.count() == 2
    assert {e.decision for e in ledger.entries()} == {"ran_now"}
    assert [e.decision for e in ledger.entries(EntryFilter(events=True))][:1] == ["budget_set"]
    assert ledger.count(EntryFilter(decision="budget_set")) == 1
    assert ledger.history("train", "set") == []
    assert ledger.budgets.status("gpu").settled == 1092.0


def test_a_ledger_written_before_chained_budgets_upgrades_and_verifies(ledger_url: str) -> None:
    """A 0003 ledger (hand-built rows, as today's main writes them) gains its budgets' events on upgrade."""
    engine = create_ledger_engine(ledger_url)
    upgrade(engine, "0003")
    now = datetime.now(UTC)
    entry = Entry.for_attempt(_id("old"), "ran_now", charged_g=40.0, budget="gpu", recorded_at=now, tags=("ml",))
    digest = chain_hash(GENESIS_HASH, entry.content())
    recorded = entry.replace(seq=1, prev_hash=GENESIS_HASH, entry_hash=digest)
    with engine.begin() as connection:
        connection.execute(insert(EntryRow).values(entry_row_values(recorded)))
        connection.execute(update(HeadRow).where(HeadRow.id == 1).values(seq=1, entry_hash=digest))
        connection.execute(
            text(
                "INSERT INTO budgets (name, scope_kind, period, timezone, unit, limit_value, created_at, updated_at, "
                "revision) VALUES ('gpu', 'all', 'month', 'UTC', 'gCO2e', 100, :now, :now, 3)"
            ),
            {"now": now if engine.dialect.name == "postgresql" else now.replace(tzinfo=None)},
        )
    assert upgrade(engine) == head_revision()
    engine.dispose()
    ledger = Ledger(ledger_url)
    report = ledger.verify()
    assert report.ok, report.problems
    assert report.entries == 2  # the old entry, still valid, and the budget's chained definition
    assert ledger.budgets.status("gpu").settled == 40.0
    ledger.budgets.reserve("gpu", _id("new"), 60.0, estimate_source="x")
    assert ledger.verify().ok
    ledger.close()
