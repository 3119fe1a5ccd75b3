"""``build_report``: the one function every front end (CLI, Airflow page, Prefect artifact) calls."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from greenflow.clock import utcnow
from greenflow.ledger import Ledger
from greenflow.ledger.database import safe_url
from greenflow.report import evidence, figures
from greenflow.report.attempt import ReportAttempt
from greenflow.report.budget_usage import budget_lines
from greenflow.report.market import market_based
from greenflow.report.model import Report
from greenflow.report.period import ReportPeriod
from greenflow.report.scope import ReportScope


def build_report(
    ledger: Ledger,
    period: ReportPeriod,
    scope: ReportScope | str | None = None,
    *,
    anchor: str | Path | None = None,
    verify: bool = True,
    now: datetime | None = None,
) -> Report:
    """The report over ``period`` and ``scope`` of ``ledger``.

    ``verify=False`` skips the chain's verification (the report then says it was not verified).
    ``anchor`` is an anchor JSON file to compare with the ledger.
    """
    from greenflow.report.loader import load_attempts

    chosen = scope if isinstance(scope, ReportScope) else ReportScope.parse(scope)
    attempts = load_attempts(ledger, period, chosen)
    # Instruments cover every scope's energy: a scoped report needs the whole period to take its share.
    everyone = attempts if chosen.scope.kind == "all" else load_attempts(ledger, period, ReportScope.parse("all"))
    return assemble(ledger, period, chosen, attempts, everyone, anchor=anchor, verify=verify, now=now)


def assemble(
    ledger: Ledger,
    period: ReportPeriod,
    scope: ReportScope,
    attempts: list[ReportAttempt],
    everyone: list[ReportAttempt] | None = None,
    *,
    anchor: str | Path | None = None,
    verify: bool = True,
    now: datetime | None = None,
) -> Report:
    """A report from attempts already loaded; ``everyone``: the period's attempts in every scope."""
    by_method, by_component = figures.energy_tables(attempts)
    totals = figures.totals(attempts)
    lines = figures.breakdowns(attempts)
    totals["market_based_g"], market_section = market_based(
        ledger, period, attempts, attempts if everyone is None else everyone
    )
    checked = (
        evidence.verification(ledger)
        if verify
        else {"ok": None, "reason": "verification skipped (--no-verify): run greenflow ledger verify"}
    )
    return Report(
        period=period,
        scope=str(scope),
        generated_at=now or utcnow(),
        ledger=safe_url(str(ledger.engine.url)),
        counts=figures.counts(attempts),
        figures=totals,
        energy_by_method=by_method,
        energy_by_component=by_component,
        savings_by_decision=figures.savings_by_decision(attempts),
        sci=figures.sci_lines(attempts),
        breakdowns=lines,
        budgets=budget_lines(ledger, attempts),
        market_based=market_section,
        evidence={
            "intensity_sources": evidence.intensity_sources(attempts),
            "intensity_granularity": "per entry: the run's energy is charged slot by slot at the series' own "
            "resolution (see each entry's measurement_notes.carbon.slots)",
            "methods": evidence.methods_table(attempts),
            "unmeasured_attempts": evidence.unmeasured_attempts(attempts),
            "verification": checked,
            "anchor": evidence.read_anchor(ledger, anchor),
            "selection": f"entries with recorded_at in [{period.start.isoformat()}, {period.end.isoformat()}) "
            f"and scope {scope}",
        },
        charts=figures.chart_series(lines["day"], attempts),
    )
