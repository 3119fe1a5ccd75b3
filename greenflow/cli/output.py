"""Shared CLI output: stable JSON for machines, rich tables for people, one-line errors."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from greenflow.errors import GreenflowError

P = ParamSpec("P")
R = TypeVar("R")

# Off a terminal (CI logs, pipes) rich would wrap tables at 80 columns; ledger rows need more.
console = Console(width=None if sys.stdout.isatty() else 200)
# Errors are one line each: never wrapped, whatever the terminal width.
err_console = Console(stderr=True, soft_wrap=True)


def print_json(payload: Any) -> None:
    """Write ``payload`` as JSON on stdout (the documented ``--json`` shapes)."""
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


def print_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a rich table; ``None`` cells show as an em dash (never as 0)."""
    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("—" if cell is None else str(cell) for cell in row))
    console.print(table)


def fail(error: GreenflowError) -> NoReturn:
    """Print the error as one line on stderr and exit with its code (2 for bad input)."""
    err_console.print(f"error: {error.one_line()}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code=error.exit_code)


def handle_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn a :class:`GreenflowError` raised by ``command`` into a one-line message and its exit code."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except GreenflowError as error:
            fail(error)

    return wrapper
