"""Connection lookups that fail with greenflow's message (what is missing and how to fix it)."""

from __future__ import annotations

from typing import Any

from greenflow.errors import ConfigError


def _missing(conn_id: str, error: Exception) -> ConfigError:
    return ConfigError(
        f"Airflow connection {conn_id!r} is not defined ({type(error).__name__})",
        fix=f"create it (airflow connections add {conn_id} ...) or set AIRFLOW_CONN_{conn_id.upper()}",
    )


def get_connection(conn_id: str) -> Any:
    """The connection ``conn_id`` (from a task, the DAG processor or a thread of the triggerer)."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException as error:
        raise _missing(conn_id, error) from None


async def aget_connection(conn_id: str) -> Any:
    """The connection ``conn_id`` without blocking the triggerer's event loop."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return await BaseHook.aget_connection(conn_id)
    except AirflowNotFoundException as error:
        raise _missing(conn_id, error) from None
