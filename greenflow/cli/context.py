"""What the root ``greenflow`` options set for every command (the ledger URL)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from greenflow.errors import InvalidInput
from greenflow.ledger import Ledger
from greenflow.ledger.database import sqlite_file


@dataclass
class CliState:
    """Options given before the command name (``greenflow --ledger URL budget list``)."""

    ledger_url: str | None = None


state = CliState()


def open_ledger(*, create_if_empty: bool = True, must_exist: bool = False) -> Ledger:
    """The ledger the command works on: ``--ledger``, else ``$GREENFLOW_LEDGER_URL``, else the default file.

    ``must_exist`` (commands that judge a ledger, such as ``verify``) refuses a SQLite file that is not
    there instead of creating an empty ledger, which would "verify" a typo as an intact chain.
    """
    if must_exist:
        from greenflow.config import ledger_url

        path = sqlite_file(ledger_url(state.ledger_url))
        if path is not None and not path.exists():
            raise InvalidInput(
                f"there is no ledger at {path}", fix="check the path given with --ledger or GREENFLOW_LEDGER_URL"
            )
        create_if_empty = False
    return Ledger(state.ledger_url, create_if_empty=create_if_empty)


@contextmanager
def using_ledger(url: str) -> Iterator[None]:
    """Commands called inside work on the ledger at ``url``; the option given before is restored after."""
    before, state.ledger_url = state.ledger_url, url
    try:
        yield
    finally:
        state.ledger_url = before
