"""Which ledger a task writes to: its ``ledger_conn_id``, else ``[greenflow]`` settings, else greenflow's own.

Order: the task's connection id, ``[greenflow] ledger_conn_id``, ``[greenflow] ledger_url``, then
``$GREENFLOW_LEDGER_URL`` and greenflow's default SQLite file (:func:`greenflow.config.ledger_url`).
Workers and triggerers must resolve the same ledger: configure them alike, as Airflow expects anyway.
"""

from __future__ import annotations

from greenflow.airflow.hooks.ledger import GreenflowLedgerHook
from greenflow.airflow.resources import ledger_at
from greenflow.airflow.settings import option
from greenflow.config import ledger_url as core_ledger_url
from greenflow.ledger import Ledger


def _conn_id(ledger_conn_id: str | None) -> str | None:
    return ledger_conn_id or option("ledger_conn_id") or None


def ledger_url(ledger_conn_id: str | None = None) -> str:
    """The ledger URL (may contain a password: log only ``safe_url`` forms)."""
    conn_id = _conn_id(ledger_conn_id)
    if conn_id:
        return GreenflowLedgerHook(conn_id).get_url()
    return core_ledger_url(option("ledger_url") or None)


async def aledger_url(ledger_conn_id: str | None = None) -> str:
    """:func:`ledger_url` without blocking an event loop on the connection lookup."""
    conn_id = _conn_id(ledger_conn_id)
    if conn_id:
        return await GreenflowLedgerHook(conn_id).aget_url()
    return core_ledger_url(option("ledger_url") or None)


def open_ledger(ledger_conn_id: str | None = None) -> Ledger:
    """The process's ledger for this task."""
    return ledger_at(ledger_url(ledger_conn_id))
