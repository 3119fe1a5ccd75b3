"""What the root ``greenflow`` options set for every command (the ledger URL)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def using_ledger(url: str) -> Iterator[None]:
    """Commands called inside work on the ledger at ``url``; the option given before is restored after."""
    before, state.ledger_url = state.ledger_url, url
    try:
        yield
    finally:
        state.ledger_url = before
