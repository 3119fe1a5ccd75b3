"""What the root ``greenflow`` options set for every command (the ledger URL)."""

from __future__ import annotations

from dataclasses import dataclass

from greenflow.ledger import Ledger


@dataclass
class CliState:
    """Options given before the command name (``greenflow --ledger URL budget list``)."""

    ledger_url: str | None = None


state = CliState()


def open_ledger(*, create_if_empty: bool = True) -> Ledger:
    """The ledger the command works on: ``--ledger``, else ``$GREENFLOW_LEDGER_URL``, else the default file."""
    return Ledger(state.ledger_url, create_if_empty=create_if_empty)
