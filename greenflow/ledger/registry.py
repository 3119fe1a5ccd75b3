"""The process's ledgers: one :class:`~greenflow.ledger.Ledger` per database URL, whoever asks.

A worker runs many attempts and a triggerer a thousand waiting tasks; each new ``Ledger`` would cost a
connection pool and a schema check. The Airflow tasks and triggers, the Airflow UI, the Prefect
adapter and the CLI all open ledgers through here, so one process holds one engine per database
whatever mix of them it runs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from greenflow.ledger.store import Ledger

_lock = threading.Lock()
# One opening at a time, under a lock of its own (lookups must never wait behind it): a thousand
# triggers starting together would otherwise run the schema check, alembic's migrations on a fresh
# database, in several threads at once, and alembic's module-level context is not thread-safe.
_opening = threading.Lock()
_ledgers: dict[str, Ledger] = {}


def registry_key(url: str | None) -> str:
    """The key a URL is kept under: the resolved URL (``None``: the configured one), driver normalised."""
    from greenflow.config import ledger_url
    from greenflow.ledger.database import normalise_url

    return normalise_url(ledger_url(url))


def cached_ledger(url: str | None) -> Ledger | None:
    """The ledger this process already opened at ``url``, if any (never opens one)."""
    key = registry_key(url)
    with _lock:
        return _ledgers.get(key)


def shared_ledger(url: str | None = None, *, opener: Callable[[str], Ledger] | None = None) -> Ledger:
    """The process's ledger at ``url`` (default: ``$GREENFLOW_LEDGER_URL`` or the SQLite file). Blocking.

    Opened once, by ``opener(resolved_url)`` (default: ``Ledger(url)``, which creates the schema of an
    empty database); later calls return the same object.
    """
    key = registry_key(url)
    with _lock:
        ledger = _ledgers.get(key)
    if ledger is not None:
        return ledger
    with _opening:
        with _lock:
            ledger = _ledgers.get(key)
        if ledger is None:
            if opener is None:
                from greenflow.ledger.store import Ledger

                ledger = Ledger(key)
            else:
                ledger = opener(key)
            with _lock:
                _ledgers[key] = ledger
        return ledger


def close_all() -> None:
    """Close and forget every ledger this process opened (tests; a changed configuration)."""
    with _lock:
        ledgers = list(_ledgers.values())
        _ledgers.clear()
    for ledger in ledgers:
        ledger.close()
