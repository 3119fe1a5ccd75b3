"""One line saying what a lifecycle decision means: run now or defer to when, what it saves, the latest start.

In the core because every entry point prints it: the Prefect adapter in flow-run logs, ``greenflow
prefect schedule`` on the terminal (the CLI must not import an adapter to format a line).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from greenflow.lifecycle import Decision


def short_time(moment: datetime) -> str:
    """``2026-06-01 11:00:00Z``: a UTC moment as log lines show it."""
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def describe(decision: Decision, *, reason: bool = True) -> str:
    """One line: where and when the attempt starts, what that is expected to save, the deadline (and why)."""
    plan = decision.plan or {}
    clock = " (trace replay time)" if decision.replay_speed else ""
    where = f" in {decision.region}" if decision.region else ""
    waits = decision.action == "defer" and decision.deferred
    if decision.action == "retry":
        head = f"forecast unavailable; asking again at {short_time(decision.start_at)}{clock}"
    elif waits:
        head = f"deferred to {short_time(decision.start_at)}{where}{clock}"
    else:
        head = f"runs now{where}"
    numbers = []
    if plan.get("expected_gco2_per_kwh") is not None:
        numbers.append(f"expected {plan['expected_gco2_per_kwh']:.0f} gCO2e/kWh")
    if plan.get("now_gco2_per_kwh") is not None and waits:
        numbers.append(f"vs {plan['now_gco2_per_kwh']:.0f} now")
    if plan.get("savings_pct") is not None and waits:
        numbers.append(f"saves {plan['savings_pct']:.0f}%")
    detail = f" ({', '.join(numbers)})" if numbers else ""
    line = f"{head}{detail}; latest start {short_time(decision.latest_start)}{clock}"
    return f"{line}: {decision.reason}" if reason else line
