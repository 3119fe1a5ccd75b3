"""Shared CLI output: stable JSON for machines, rich tables for people, one-line errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from greenflow.errors import GreenflowError

console = Console()
err_console = Console(stderr=True)


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
