"""greenflow.bounds: one rule for what fits the ledger, the same as the ledger's own columns."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from sqlalchemy import String

from greenflow import bounds
from greenflow.errors import InvalidInput
from greenflow.ledger import Entry, Identity, Ledger
from greenflow.ledger.models import BudgetRow, EntryRow


def test_the_text_limits_are_the_ledger_columns() -> None:
    columns = {
        c.name: c.type.length for c in EntryRow.__table__.columns if isinstance(c.type, String) and c.type.length
    }
    assert dict(bounds.ENTRY_TEXT_LIMITS) == columns
    budget_columns = BudgetRow.__table__.columns
    assert budget_columns["name"].type.length == bounds.BUDGET_NAME_LENGTH
    assert budget_columns["scope_value"].type.length == bounds.SCOPE_VALUE_LENGTH


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"pue": math.nan}, "pue=nan is not a finite number"),
        ({"energy_kwh": math.inf}, "energy_kwh=inf"),
        ({"operational_g": -1.0}, "operational_g=-1 is out of range"),
        ({"host": "h" * 256}, "host="),
        ({"region": "GB\udcff"}, "not valid UTF-8"),
        ({"team": "bad\x00"}, "NUL"),
        ({"actual_start": datetime(1970, 1, 1, tzinfo=UTC)}, "outside the years 2000-2199"),
        ({"extra": {"speed": math.nan}}, "extra.speed holds nan"),
        ({"tags": ("t" * 251,)}, "tag="),
    ],
)
def test_an_entry_that_does_not_fit_the_ledger_is_refused_when_built(fields: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        Entry.for_attempt(Identity("cli", "wf", "run", "task"), "ran_now", **fields)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"task_id": "t" * 251}, "251 characters"),
        ({"attempt": 2**31}, "attempt=2147483648 is out of range"),
        ({"attempt": 0}, "attempt=0 is below 1"),
        ({"workflow_id": "\udcff"}, "not valid UTF-8"),
    ],
)
def test_an_identity_that_does_not_fit_is_refused(fields: dict[str, object], message: str) -> None:
    values: dict[str, object] = {"orchestrator": "cli", "workflow_id": "wf", "run_id": "r", "task_id": "t"} | fields
    with pytest.raises(InvalidInput, match=message):
        Identity(**values)  # type: ignore[arg-type]


def test_entries_at_the_limits_are_stored_and_verify(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    identity = Identity("cli", "w" * 250, "r" * 250, "t" * 250, attempt=bounds.INT_MAX)
    entry = ledger.append(
        Entry.for_attempt(identity, "ran_now", team="x" * 120, host="h" * 255, pue=bounds.MAX_PUE, tags=("ü" * 250,))
    )
    [stored] = ledger.entries()
    assert stored.entry_hash == entry.entry_hash and stored.task_id == "t" * 250
    assert ledger.verify().ok


def test_free_text_keeps_the_entry_with_unstorable_characters_escaped() -> None:
    entry = Entry.for_attempt(Identity("cli", "wf", "run", "task"), "failed", error="cannot open '\udcff'\x00")
    assert entry.error == "cannot open '\\udcff'\\x00"
