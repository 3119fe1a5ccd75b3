"""Who is running: Prefect's run context translated into the ledger's :class:`~greenflow.ledger.Identity`.

One place reads Prefect's context (``TaskRunContext`` / ``FlowRunContext``, the objects behind
``prefect.runtime``), so the decorator, the gates and the artifacts agree on what an attempt is:

* a **task** attempt: workflow = the flow's name, run = the flow run id, task = ``<task name>-<dynamic
  key>`` (unique in its flow run even when ``task_run_name`` is customised, and the same for every retry),
  attempt = the task run's ``run_count`` (retries are attempts);
* a **flow** attempt (``@carbon_aware`` on the flow itself): task = the flow's name, attempt = the flow
  run's ``run_count`` minus the times greenflow rescheduled it (a deferral is not an attempt);
* a call **inside a flow but outside a task** (``my_task.fn(...)``): its own task id in that flow run;
* **no Prefect run** at all: orchestrator ``cli`` (nothing orchestrated it) and a fresh local run id.

It also holds the segment an interruptible ``@carbon_aware`` function is running (:func:`current_segment`).
"""

from __future__ import annotations

import contextvars
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from greenflow.ledger import Identity

if TYPE_CHECKING:
    from greenflow.lifecycle import SegmentRun

Level = Literal["task", "flow", "inline", "local"]

# Set by a flow-level @carbon_aware for the tasks of its attempt: how many times greenflow rescheduled
# the flow run (each reschedule raises Prefect's run_count without being an attempt).
_FLOW_DEFERRALS: contextvars.ContextVar[int] = contextvars.ContextVar("greenflow_flow_deferrals", default=0)
_LOCAL_LOGGER = logging.getLogger("greenflow.prefect")
# Set by an interruptible @carbon_aware around each call of its function: the segment that call runs.
_SEGMENT: contextvars.ContextVar[SegmentRun | None] = contextvars.ContextVar("greenflow_segment", default=None)


def current_segment() -> SegmentRun | None:
    """The segment the running interruptible ``@carbon_aware`` function (and the tasks it calls) is in.

    A :class:`~greenflow.lifecycle.SegmentRun`: ``index`` (from 0) of ``of`` planned segments, ``stop_at``
    (the task's clock, a replayed trace's time in a replay) and ``stop_wall`` (real time), the moment to
    checkpoint and return ``False`` by; both ``None`` when the work runs to completion (the last planned
    segment, any past it, or an attempt planned in one piece). ``None`` outside an interruptible
    function's call. See docs/prefect.md (interruptible flows).
    """
    return _SEGMENT.get()


@dataclass(frozen=True)
class PrefectRun:
    """The attempt a carbon-aware call belongs to, and what greenflow needs to know about its run."""

    identity: Identity
    level: Level
    flow_run_id: str | None = None
    task_run_id: str | None = None
    deployment_id: str | None = None
    flow_run_count: int = 0

    @property
    def in_prefect(self) -> bool:
        """True inside a Prefect flow or task run."""
        return self.level != "local"

    @property
    def releasable(self) -> bool:
        """True when waiting can free the infrastructure: a deployment's flow run, at flow level."""
        return self.level == "flow" and self.deployment_id is not None


def current_run(fn: Callable[..., Any], *, deferrals: int | None = None) -> PrefectRun:
    """The run ``fn`` (the function a ``@carbon_aware`` wrapper is wrapping) is being called in.

    ``deferrals`` is how many times greenflow already rescheduled this flow run (flow level only).
    """
    from prefect.context import FlowRunContext, TaskRunContext

    task_ctx = TaskRunContext.get()
    flow_ctx = FlowRunContext.get()
    flow_run = flow_ctx.flow_run if flow_ctx is not None else None
    flow = flow_ctx.flow if flow_ctx is not None else None
    if task_ctx is not None:
        task, task_run = task_ctx.task, task_ctx.task_run
        in_flow = task_run.flow_run_id is not None
        task_id = f"{task.name}-{_short_key(task_run.dynamic_key)}" if in_flow else task.name
        flow_attempt = flow_attempt_number(flow_run.run_count if flow_run else 1, _FLOW_DEFERRALS.get())
        if flow_attempt > 1:
            # A flow retry re-creates its task runs with run_count 1 again: keep them distinct attempts.
            task_id = f"{task_id}@flow-attempt-{flow_attempt}"
        return PrefectRun(
            identity=Identity(
                orchestrator="prefect",
                workflow_id=flow.name if flow is not None and in_flow else task.name,
                run_id=str(task_run.flow_run_id or task_run.id),
                task_id=task_id,
                attempt=max(task_run.run_count, 1),
            ),
            level="task",
            flow_run_id=None if task_run.flow_run_id is None else str(task_run.flow_run_id),
            task_run_id=str(task_run.id),
            deployment_id=_deployment_id(flow_run),
            flow_run_count=flow_run.run_count if flow_run else 0,
        )
    if flow_ctx is not None and flow_run is not None and flow is not None:
        if _is_flow_function(flow, fn):
            return PrefectRun(
                identity=Identity(
                    orchestrator="prefect",
                    workflow_id=flow.name,
                    run_id=str(flow_run.id),
                    task_id=flow.name,
                    attempt=flow_attempt_number(flow_run.run_count, deferrals or 0),
                ),
                level="flow",
                flow_run_id=str(flow_run.id),
                deployment_id=_deployment_id(flow_run),
                flow_run_count=flow_run.run_count,
            )
        return PrefectRun(
            identity=Identity(
                orchestrator="prefect",
                workflow_id=flow.name,
                run_id=str(flow_run.id),
                task_id=f"{_name(fn)}-{uuid.uuid4().hex[:8]}",
            ),
            level="inline",
            flow_run_id=str(flow_run.id),
            deployment_id=_deployment_id(flow_run),
            flow_run_count=flow_run.run_count,
        )
    return PrefectRun(
        identity=Identity(
            orchestrator="cli",
            workflow_id=getattr(fn, "__module__", None) or "local",
            run_id=f"local-{uuid.uuid4()}",
            task_id=_name(fn),
        ),
        level="local",
    )


def flow_attempt_number(run_count: int, deferrals: int) -> int:
    """Prefect's ``run_count`` minus greenflow's reschedules: the attempt the ledger records."""
    return max(run_count - deferrals, 1)


def run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """Prefect's run logger inside a run (the lines show in the UI), else ``greenflow.prefect``."""
    from prefect.context import FlowRunContext, TaskRunContext
    from prefect.logging import get_run_logger

    if TaskRunContext.get() is None and FlowRunContext.get() is None:
        return _LOCAL_LOGGER
    return get_run_logger()


def _is_flow_function(flow: Any, fn: Callable[..., Any]) -> bool:
    """True when ``fn`` is what the flow runs (``@flow`` applied on top of ``@carbon_aware``)."""
    flow_fn = getattr(flow, "fn", None)
    return flow_fn is not None and getattr(flow_fn, "__wrapped__", None) is fn


def _deployment_id(flow_run: Any) -> str | None:
    deployment_id = getattr(flow_run, "deployment_id", None)
    return None if deployment_id is None else str(deployment_id)


def _short_key(dynamic_key: str) -> str:
    """The task run's key in its flow run: a counter ("0", "1") or a UUID, cut to 48 bits (still unique)."""
    return dynamic_key if len(dynamic_key) <= 13 else dynamic_key[:13]


def _name(fn: Callable[..., Any]) -> str:
    return str(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or "function")
