"""``build_report``: the one function every front end (CLI, Airflow page, Prefect artifact) calls."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from greenflow.ledger.anchor import Anchor


def build_report(
    ledger: Ledger,
    period: ReportPeriod,
    scope: ReportScope | str | None = None,
    *,
    anchor: str | Path | None = None,
    public_key: str | Path | None = None,
    verify: bool = True,
    now: datetime | None = None,
) -> Report:
    """The report over ``period`` and ``scope`` of ``ledger``.

    ``verify=False`` skips the chain's verification (the report then says it was not verified).
    ``anchor`` is an anchor file (``greenflow ledger anchor``): its signature is checked (with the key
    file ``public_key``, else the key it embeds; a forged or malformed file raises ``InvalidInput``)
    and the chain is verified from its seq on instead of from the first entry.
    """
    from greenflow.report.loader import load_attempts

    # The anchor is checked before anything is read: a forged file costs nothing.
    checked = evidence.load_anchor(anchor, public_key)
    chosen = scope if isinstance(scope, ReportScope) else ReportScope.parse(scope)
    attempts = load_attempts(ledger, period, chosen)
    # Instruments cover every scope's energy: a scoped report needs the whole period to take its share.
    everyone = attempts if chosen.scope.kind == "all" else load_attempts(ledger, period, ReportScope.parse("all"))
    return assemble(
        ledger, period, chosen, attempts, everyone, anchor=checked, public_key=public_key, verify=verify, now=now
    )


def assemble(
    ledger: Ledger,
    period: ReportPeriod,
    scope: ReportScope,
    attempts: list[ReportAttempt],
    everyone: list[ReportAttempt] | None = None,
    *,
    anchor: Anchor | None = None,
    public_key: str | Path | None = None,
    verify: bool = True,
    now: datetime | None = None,
) -> Report:
    """A report from attempts already loaded; ``everyone``: the period's attempts in every scope.

    ``anchor`` is an anchor already read and checked (:func:`greenflow.report.evidence.load_anchor`);
    ``public_key`` only names the key file it was checked with.
    """
    by_method, by_component = figures.energy_tables(attempts)
    totals = figures.totals(attempts)
    lines = figures.breakdowns(attempts)
    totals["market_based_g"], market_section = market_based(
        ledger, period, attempts, attempts if everyone is None else everyone
    )
    checked = (
        evidence.verification(ledger, anchor)
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
            "anchor": evidence.anchor_evidence(ledger, anchor, public_key),
            "selection": f"entries with recorded_at in [{period.start.isoformat()}, {period.end.isoformat()}) "
            f"and scope {scope}",
        },
        charts=figures.chart_series(lines["day"], attempts),
    )
