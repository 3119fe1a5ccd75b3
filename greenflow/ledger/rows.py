"""Converting between entries and their table rows (shared by the store, the budgets and verification).

Kept apart from ``store`` so that ``budgets`` and ``verify`` can read rows without importing the store
(which imports them): the ledger package has no import cycle.
"""

from __future__ import annotations

from typing import Any

from greenflow.ledger.entry import ENTRY_FIELDS, Entry
from greenflow.ledger.models import EntryRow


def entry_row_values(entry: Entry) -> dict[str, Any]:
    """Column values for an entry (tags stored as ``,a,b,`` so that one tag matches with LIKE)."""
    values = {name: getattr(entry, name) for name in ENTRY_FIELDS}
    values["tags"] = "," + ",".join(entry.tags) + "," if entry.tags else ""
    return values


def entry_from_row(row: EntryRow) -> Entry:
    """The entry an ORM row holds."""
    return Entry(**row_values(row))


def row_values(row: EntryRow) -> dict[str, Any]:
    """An ORM row's values under the entry's field names, unvalidated (verification reads tampered rows)."""
    values = {name: getattr(row, name) for name in ENTRY_FIELDS}
    values["tags"] = tuple(tag for tag in (row.tags or "").split(",") if tag)
    return values
