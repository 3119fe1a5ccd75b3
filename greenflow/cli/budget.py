"""``greenflow budget``: define budgets and see how much of each is spent."""

from __future__ import annotations

import typer

from greenflow.bounds import BUDGET_NAME_LENGTH, SCOPE_VALUE_LENGTH, check_text
from greenflow.cli.context import open_ledger
from greenflow.cli.output import handle_errors, print_json, print_table, say
from greenflow.ledger import Budget, BudgetStatus

app = typer.Typer(help="Carbon and energy budgets.", no_args_is_help=True)


@app.command("set")
@handle_errors
def set_budget(
    name: str = typer.Argument(..., help="Budget name, e.g. gpu-monthly."),
    limit: str = typer.Option(..., "--limit", help="500g, 12kg, 1.5t (CO2e) or 40kWh, 2MWh (energy)."),
    period: str = typer.Option("month", "--period", help="day, week, month or rolling:<hours>h."),
    scope: str = typer.Option("all", "--scope", help="all, workflow:<id>, tag:<tag> or team:<name>."),
    timezone: str = typer.Option("UTC", "--timezone", help="IANA time zone of calendar periods."),
) -> None:
    """Create or change a budget."""
    # Checked here too (budgets are also set from Python): a name or scope the ledger cannot hold.
    check_text(name, "budget name", limit=BUDGET_NAME_LENGTH)
    budget = Budget.parse(name, limit, period, scope, timezone)
    if budget.scope.value is not None:
        check_text(budget.scope.value, "--scope value", limit=SCOPE_VALUE_LENGTH)
    open_ledger().budgets.set(budget)
    say(f"budget {budget.name}: {budget.limit} per {budget.period}, scope {budget.scope}")


@app.command("list")
@handle_errors
def list_budgets(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """List the budgets."""
    budgets = open_ledger().budgets.list()
    if as_json:
        print_json(
            [
                {"name": b.name, "limit": b.limit.value, "unit": b.unit, "period": str(b.period), "scope": str(b.scope)}
                for b in budgets
            ]
        )
        return
    print_table(
        "Budgets", ["name", "limit", "period", "scope"], [[b.name, b.limit, b.period, b.scope] for b in budgets]
    )


@app.command("status")
@handle_errors
def budget_status(
    name: str | None = typer.Argument(None, help="One budget; all of them when omitted."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Limit, spent, reserved, remaining and period end of each budget."""
    budgets = open_ledger().budgets
    names = [name] if name else [b.name for b in budgets.list()]
    statuses = [budgets.status(n) for n in names]
    if as_json:
        print_json([s.to_dict() for s in statuses] if name is None else statuses[0].to_dict())
        return
    print_table(
        "Budget status",
        ["name", "limit", "spent", "reserved", "remaining", "used", "period end"],
        [_row(s) for s in statuses],
    )


def _row(status: BudgetStatus) -> list[str]:
    bar_width = 20
    filled = min(bar_width, round(status.share_spent * bar_width))
    bar = "█" * filled + "░" * (bar_width - filled)
    return [
        status.budget.name,
        status.format(status.budget.limit.value),
        status.format(status.spent),
        status.format(status.reserved),
        status.format(status.remaining),
        f"{bar} {status.share_spent:.0%}",
        status.period_end.isoformat(timespec="minutes"),
    ]
