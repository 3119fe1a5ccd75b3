"""greenflow for Prefect 3: carbon-aware tasks and flows, green-window scheduling, budget gates, blocks, artifacts.

Prefect imports this package through the ``prefect.collections`` entry point when a server or worker
starts; importing it defines (and so registers) the :class:`GreenflowCredentials` and
:class:`GreenflowLedger` blocks. The adapter only translates Prefect's context into calls of
:class:`greenflow.lifecycle.Lifecycle`; see ``docs/prefect.md``.
"""

from greenflow.prefect.artifacts import (
    LEDGER_KEY,
    PublishedArtifacts,
    ledger_artifacts_hook,
    publish_budget_artifact,
    publish_run_artifacts,
    with_ledger_artifacts,
)
from greenflow.prefect.blocks import GreenflowCredentials, GreenflowLedger
from greenflow.prefect.budget import (
    BUDGET_EXHAUSTED_EVENT,
    budget_gate_task,
    carbon_budget_gate,
    governance_gate,
    governance_gate_task,
    pause_work_pool_on_exhaustion,
)
from greenflow.prefect.decorators import CarbonAware, carbon_aware, carbon_config, gpu_task
from greenflow.prefect.deferral import GREEN_WINDOW_STATE, ScheduledRun, schedule_green
from greenflow.prefect.report_artifact import PublishedReport, publish_report_artifact
from greenflow.prefect.run_context import current_segment

__all__ = [
    "BUDGET_EXHAUSTED_EVENT",
    "GREEN_WINDOW_STATE",
    "LEDGER_KEY",
    "CarbonAware",
    "GreenflowCredentials",
    "GreenflowLedger",
    "PublishedArtifacts",
    "PublishedReport",
    "ScheduledRun",
    "budget_gate_task",
    "carbon_aware",
    "carbon_budget_gate",
    "carbon_config",
    "current_segment",
    "governance_gate",
    "governance_gate_task",
    "gpu_task",
    "ledger_artifacts_hook",
    "pause_work_pool_on_exhaustion",
    "publish_budget_artifact",
    "publish_report_artifact",
    "publish_run_artifacts",
    "schedule_green",
    "with_ledger_artifacts",
]
