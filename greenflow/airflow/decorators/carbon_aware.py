"""``@task.carbon_aware(...)``: the TaskFlow form of :class:`CarbonAwareOperator`.

Airflow has no public way to hook a TaskFlow decorator's ``expand``: this module is the one place that
subclasses the private ``_TaskDecorator`` and reads the private ``DagContext``/``TaskGroupContext``
(``tests/airflow/test_airflow_contract.py`` pins both, and that no other module uses a private name).

Registered through ``task-decorators`` in the provider info, so ``from airflow.sdk import task`` and
``@task.carbon_aware(region="GB", expected_duration="2h", max_delay="12h")`` work in any DAG. The
decorated operator can defer like the classic one; on resume it hands the result to TaskFlow's output
handling exactly as ``execute`` would.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attr
from airflow.sdk.bases.decorator import DecoratedOperator, _TaskDecorator
from airflow.sdk.bases.operator import get_merged_defaults
from airflow.sdk.definitions._internal.contextmanager import DagContext, TaskGroupContext

from greenflow.airflow.mapped_validation import check_mapped_arguments
from greenflow.airflow.operators.carbon_aware import CarbonAwareOperator


class CarbonAwareDecoratedOperator(DecoratedOperator, CarbonAwareOperator):
    """The operator behind ``@task.carbon_aware``."""

    template_fields = CarbonAwareOperator.template_fields
    template_fields_renderers = {"templates_dict": "json", "op_args": "py", "op_kwargs": "py"}
    custom_operator_name = "@task.carbon_aware"

    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        op_args: Any = None,
        op_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        upstream = {"python_callable": python_callable, "op_args": op_args, "op_kwargs": op_kwargs}
        super().__init__(
            kwargs_to_upstream=upstream,
            python_callable=python_callable,
            op_args=op_args,
            op_kwargs=op_kwargs,
            **kwargs,
        )

    def execute_complete(self, context: Any, event: Mapping[str, Any]) -> Any:
        """Resume in the green window, then apply TaskFlow's output handling (asset outlets)."""
        return self._handle_output(super().execute_complete(context, event))


class CarbonAwareTaskDecorator(_TaskDecorator[..., Any, CarbonAwareDecoratedOperator]):
    """What ``@task.carbon_aware(...)`` returns: validates the carbon-aware arguments on ``expand()`` too.

    Calling the task builds the operator, whose ``__init__`` validates. ``.expand()``/``.partial()``
    build a mapped operator without ``__init__``, so ``expand``/``expand_kwargs`` run the same checks when
    the DAG is parsed. TaskFlow maps only the function's arguments: every carbon-aware argument (from the
    decorator, ``.override()`` or the DAG's ``default_args``) is fixed and checked in full.
    """

    def expand(self, **map_kwargs: Any) -> Any:
        """Check the carbon-aware arguments, then TaskFlow's ``expand``."""
        self._check()
        return super().expand(**map_kwargs)

    def expand_kwargs(self, kwargs: Any, *, strict: bool = True) -> Any:
        """Check the carbon-aware arguments, then TaskFlow's ``expand_kwargs``."""
        self._check()
        return super().expand_kwargs(kwargs, strict=strict)

    def _check(self) -> None:
        dag = self.kwargs.get("dag") or DagContext.get_current()
        task_group = self.kwargs.get("task_group") or TaskGroupContext.get_current(dag)
        defaults, _ = get_merged_defaults(dag, task_group, None, self.kwargs.get("default_args"))
        check_mapped_arguments(self.operator_class, self.kwargs, frozenset(), defaults)


def carbon_aware_task(
    python_callable: Callable[..., Any] | None = None,
    multiple_outputs: bool | None = None,
    **kwargs: Any,
) -> Any:
    """Wrap a function into a :class:`CarbonAwareOperator` task; takes the same carbon-aware arguments.

    Like Airflow's ``task_decorator_factory``, with :class:`CarbonAwareTaskDecorator` so that mapped
    tasks (``.expand()``) are validated when the DAG is parsed.
    """
    outputs: Any = attr.NOTHING if multiple_outputs is None else multiple_outputs

    def decorate(function: Callable[..., Any]) -> CarbonAwareTaskDecorator:
        return CarbonAwareTaskDecorator(
            function=function,
            multiple_outputs=outputs,
            operator_class=CarbonAwareDecoratedOperator,
            kwargs=kwargs,
            decorator_name="task.carbon_aware",
        )

    if python_callable is None:
        return decorate
    if not callable(python_callable):
        raise TypeError("No positional arguments allowed while using @task.carbon_aware, use named arguments instead")
    return decorate(python_callable)
