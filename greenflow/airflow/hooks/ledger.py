"""The ledger connection: where the provenance ledger lives (SQLite file or PostgreSQL).

The password is kept out of every message: only :func:`greenflow.ledger.database.safe_url` forms of the
URL are ever logged or raised.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from greenflow.airflow.hooks.connection_fields import ConnectionLike, blank_to_none, extra_field
from greenflow.airflow.hooks.lookup import aget_connection, get_connection
from greenflow.airflow.resources import ledger_at
from greenflow.errors import ConfigError
from greenflow.ledger import Ledger

CONN_TYPE = "greenflow_ledger"


def ledger_url_from_connection(conn: ConnectionLike) -> str:
    """The SQLAlchemy URL a ``greenflow_ledger`` connection describes, password included."""
    if conn.conn_type not in (CONN_TYPE, None, ""):
        raise ConfigError(
            f"connection {conn.conn_id!r} has type {conn.conn_type!r}, not {CONN_TYPE}",
            fix=f"point ledger_conn_id at a connection of type {CONN_TYPE}",
        )
    password = blank_to_none(conn.password)
    given = extra_field(conn, "url")
    if given:
        try:
            url = make_url(str(given))
        except ArgumentError:
            raise ConfigError(
                f"connection {conn.conn_id!r}: the URL field is not a SQLAlchemy URL",
                fix="write it like postgresql+psycopg://user@host:5432/db or sqlite:////path/ledger.db",
            ) from None
        if password:
            url = url.set(password=password)
        if blank_to_none(conn.login) and not url.username:
            url = url.set(username=blank_to_none(conn.login))
        return url.render_as_string(hide_password=False)
    driver = str(extra_field(conn, "driver") or "postgresql+psycopg")
    database = blank_to_none(conn.schema)
    if driver.startswith("sqlite"):
        if not database:
            raise ConfigError(
                f"connection {conn.conn_id!r} uses SQLite but names no file",
                fix="put the ledger file's path in the Database field",
            )
        return URL.create(driver, database=database).render_as_string(hide_password=False)
    host = blank_to_none(conn.host)
    if not host:
        raise ConfigError(
            f"connection {conn.conn_id!r} names no database host",
            fix="fill Host (and Port, Database, Login), or give the full URL field",
        )
    url = URL.create(
        driver,
        username=blank_to_none(conn.login),
        password=password,
        host=host,
        port=conn.port or None,
        database=database,
    )
    return url.render_as_string(hide_password=False)


class GreenflowLedgerHook(BaseHook):
    """Opens the greenflow ledger named by a ``greenflow_ledger`` connection."""

    conn_name_attr = "ledger_conn_id"
    default_conn_name = "greenflow_ledger_default"
    conn_type = CONN_TYPE
    hook_name = "greenflow ledger"

    def __init__(self, ledger_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ledger_conn_id = ledger_conn_id

    def get_url(self) -> str:
        """The ledger URL (contains the password: never log it, use ``safe_url``)."""
        return ledger_url_from_connection(get_connection(self.ledger_conn_id))

    async def aget_url(self) -> str:
        """:meth:`get_url` from an event loop."""
        return ledger_url_from_connection(await aget_connection(self.ledger_conn_id))

    def get_conn(self) -> Ledger:
        """The ledger, shared by every task of this process."""
        return ledger_at(self.get_url())
