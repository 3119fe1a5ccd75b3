"""Which ledger a task writes to: its ``ledger_conn_id``, else ``[greenflow]`` settings, else greenflow's own.

Order: the task's connection id, ``[greenflow] ledger_conn_id``, ``[greenflow] ledger_url``, then
``$GREENFLOW_LEDGER_URL`` and greenflow's default SQLite file (:func:`greenflow.config.ledger_url`).
Workers and triggerers must resolve the same ledger: configure them alike, as Airflow expects anyway.

Triggers import this module on the triggerer's event loop, so the ledger itself (SQLAlchemy models,
hooks) is imported only by the functions that open it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from greenflow.airflow.hooks.connection_fields import ConnectionLike
from greenflow.airflow.hooks.lookup import aget_connection
from greenflow.airflow.resources import ledger_at, run_blocking
from greenflow.airflow.settings import option
from greenflow.config import ledger_url as core_ledger_url

if TYPE_CHECKING:
    from greenflow.ledger import Ledger


def _conn_id(ledger_conn_id: str | None) -> str | None:
    return ledger_conn_id or option("ledger_conn_id") or None


def configured_ledger(ledger_conn_id: str | None = None) -> tuple[str | None, str | None]:
    """``(connection id, None)`` when a connection names the ledger, else ``(None, URL)``.

    Reads Airflow's configuration only (no connection lookup), so a trigger can run it in a thread and
    then read the connection with Airflow's async lookup.
    """
    conn_id = _conn_id(ledger_conn_id)
    if conn_id:
        return conn_id, None
    return None, core_ledger_url(option("ledger_url") or None)


def ledger_url(ledger_conn_id: str | None = None) -> str:
    """The ledger URL (may contain a password: log only ``safe_url`` forms)."""
    from greenflow.airflow.hooks.ledger import GreenflowLedgerHook

    conn_id, url = configured_ledger(ledger_conn_id)
    if conn_id is not None:
        return GreenflowLedgerHook(conn_id).get_url()
    assert url is not None
    return url


async def aledger_url(ledger_conn_id: str | None = None) -> str:
    """:func:`ledger_url` from an event loop: configuration read in a thread, the connection awaited."""
    conn_id, url = await run_blocking(configured_ledger, ledger_conn_id)
    if conn_id is None:
        assert url is not None
        return url
    conn = await aget_connection(conn_id)
    return await run_blocking(_url_from_connection, conn)


def _url_from_connection(conn: ConnectionLike) -> str:
    from greenflow.airflow.hooks.ledger import ledger_url_from_connection

    return ledger_url_from_connection(conn)


def open_ledger(ledger_conn_id: str | None = None) -> Ledger:
    """The process's ledger for this task."""
    return ledger_at(ledger_url(ledger_conn_id))
