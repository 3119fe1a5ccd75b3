"""``@task.carbon_aware(...)``: the TaskFlow form of :class:`CarbonAwareOperator`.

Registered through ``task-decorators`` in the provider info, so ``from airflow.sdk import task`` and
``@task.carbon_aware(region="GB", expected_duration="2h", max_delay="12h")`` work in any DAG. The
decorated operator can defer like the classic one; on resume it hands the result to TaskFlow's output
handling exactly as ``execute`` would.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from airflow.sdk.bases.decorator import DecoratedOperator, task_decorator_factory

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


def carbon_aware_task(
    python_callable: Callable[..., Any] | None = None,
    multiple_outputs: bool | None = None,
    **kwargs: Any,
) -> Any:
    """Wrap a function into a :class:`CarbonAwareOperator` task; takes the same carbon-aware arguments."""
    return task_decorator_factory(
        python_callable=python_callable,
        multiple_outputs=multiple_outputs,
        decorated_operator_class=CarbonAwareDecoratedOperator,
        **kwargs,
    )
