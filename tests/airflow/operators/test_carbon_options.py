"""The Airflow operators' explicit carbon parameters are the options table's Airflow rows, with its defaults.

They are not ``**options: Unpack[CarbonOptions]`` (Airflow fills ``default_args`` only into parameters
named in ``__init__``), so this is what keeps the signature and the table from drifting apart.
"""

from __future__ import annotations

import inspect
from datetime import UTC, datetime
from typing import Any

import pytest
from airflow.sdk import DAG

from greenflow.airflow.carbon_aware_base import CarbonAwareBaseOperator
from greenflow.airflow.mapped_validation import CARBON_ARGS
from greenflow.airflow.operators.carbon_aware import CarbonAwareOperator
from greenflow.options import OPTION, options_for

_PARAMETERS = inspect.signature(CarbonAwareBaseOperator.__init__).parameters
_AIRFLOW_ONLY = {"provider_conn_id", "ledger_conn_id"}  # connections: Airflow's own, not carbon options


@pytest.mark.parametrize("option", [option.name for option in options_for("airflow")])
def test_every_airflow_option_is_a_parameter_with_the_tables_default(option: str) -> None:
    assert option in _PARAMETERS, f"CarbonAwareBaseOperator.__init__ lacks the carbon option {option!r}"
    default, table = _PARAMETERS[option].default, OPTION[option].default_for("airflow")
    assert default == table, f"{option}: the operator's default {default!r} differs from the table's {table!r}"


def test_the_operator_takes_no_carbon_parameter_the_table_does_not_give_airflow() -> None:
    named = {name for name, p in _PARAMETERS.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert named - _AIRFLOW_ONLY == {option.name for option in options_for("airflow")}
    assert named == CARBON_ARGS  # what mapped tasks check at parse time


def test_each_argument_is_documented_with_the_tables_help() -> None:
    doc = CarbonAwareOperator.__mro__[1].__doc__ or ""
    for option in options_for("airflow"):
        assert f":param {option.name}: {option.help}" in doc
    assert ":param provider_conn_id:" in doc and ":param ledger_conn_id:" in doc


def test_the_interruptible_options_are_stored_and_validated_at_parse_time() -> None:
    from greenflow.errors import InvalidInput

    task = CarbonAwareOperator(
        task_id="t", python_callable=_noop, region="GB", interruptible=True, min_segment="45m", grace="5m"
    )
    assert task.spec_args["interruptible"] is True and task.spec_args["min_segment"] == "45m"
    assert task.spec_args["resume_overhead"] == OPTION["resume_overhead"].default
    with pytest.raises(InvalidInput, match="min_segment='0s' is not positive"):
        CarbonAwareOperator(task_id="t", python_callable=_noop, region="GB", min_segment="0s")


def _noop() -> None:
    return None


def test_the_dags_default_args_reach_the_carbon_options() -> None:
    # The reason the parameters are explicit: a DAG-level region and provider apply to each task.
    defaults: dict[str, Any] = {"region": "ES", "provider": "trace", "expected_duration": "2h"}
    with DAG("defaults", schedule=None, start_date=datetime(2024, 1, 1, tzinfo=UTC), default_args=defaults):
        task = CarbonAwareOperator(task_id="train", python_callable=_noop)
    assert task.spec_args["region"] == "ES" and task.spec_args["provider"] == "trace"
    assert task.spec_args["expected_duration"] == "2h"


def test_forecast_correction_reaches_the_spec_and_the_triggers_arguments() -> None:
    from greenflow.airflow.spec_params import trigger_spec_kwargs, validate_at_parse
    from greenflow.spec import CarbonSpec

    defaults: dict[str, Any] = {"region": "GB", "provider": "trace", "forecast_correction": True}
    with DAG("correct", schedule=None, start_date=datetime(2024, 1, 1, tzinfo=UTC), default_args=defaults):
        task = CarbonAwareOperator(task_id="train", python_callable=_noop)
    spec = validate_at_parse(task.spec_args, task.provider_options, None)
    assert spec is not None and spec.forecast_correction == "bias+carry"
    # The trigger re-plans from these primitives: it must correct as the task did.
    kwargs = trigger_spec_kwargs(spec, task.provider_options)
    assert CarbonSpec.from_kwargs(kwargs).forecast_correction == "bias+carry"


def test_a_bad_forecast_correction_fails_the_dag_import() -> None:
    from greenflow.errors import InvalidInput

    with pytest.raises(InvalidInput, match="forecast_correction='sometimes' is not on or off"):
        CarbonAwareOperator(task_id="train", python_callable=_noop, region="GB", forecast_correction="sometimes")
