"""Parse-time validation of mapped greenflow tasks: ``Operator.partial(...).expand(...)``.

Airflow builds a ``MappedOperator`` from ``partial()`` and ``expand()`` without calling the operator's
``__init__``, so greenflow's checks would otherwise first run when a mapped instance starts. The hooks
here run the same checks, with the same messages, when ``expand()``/``expand_kwargs()`` is called, that
is when the DAG file is parsed:

* arguments given to ``partial()`` (or to ``@task.carbon_aware(...)``) and the DAG's ``default_args``
  are checked in full;
* arguments that are themselves mapped get their values only at run time, so they are checked per
  instance: each mapped instance builds the operator, whose ``__init__`` fails that instance with the
  same message. Checks that compare a fixed argument with a mapped one (e.g. ``deadline`` against a
  mapped ``expected_duration``, or region names against a mapped ``provider``) wait for the instance too.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import timedelta
from typing import Any, Protocol, cast

from airflow.sdk.bases.operator import get_merged_defaults
from airflow.sdk.bases.operator import partial as sdk_partial
from airflow.sdk.definitions.mappedoperator import MappedOperator, OperatorPartial

from greenflow.airflow.settings import on_budget_exceeded as budget_refusal_setting
from greenflow.airflow.spec_params import SPEC_ARGS, check_execution_timeout, validate_at_parse
from greenflow.options import options_for


class CheckedOperatorClass(Protocol):
    """What the checks need of a greenflow operator class (``CarbonAwareBaseOperator`` and its subclasses).

    A protocol, not the class itself: the base operator builds its partials here, so importing it back
    would make the two modules a cycle.
    """

    # Members as the class object shows them: a class attribute and a classmethod, already bound.
    @property
    def reserves_budget(self) -> bool:
        """Whether the operator reserves budget (a sensor or a gate does not)."""

    def refuse_inapplicable(self, *, budget: Any, estimate: Any, on_budget_exceeded: Any) -> None:
        """Refuse budget arguments the operator cannot use."""


CARBON_ARGS: frozenset[str] = frozenset(
    {*(option.name for option in options_for("airflow")), "provider_conn_id", "ledger_conn_id"}
)
"""Every carbon-aware argument of ``CarbonAwareBaseOperator.__init__``: the options table's Airflow rows
and the two connection ids."""
# Which provider serves a region (and how it is configured) decides whether a region name is valid.
_PROVIDER_ARGS = frozenset({"provider", "provider_options", "provider_conn_id"})
# Arguments the execution_timeout check adds up.
_TIMING_ARGS = frozenset({"expected_duration", "deadline", "max_delay", "execution_timeout"})
# The smallest positive duration: a fixed deadline is only refused if every mapped duration would be.
_SHORTEST = timedelta(microseconds=1)


def check_mapped_arguments(
    operator_class: CheckedOperatorClass,
    given: Mapping[str, Any],
    mapped: Collection[str] | None,
    defaults: Mapping[str, Any] | None = None,
) -> None:
    """Check the carbon-aware arguments a mapped task fixes at parse time; raise ``InvalidInput``.

    :param given: the arguments given to ``partial()`` (or to the decorator), BaseOperator's included.
    :param mapped: names whose values come per mapped instance; ``None`` when unknown at parse time
        (``expand_kwargs`` of an upstream task's output): every argument not given is then treated as mapped.
    :param defaults: the DAG's and task group's ``default_args`` (they apply to each instance).
    """
    known = {**{k: v for k, v in (defaults or {}).items() if k in CARBON_ARGS}, **given}
    varying = set(CARBON_ARGS | {"execution_timeout"}) - set(known) if mapped is None else set(mapped)
    fixed = {k: v for k, v in known.items() if k not in varying}

    operator_class.refuse_inapplicable(
        budget=fixed.get("budget"), estimate=fixed.get("estimate"), on_budget_exceeded=fixed.get("on_budget_exceeded")
    )
    if operator_class.reserves_budget and "on_budget_exceeded" not in varying:
        budget_refusal_setting(fixed.get("on_budget_exceeded"))

    spec_args = {k: fixed[k] for k in SPEC_ARGS if k in fixed}
    options = fixed.get("provider_options")
    if varying & _PROVIDER_ARGS:
        # Region names are only meaningful to the provider that will serve them: check them per instance.
        spec_args.pop("region", None)
        spec_args.pop("regions", None)
    if "provider" in varying:
        spec_args.pop("provider", None)
        options = None
    if "expected_duration" in varying:
        spec_args["expected_duration"] = _SHORTEST
    spec = validate_at_parse(
        spec_args,
        options,
        fixed.get("provider_conn_id"),
        configured_later=bool(varying & _PROVIDER_ARGS),
    )
    if not varying & _TIMING_ARGS:
        check_execution_timeout(spec, fixed.get("execution_timeout"))


def mapped_names(kwargs: object) -> frozenset[str] | None:
    """The argument names ``expand_kwargs(kwargs)`` maps; ``None`` when only run time knows."""
    if isinstance(kwargs, Sequence) and all(isinstance(item, Mapping) for item in kwargs):
        return frozenset(name for item in kwargs for name in item)
    return None  # an upstream task's output, or a list holding one


class CarbonAwareOperatorPartial(OperatorPartial):
    """``Operator.partial(...)`` of a greenflow operator: validates when ``expand``/``expand_kwargs`` is called.

    Hooks the public ``expand``/``expand_kwargs``. The one private name it touches is
    ``_expand_called`` (a refused expand must not also warn "never mapped"); the contract test
    ``tests/airflow/test_airflow_contract.py`` pins it.
    """

    def expand(self, **mapped_kwargs: Any) -> MappedOperator:
        """Check the fixed carbon-aware arguments, then Airflow's ``expand``."""
        self._check(frozenset(mapped_kwargs))
        mapped: MappedOperator = super().expand(**mapped_kwargs)
        return mapped

    def expand_kwargs(self, kwargs: Any, *, strict: bool = True) -> MappedOperator:
        """Check the fixed carbon-aware arguments, then Airflow's ``expand_kwargs``."""
        self._check(mapped_names(kwargs))
        mapped: MappedOperator = super().expand_kwargs(kwargs, strict=strict)
        return mapped

    def _check(self, mapped: frozenset[str] | None) -> None:
        self._expand_called = True  # a refused expand is still not a task "never mapped"
        defaults, _ = get_merged_defaults(self.kwargs.get("dag"), self.kwargs.get("task_group"), None, None)
        operator_class = cast(CheckedOperatorClass, self.operator_class)  # set by carbon_aware_partial
        check_mapped_arguments(operator_class, self.kwargs, mapped, defaults)


def carbon_aware_partial(operator_class: type[Any], **kwargs: Any) -> CarbonAwareOperatorPartial:
    """Airflow's ``partial()`` for a greenflow operator, returning the validating partial."""
    plain = sdk_partial(operator_class, **kwargs)
    plain._expand_called = True  # replaced below: it must not warn that it was never mapped
    return CarbonAwareOperatorPartial(operator_class=plain.operator_class, kwargs=plain.kwargs, params=plain.params)
