"""The Airflow operators' explicit carbon parameters stay the core's options, with the core's defaults.

They are not ``**options: Unpack[CarbonOptions]`` (Airflow fills ``default_args`` only into parameters
named in ``__init__``), so this is what keeps the two lists from drifting apart.
"""

from __future__ import annotations

import inspect
from datetime import UTC, datetime
from typing import Any

import pytest
from airflow.sdk import DAG

from greenflow.airflow.carbon_aware_base import CarbonAwareBaseOperator
from greenflow.airflow.operators.carbon_aware import CarbonAwareOperator
from greenflow.options import CARBON_DEFAULTS, CARBON_OPTION_NAMES

_PARAMETERS = inspect.signature(CarbonAwareBaseOperator.__init__).parameters


@pytest.mark.parametrize("option", sorted(CARBON_OPTION_NAMES))
def test_every_carbon_option_is_a_parameter_with_the_cores_default(option: str) -> None:
    assert option in _PARAMETERS, f"CarbonAwareBaseOperator.__init__ lacks the carbon option {option!r}"
    default = _PARAMETERS[option].default
    assert default == CARBON_DEFAULTS[option], (
        f"{option}: the operator's default {default!r} differs from the core's {CARBON_DEFAULTS[option]!r}"
    )


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
