"""From an operator's carbon-aware arguments to a validated :class:`~greenflow.spec.CarbonSpec`.

Twice: when the DAG file is parsed (so a bad region, provider, time or duration fails the DAG import with
greenflow's message) and when the task or trigger runs (with templates rendered and the provider
connection's credentials merged in). Credentials only ever come from connections or the environment:
a token written into the DAG would show in the UI's rendered fields and in trigger arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from greenflow.airflow.hooks.intensity import hook_for_connection
from greenflow.airflow.hooks.lookup import get_connection
from greenflow.airflow.resources import provider_for
from greenflow.errors import ConfigError, InvalidInput
from greenflow.intensity.providers.base import IntensityProvider
from greenflow.options import ADAPTER_OPTION_NAMES, OPTION, options_for
from greenflow.spec import DEFAULT_MAX_DELAY, SECRET_OPTIONS, CarbonSpec

SPEC_ARGS: tuple[str, ...] = tuple(
    option.name
    for option in options_for("airflow")
    if option.name not in ADAPTER_OPTION_NAMES and option.name != "provider_options"
)
"""The operators' arguments that go to :class:`CarbonSpec` unchanged: the options table's Airflow rows
(``provider_options`` is merged with the connection's first; ``on_budget_exceeded`` is the adapter's)."""

# A trace's own files: parse time reads none of them (see _declare).
_TRACE_FILES = ("path", "actuals", "column", "actuals_column")


def _is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def check_options(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The DAG's provider options, refusing credentials (they belong in a connection)."""
    given = dict(options or {})
    secrets = sorted(set(given) & SECRET_OPTIONS)
    if secrets:
        raise InvalidInput(
            f"provider_options holds credentials ({', '.join(secrets)})",
            fix="put them in an Airflow connection and pass provider_conn_id=..., or set the provider's "
            "GREENFLOW_* environment variable on workers and triggerers",
        )
    return given


def validate_at_parse(
    spec_args: Mapping[str, Any],
    provider_options: Mapping[str, Any] | None,
    provider_conn_id: str | None,
    *,
    configured_later: bool = False,
) -> CarbonSpec | None:
    """Declare the spec once at parse time to reject bad input; ``None`` when only run time can tell.

    Every option goes through the options table (:meth:`CarbonSpec.declare` at the ``airflow`` entry
    point): the same message as every other entry point, and a ``deadline`` already past is refused.
    Templated provider options are left out (they render at run time). Nothing is read from disk or the
    network: a trace given as files has its region labels checked by name, its files when the task runs.
    A provider whose configuration lives in ``provider_conn_id`` (e.g. the Carbon Aware SDK's URL) cannot
    be built without reading that connection, which parse time must not do: every other check has run by
    then. ``configured_later`` says the same of a mapped task whose provider configuration is itself mapped.
    """
    options = {k: v for k, v in check_options(provider_options).items() if not _is_template(v)}
    try:
        return _declare(spec_args, options)
    except ConfigError:
        if provider_conn_id or configured_later:
            return None
        raise


def _declare(spec_args: Mapping[str, Any], options: Mapping[str, Any]) -> CarbonSpec:
    """:meth:`CarbonSpec.declare` at the ``airflow`` entry point, reading no file.

    The DAG processor parses every DAG file again and again, each time in a fresh process: a trace file
    read here (the whole CSV, to check a region's column) would be read at every parse. So a trace given
    as files is declared without them and without its regions (whose check would load them); the region
    labels are checked by the table's rule and the file options' templates by their syntax, and the task
    reads the files when it plans. The spec returned then has no regions: only its timing is used here.
    """
    if spec_args.get("provider") == "trace" and any(options.get(name) is not None for name in ("path", "actuals")):
        from greenflow.intensity.providers.trace import region_template

        for name in ("region", "regions"):
            if name in spec_args:
                OPTION[name].parse(spec_args[name])
        for name in _TRACE_FILES:
            region_template(options.get(name), name)
        args = {k: v for k, v in spec_args.items() if k not in ("region", "regions")}
        kept = {k: v for k, v in options.items() if k not in _TRACE_FILES}
        return CarbonSpec.declare({**args, "provider_options": kept}, "airflow")
    return CarbonSpec.declare({**spec_args, "provider_options": options}, "airflow")


def check_execution_timeout(spec: CarbonSpec | None, execution_timeout: timedelta | None) -> None:
    """Refuse an ``execution_timeout`` that the allowed wait alone would exceed.

    Airflow counts deferred time in ``execution_timeout``, so a task allowed to wait 12 hours with a
    2-hour timeout would be killed while it waits. greenflow enforces the deadline itself.
    """
    if spec is None or execution_timeout is None:
        return
    if isinstance(spec.deadline, datetime):
        return  # an absolute deadline: how long the wait is depends on when the run starts
    if isinstance(spec.deadline, timedelta):
        needed = spec.deadline
    else:
        needed = (spec.max_delay if spec.max_delay is not None else DEFAULT_MAX_DELAY) + spec.expected_duration
    if execution_timeout < needed:
        raise InvalidInput(
            f"execution_timeout={execution_timeout} is shorter than the wait greenflow may take plus the run "
            f"({needed}); Airflow counts deferred time in execution_timeout",
            fix="drop execution_timeout (greenflow starts the task by its latest start) or raise it to "
            f"{needed} or more",
        )


def _merge(spec_args: Mapping[str, Any], dag_options: Mapping[str, Any], conn_options: Mapping[str, Any]) -> CarbonSpec:
    # A rebuild, not a declaration: a deadline that has passed since the DAG was parsed makes the attempt
    # run at once (the lifecycle records why), it does not fail the task.
    options = {**conn_options, **check_options(dag_options)}
    return CarbonSpec.from_kwargs({**spec_args, "provider_options": options})


def runtime_spec(
    spec_args: Mapping[str, Any], provider_options: Mapping[str, Any] | None, provider_conn_id: str | None
) -> tuple[CarbonSpec, IntensityProvider]:
    """The spec with rendered options and the connection's credentials, and the process's provider client."""
    conn_options: dict[str, Any] = {}
    provider = str(spec_args.get("provider") or OPTION["provider"].default_for("airflow"))
    if provider_conn_id:
        conn = get_connection(provider_conn_id)
        conn_options = hook_for_connection(conn, provider).options_from(conn)
    spec = _merge(spec_args, provider_options or {}, conn_options)
    return spec, provider_for(spec.provider, spec.provider_options, source=provider_conn_id)


def spec_with_connection(
    spec_kwargs: Mapping[str, Any], conn_options: Mapping[str, Any], provider_conn_id: str | None
) -> tuple[CarbonSpec, IntensityProvider]:
    """Rebuild a spec from :meth:`CarbonSpec.to_kwargs` primitives plus connection options (in a trigger)."""
    args = {k: v for k, v in spec_kwargs.items() if k != "provider_options"}
    spec = _merge(args, spec_kwargs.get("provider_options") or {}, conn_options)
    return spec, provider_for(spec.provider, spec.provider_options, source=provider_conn_id)


def trigger_spec_kwargs(spec: CarbonSpec, dag_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Primitive spec arguments for a trigger: only the DAG's own (rendered) provider options travel.

    Connection options, credentials included, are read again by the trigger: nothing secret is ever a
    trigger argument (those are stored in the metadata database and shown in the UI).
    """
    return {**spec.to_kwargs(), "provider_options": check_options(dag_options)}
