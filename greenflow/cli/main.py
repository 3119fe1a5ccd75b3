"""Entry point of the ``greenflow`` command: one Typer app, one module per command group."""

from __future__ import annotations

import typer

from greenflow import __version__
from greenflow.cli.context import state

app = typer.Typer(
    name="greenflow",
    help="Carbon-aware GPU work: forecasts, green windows, metering, the provenance ledger and budgets.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    ledger: str | None = typer.Option(
        None, "--ledger", help="Ledger database URL (default: $GREENFLOW_LEDGER_URL, else a SQLite file)."
    ),
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True),
) -> None:
    state.ledger_url = ledger
    if version:
        typer.echo(__version__)
        raise typer.Exit()
    if ctx.invoked_subcommand is None:  # `greenflow --ledger URL` alone: nothing to do, say what there is
        typer.echo(ctx.get_help())
        raise typer.Exit(2)


def _register() -> None:
    # Imported here so `greenflow --help` stays cheap and each group lives in its own module.
    from greenflow.cli import budget, db, demo, forecast, ledger, plan, run
    from greenflow.cli import instruments as instruments_cli
    from greenflow.cli import prefect as prefect_cli
    from greenflow.cli import report as report_cli

    app.add_typer(db.app, name="db")
    app.add_typer(budget.app, name="budget")
    app.add_typer(ledger.app, name="ledger")
    app.add_typer(prefect_cli.app, name="prefect")
    app.command("forecast")(forecast.forecast)
    app.command("plan")(plan.plan_command)
    app.command("run", context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True})(run.run)
    app.command("demo")(demo.demo)
    app.command("report")(report_cli.report)
    app.command("evidence")(report_cli.evidence)
    app.add_typer(instruments_cli.app, name="instruments")


_register()
