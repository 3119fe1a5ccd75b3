"""Which ledger the Carbon Ledger reads, and opening it without ever writing to it.

The UI resolves the ledger the way tasks do (``[greenflow] ledger_conn_id``, then ``[greenflow]
ledger_url``, then ``$GREENFLOW_LEDGER_URL`` and greenflow's default SQLite file), so it shows what the
tasks wrote. Unlike a task it never creates anything: a missing SQLite file or an empty database is "no
entries yet", not a schema to create, because the API server must stay read-only.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from greenflow.config import ledger_url as core_ledger_url
from greenflow.errors import ConfigError
from greenflow.ledger import Ledger
from greenflow.ledger.database import create_ledger_engine, current_revision, normalise_url, safe_url
from greenflow.ledger.registry import cached_ledger, close_all, shared_ledger

# A connection's URL is looked up in Airflow's secrets backends; re-read it now and then, not per request.
_CONNECTION_TTL_SECONDS = 60.0

_lock = threading.Lock()
_connection_urls: dict[str, tuple[float, str]] = {}


@dataclass(frozen=True)
class LedgerSource:
    """The ledger a request reads: its URL without password, and the open ledger (``None``: none yet)."""

    safe_url: str
    ledger: Ledger | None

    @property
    def missing(self) -> bool:
        """True when there is no ledger at the URL yet (no task has written one)."""
        return self.ledger is None


def _option(key: str) -> str:
    from airflow.configuration import conf

    value = conf.get("greenflow", key, fallback=None)
    return str(value).strip() if value is not None else ""


def configured_url() -> str:
    """The ledger URL (may hold a password: show only :func:`safe_url` forms of it)."""
    conn_id = _option("ledger_conn_id")
    if conn_id:
        return _connection_url(conn_id)
    return normalise_url(core_ledger_url(_option("ledger_url") or None))


def _connection_url(conn_id: str) -> str:
    now = time.monotonic()
    with _lock:
        cached = _connection_urls.get(conn_id)
    if cached is not None and now - cached[0] < _CONNECTION_TTL_SECONDS:
        return cached[1]
    from airflow.models.connection import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    from greenflow.airflow.hooks.ledger import ledger_url_from_connection

    try:
        connection = Connection.get_connection_from_secrets(conn_id)
    except AirflowNotFoundException:
        raise ConfigError(
            f"[greenflow] ledger_conn_id names connection {conn_id!r}, which does not exist",
            fix="create it (type greenflow_ledger) or clear ledger_conn_id to use [greenflow] ledger_url",
        ) from None
    url = normalise_url(ledger_url_from_connection(connection))
    with _lock:
        _connection_urls[conn_id] = (now, url)
    return url


def open_source(url: str | None = None) -> LedgerSource:
    """The ledger at ``url`` (default: :func:`configured_url`), opened once per process and URL.

    Raises :class:`~greenflow.errors.LedgerUnavailable` or :class:`~greenflow.errors.LedgerSchemaOutdated`
    (each with its fix) when the database cannot be read.
    """
    url = url or configured_url()
    shown = safe_url(url)
    ledger = cached_ledger(url)
    if ledger is not None:
        return LedgerSource(shown, ledger)
    if _sqlite_file_missing(url):
        return LedgerSource(shown, None)
    engine = create_ledger_engine(url)
    if current_revision(engine) is None:
        # An empty database: no task has written to it yet. Creating the schema is the tasks' job.
        engine.dispose()
        return LedgerSource(shown, None)
    # Refuses an older or newer schema, with the fix; never creates one (the API server stays read-only).
    ledger = shared_ledger(url, opener=lambda _key: Ledger(engine=engine, create_if_empty=False))
    if ledger.engine is not engine:  # another thread registered this URL's ledger meanwhile
        engine.dispose()
    return LedgerSource(shown, ledger)


def _sqlite_file_missing(url: str) -> bool:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return False
    database = parsed.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return False
    return not Path(database).expanduser().exists()


def forget_all() -> None:
    """Close every ledger this process opened (tests; a changed configuration)."""
    with _lock:
        _connection_urls.clear()
    close_all()
