"""Shared CLI output: stable JSON for machines, rich tables for people, one-line errors."""

from __future__ import annotations

import functools
import json
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from greenflow.cli.printable import printable
from greenflow.errors import GreenflowError

P = ParamSpec("P")
R = TypeVar("R")

# Off a terminal (CI logs, pipes) rich would wrap tables at 80 columns; ledger rows need more.
console = Console(width=None if sys.stdout.isatty() else 200)
# Errors are one line each: never wrapped, whatever the terminal width.
err_console = Console(stderr=True, soft_wrap=True)


def print_json(payload: Any) -> None:
    """Write ``payload`` as JSON on stdout (the documented ``--json`` shapes).

    Always valid JSON: a non-finite number (a value stored before greenflow bounded its inputs) is
    written as ``null``, never as the ``NaN``/``Infinity`` that JSON parsers refuse.
    """
    sys.stdout.write(json.dumps(_finite(payload), indent=2, default=str, allow_nan=False) + "\n")


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def print_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a rich table; ``None`` cells show as an em dash (never as 0).

    Cells are plain text: no rich markup is read from them and control characters are escaped.
    """
    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(Text("—" if cell is None else printable(str(cell))) for cell in row))
    console.print(table)


def say(line: str, *, error: bool = False) -> None:
    """Print one human-readable line (stderr with ``error``), as plain text with controls escaped."""
    (err_console if error else console).print(printable(line), markup=False, highlight=False, soft_wrap=True)


def fail(error: GreenflowError) -> NoReturn:
    """Print the error as one line on stderr and exit with its code (2 for bad input)."""
    say(f"error: {error.one_line()}", error=True)
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
