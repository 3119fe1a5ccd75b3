"""Reading the custom fields of a connection, whichever way they were stored.

Airflow 3's UI stores ``conn-fields`` in the extra JSON under their plain names; connections written by
older tools (and Airflow 2 forms) use ``extra__<conn_type>__<field>``. Both are accepted.
"""

from __future__ import annotations

from typing import Any, Protocol


class ConnectionLike(Protocol):
    """The part of an Airflow ``Connection`` greenflow reads."""

    conn_id: str
    conn_type: str | None
    host: str | None
    schema: str | None
    login: str | None
    password: str | None
    port: int | None

    @property
    def extra_dejson(self) -> dict[str, Any]:
        """The extra field as a dict."""
        ...


def extra_field(conn: ConnectionLike, name: str) -> Any:
    """The custom field ``name`` of ``conn`` or ``None`` when unset or blank."""
    extra = conn.extra_dejson or {}
    for key in (name, f"extra__{conn.conn_type}__{name}"):
        value = extra.get(key)
        if value is not None and value != "":
            return value
    return None


def blank_to_none(value: str | None) -> str | None:
    """``None`` for an empty or whitespace-only field."""
    return value.strip() if value and value.strip() else None
