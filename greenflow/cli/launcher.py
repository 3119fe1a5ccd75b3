"""The ``greenflow`` entry point: ``greenflow run -- CMD`` starts CMD before the heavy imports.

``greenflow --version`` is answered here, importing nothing else. A ``run`` command line with nothing to
plan or reserve goes to :mod:`greenflow.cli.fast_run` (no Typer, no ledger before the command starts);
every other command line (plans, budgets, ``--decision``, help, anything the fast path does not know)
goes to the Typer app unchanged, so its behaviour and error messages stay the reference.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import NoReturn


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``greenflow`` with ``argv`` (default: the process's arguments); returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--version"]:
        # Answered here: the Typer app imports every command (SQLAlchemy, the lifecycle), about 1 s of CPU.
        from greenflow import __version__

        sys.stdout.write(f"{__version__}\n")
        return 0
    from greenflow.cli.fast_run import fast_run, parse_run

    request = parse_run(args)
    if request is None or request.plans_or_reserves:
        return _typer(args)
    return fast_run(request)


def entry_point() -> NoReturn:
    """Console-script entry: :func:`main`, then exit without tearing down the interpreter's modules.

    The ledger may still be half-imported in a background thread when a short command ends; skipping
    the interpreter's teardown keeps that from costing the user time (everything is flushed first).
    """
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _typer(args: list[str]) -> int:
    from greenflow.cli.main import app

    try:
        app(args)
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    return 0
