"""``greenflow db``: the ledger database's schema."""

from __future__ import annotations

import typer

from greenflow.cli.context import state
from greenflow.cli.output import console, handle_errors
from greenflow.config import ledger_url
from greenflow.ledger.database import create_ledger_engine, current_revision, head_revision, safe_url, upgrade

app = typer.Typer(help="Create or migrate the ledger database.", no_args_is_help=True)


@app.command("upgrade")
@handle_errors
def upgrade_command() -> None:
    """Create the ledger schema or migrate it to this greenflow's version."""
    url = ledger_url(state.ledger_url)
    engine = create_ledger_engine(url)
    before = current_revision(engine)
    reached = upgrade(engine)
    if before == reached:
        console.print(f"ledger at {safe_url(url)} is up to date (revision {reached})")
    else:
        console.print(f"ledger at {safe_url(url)} upgraded from {before or 'empty'} to revision {reached}")
    engine.dispose()


@app.command("status")
@handle_errors
def status_command() -> None:
    """Show the ledger's schema revision and the one this greenflow expects."""
    url = ledger_url(state.ledger_url)
    engine = create_ledger_engine(url)
    current = current_revision(engine)
    console.print(f"ledger: {safe_url(url)}\nschema revision: {current or 'none'} (expected {head_revision()})")
    engine.dispose()
