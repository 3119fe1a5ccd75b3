"""Objects one Airflow process shares among all the greenflow tasks and triggers it hosts.

A triggerer runs a thousand waiting tasks in one process: one database engine per ledger URL and one
provider client per (provider, connection, options) keep that at one connection pool and one HTTP
session instead of a thousand. The forecast cache on top of them (:func:`greenflow.lifecycle.shared_cache`)
is what makes those tasks share one fetch per region per refresh.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any

from greenflow.intensity.providers.base import IntensityProvider, get_provider
from greenflow.ledger import Ledger

_lock = threading.Lock()
_ledgers: dict[str, Ledger] = {}
_providers: dict[str, IntensityProvider] = {}


def ledger_at(url: str) -> Ledger:
    """The process's :class:`Ledger` for ``url`` (opened, and its schema checked, once)."""
    with _lock:
        ledger = _ledgers.get(url)
    if ledger is None:
        opened = Ledger(url)  # outside the lock: it may create the schema of a fresh database
        with _lock:
            ledger = _ledgers.setdefault(url, opened)
        if ledger is not opened:
            opened.close()
    return ledger


def provider_for(name: str, options: Mapping[str, Any], *, source: str | None) -> IntensityProvider:
    """The process's provider client for ``name`` built from ``options``.

    ``source`` names where credentials came from (the connection id): options holding secrets are
    keyed by it rather than by their values, so no secret is ever part of a key or a log line.
    """
    plain = {k: v for k, v in options.items() if isinstance(v, (str, int, float, bool, type(None)))}
    key = json.dumps([name, source, plain, sorted(options)], sort_keys=True, default=str)
    with _lock:
        provider = _providers.get(key)
        if provider is None:
            provider = _providers[key] = get_provider(name, **dict(options))
        return provider
