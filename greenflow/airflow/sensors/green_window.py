"""GreenWindowSensor: hold downstream work that greenflow does not run itself until a green window.

For a KubernetesPodOperator, a Spark submit or any task greenflow cannot wrap: the sensor plans with
the same arguments as :class:`CarbonAwareOperator`, **defers** (no worker slot held) until the window or
the latest start, then succeeds so the downstream task starts. It records its decision in the ledger
(``deferred``, or ``ran_now`` when the window is now) and returns where and when the work should run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow.sdk import BaseSensorOperator

from greenflow.airflow.carbon_aware_base import CarbonAwareBaseOperator
from greenflow.check_entries import record_check
from greenflow.lifecycle import Decision, Lifecycle

_NOT_METERED = "not metered: the sensor only holds downstream work, which greenflow does not run"


class GreenWindowSensor(CarbonAwareBaseOperator, BaseSensorOperator):
    """Succeeds in the green window (always by the latest start); takes the carbon-aware arguments.

    ``budget``, ``estimate`` and ``on_budget_exceeded`` are refused: the sensor runs no work. Gate on a
    budget with :class:`~greenflow.airflow.sensors.budget.CarbonBudgetSensor`.
    Returns (XCom) ``{"region", "planned_start", "latest_start", "entry_id"}``.
    """

    template_fields = ("provider_options",)
    reserves_budget = False
    uses_budget = False
    ui_color = "#d8f3dc"

    def poke(self, context: Any) -> bool:
        """True when the plan says now is the green window (for poke/reschedule use)."""
        lifecycle = self.carbon_lifecycle(context)
        return self.plan(lifecycle).action == "run_now"

    def execute(self, context: Any) -> dict[str, Any]:
        """Plan; defer to the window or succeed now."""
        lifecycle = self.carbon_lifecycle(context)
        decision = self.plan(lifecycle)
        decision = self.defer_to_window(lifecycle, decision)
        return self._open(context, lifecycle, decision)

    def execute_complete(self, context: Any, event: Mapping[str, Any]) -> dict[str, Any]:
        """The window has come (or the latest start): record the decision and let downstream run."""
        lifecycle = self.carbon_lifecycle(context)
        decision = self.decision_from_event(lifecycle, event)
        decision = self.defer_to_window(lifecycle, decision)
        return self._open(context, lifecycle, decision, fired=event.get("fired"))

    def _open(self, context: Any, lifecycle: Lifecycle, decision: Decision, fired: Any = None) -> dict[str, Any]:
        entry = record_check(
            not_metered=_NOT_METERED,
            lifecycle=lifecycle,
            decision=decision,
            extra={"sensor": "GreenWindowSensor", "fired": fired},
        )
        self.publish_entry(context, entry)
        return {
            "region": decision.region,
            "planned_start": decision.start_at.isoformat(),
            "latest_start": decision.latest_start.isoformat(),
            "entry_id": entry.entry_id,
        }
