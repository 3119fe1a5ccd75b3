"""The anchor-key connection: the Ed25519 private key that signs ledger checkpoints.

The key sits in the connection's Password field (PEM, or base64 of its 32 raw bytes), which Airflow's UI
masks and the task SDK registers with its secrets masker. It never reaches a log line, the ledger or an
XCom: only the anchor (the public checkpoint and signature) leaves the task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from greenflow.airflow.hooks.connection_fields import ConnectionLike, blank_to_none, extra_field
from greenflow.airflow.hooks.lookup import get_connection
from greenflow.errors import ConfigError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

CONN_TYPE = "greenflow_anchor_key"


def anchor_key_from_connection(conn: ConnectionLike) -> Ed25519PrivateKey:
    """The private key a ``greenflow_anchor_key`` connection holds."""
    from greenflow.ledger.anchor import load_private_key

    if conn.conn_type not in (CONN_TYPE, None, ""):
        raise ConfigError(
            f"connection {conn.conn_id!r} has type {conn.conn_type!r}, not {CONN_TYPE}",
            fix=f"point anchor_key_conn_id at a connection of type {CONN_TYPE}",
        )
    key = blank_to_none(conn.password) or extra_field(conn, "private_key")
    if not key:
        raise ConfigError(
            f"connection {conn.conn_id!r} holds no anchor key",
            fix="paste the private key (`greenflow ledger keygen`) into its Password field",
        )
    return load_private_key(str(key), f"connection {conn.conn_id!r}")


class GreenflowAnchorKeyHook(BaseHook):
    """Reads the Ed25519 key that signs ledger anchors from a ``greenflow_anchor_key`` connection."""

    conn_name_attr = "anchor_key_conn_id"
    default_conn_name = "greenflow_anchor_key_default"
    conn_type = CONN_TYPE
    hook_name = "greenflow ledger anchor key"

    def __init__(self, anchor_key_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.anchor_key_conn_id = anchor_key_conn_id

    def get_conn(self) -> Ed25519PrivateKey:
        """The private key (never log it)."""
        return anchor_key_from_connection(get_connection(self.anchor_key_conn_id))
