"""Which plan a waiting attempt holds when it re-plans at a forecast refresh: one rule for every entry point.

A fresh plan is taken only when it starts no later than the one held and, when sooner, only when its
window is greener than the held one by the fresh forecast's numbers for both: the start moves earlier
when a greener window opens sooner (never for a sooner but dirtier one), never later than promised, and
never past the latest start that still meets the deadline. While the attempt waits for a forecast (a
provider outage), whatever the policy says next replaces the wait.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from greenflow.lifecycle import Decision


def preferred(current: Decision, fresh: Decision) -> Decision:
    """Which plan a waiting task holds after a refresh (see the module docstring)."""
    if current.action == "retry":
        # Waiting for a forecast: whatever the policy says now (a plan, another retry, or run) replaces it.
        return fresh
    if fresh.action == "retry" or fresh.forecast is None:
        return current  # the provider failed this time: the plan already held stands
    if fresh.start_at > current.start_at:
        return current  # never later than promised
    if fresh.start_at == current.start_at:
        return fresh  # the same start, on the fresher evidence
    # Sooner only for a greener window, both starts judged by the fresh forecast: the planner may pick a
    # sooner but dirtier start (a threshold met sooner, or "run now" when the saving fell below min_savings).
    sooner, held = _window_means(fresh, current)
    if sooner is not None and held is not None and sooner < held:
        return fresh
    return current


def _window_means(fresh: Decision, current: Decision) -> tuple[float | None, float | None]:
    """The fresh forecast's mean intensity over the fresh start's window and over the held start's window.

    A held plan in another region cannot be judged by the fresh forecast (``None``: it is kept). A window
    the fresh forecast does not fully cover is unknown (``None``).
    """
    forecast = fresh.forecast_obj
    plan = fresh.plan or {}
    if forecast is None or fresh.region != current.region or not plan.get("start") or not plan.get("end"):
        return None, None
    span = datetime.fromisoformat(str(plan["end"])) - datetime.fromisoformat(str(plan["start"]))
    if span <= timedelta(0):
        return None, None

    def mean(start: datetime) -> float | None:
        value, coverage = forecast.mean_intensity(start, start + span)
        return value if coverage >= 1.0 else None

    return mean(fresh.start_at), mean(current.start_at)
