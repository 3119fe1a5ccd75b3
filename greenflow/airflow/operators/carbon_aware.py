"""CarbonAwareOperator: run a Python callable in its green window, metered, with a ledger entry.

At start the task plans (started by a region route, it takes the route's decision instead); if the plan
says wait it reserves its budget and **defers** (no worker slot held) to
:class:`~greenflow.airflow.triggers.window.CarbonWindowTrigger`, resumes in the green window, runs the
callable under the meter, records the attempt and settles the reservation. The callable's result is the
task's return value; the ledger entry id is pushed to XCom as ``greenflow_entry_id``. A callable that raises
still has its energy recorded, as ``failed``.

With ``interruptible=True`` the work runs in green **segments** (docs/interruptible.md): the callable is
called once per segment, with the :class:`~greenflow.lifecycle.SegmentRun` as keyword ``segment`` if its
signature takes one (``index``, ``of``, ``stop_at``, ``stop_wall``: checkpoint and return by then), and
returns whether the work is done. Not done, the task defers until the next segment (nothing held); the
task's return value is ``True`` once the work is done. Each segment leaves a linked ledger entry.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from airflow.providers.standard.operators.python import PythonOperator

from greenflow.airflow.carbon_aware_base import CarbonAwareBaseOperator
from greenflow.errors import InvalidInput
from greenflow.lifecycle import Decision, Lifecycle, SegmentRun


class CarbonAwareOperator(CarbonAwareBaseOperator, PythonOperator):
    """A PythonOperator that starts in the greenest window before its deadline and meters its energy.

    Takes PythonOperator's arguments (``python_callable``, ``op_args``, ``op_kwargs``, ``templates_dict``)
    and the carbon-aware ones of :class:`~greenflow.airflow.carbon_aware_base.CarbonAwareBaseOperator`.
    Async callables are not supported (the meter wraps a synchronous call).

    Dynamic task mapping works as for PythonOperator (``CarbonAwareOperator.partial(task_id=..., region=...)
    .expand(op_args=[...])``), one ledger entry per map index. The arguments given to ``partial()`` are
    validated when the DAG is parsed; arguments that are themselves mapped are checked per instance (a bad
    value fails that instance with the same message).

    A task that a :class:`~greenflow.airflow.operators.gate.GreenGateOperator` routes to (its
    ``regions={region: task_id}``) runs at once when the route starts it: the route already chose the
    region and waited for the start. Its entry records the route (``extra["route"]``, the route's request
    time and start) and the route's region must be the task's ``region`` (see :mod:`greenflow.airflow.routed`).
    """

    template_fields = (*PythonOperator.template_fields, "provider_options")
    custom_operator_name = "CarbonAwareOperator"
    follows_routes = True

    def __init__(self, *, python_callable: Callable[..., Any], **kwargs: Any) -> None:
        from airflow.sdk.bases.decorator import is_async_callable

        if is_async_callable(python_callable):  # type: ignore[no-untyped-call]
            raise InvalidInput(
                f"python_callable {getattr(python_callable, '__name__', python_callable)!r} is async",
                fix="give a synchronous function (call asyncio.run inside it if needed)",
            )
        super().__init__(python_callable=python_callable, **kwargs)
        self._greenflow_run: tuple[Any, Lifecycle, Decision] | None = None

    def execute(self, context: Any) -> Any:
        """Plan and reserve, then defer to the green window or run at once."""
        lifecycle = self.carbon_lifecycle(context)
        return self._run(context, lifecycle, self.start(context, lifecycle))

    def execute_complete(self, context: Any, event: Mapping[str, Any]) -> Any:
        """Resume in the green window (a fresh operator instance: all state comes from the event)."""
        lifecycle = self.carbon_lifecycle(context)
        return self._run(context, lifecycle, self.resume(context, lifecycle, event))

    def _run(self, context: Any, lifecycle: Lifecycle, decision: Decision) -> Any:
        self._greenflow_run = (context, lifecycle, decision)
        # PythonOperator.execute resolves op_kwargs from the context, then calls execute_callable below.
        return PythonOperator.execute(self, context)

    def execute_callable(self) -> Any:
        """The user's callable, metered and recorded."""
        if self._greenflow_run is None:  # pragma: no cover - execute always sets it first
            raise RuntimeError("execute_callable called outside CarbonAwareOperator.execute")
        context, lifecycle, decision = self._greenflow_run
        if lifecycle.segment(decision) is None:
            return self.run_metered(context, lifecycle, decision, super().execute_callable)
        takes_segment = "segment" in inspect.signature(self.python_callable).parameters
        given = dict(self.op_kwargs)

        def body(segment: SegmentRun, _notes: dict[str, Any]) -> bool:
            self.op_kwargs = {**given, "segment": segment} if takes_segment else given
            return bool(super(CarbonAwareOperator, self).execute_callable())

        self.run_segments(context, lifecycle, decision, body)
        return True
