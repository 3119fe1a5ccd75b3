"""The six entry points behave as one product: the same bad value gets the same refusal, the same default.

Entry points: the Airflow operator, ``@task.carbon_aware``, Prefect's ``@carbon_aware``, ``schedule_green``,
``greenflow run`` and ``greenflow plan``. Each rule of the options table (``greenflow/options.py``) is tried
on every entry point that takes the option; the message must be the table's, word for word. The two
commands run as real processes (as users run them): exit code 2 and the message on stderr, no traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from greenflow.errors import InvalidInput
from greenflow.options import OPTION, defaults_for

ENTRY_POINTS = ("airflow", "airflow_decorator", "prefect", "schedule_green", "run", "plan")
# The table's name for each entry point (the decorator builds the operator: Airflow's options).
TABLE_NAME = {"airflow_decorator": "airflow"}
# A valid declaration every case starts from; the bad option is laid over it. A replayed trace needs no
# network and no credentials, so the only refusal left is the one under test.
BASE: dict[str, Any] = {
    "region": "ES",
    "provider": "trace",
    "provider_options": {"now": "2022-06-01T00:00Z"},
    "expected_duration": "2h",
}

# option, bad value, the table's message (a part of it that names the value).
RULES: list[tuple[str, Any, str]] = [
    ("budget", "", "budget='' is empty or has surrounding spaces"),
    ("budget", "  gpu-monthly  ", "budget='  gpu-monthly  ' is empty or has surrounding spaces"),
    ("budget", "b" * 121, "is 121 characters long, over the ledger's 120"),
    ("min_savings", 150, "min_savings=150 is out of range"),
    ("threshold", -10, "threshold=-10 is out of range"),
    ("deadline", "2022-05-31T00:00Z", "leaves no room for expected_duration"),
    ("expected_duration", "0s", "expected_duration='0s' is not positive"),
    ("on_provider_error", "ignore", "on_provider_error='ignore' is not one of run, wait, fail"),
    ("provider", "nope", "provider='nope' is unknown"),
]


def _takes(entry_point: str, option: str) -> bool:
    table = TABLE_NAME.get(entry_point, entry_point)
    return table in OPTION[option].entry_points


def _cases() -> list[Any]:
    return [
        pytest.param(entry_point, option, value, message, id=f"{entry_point}-{option}-{str(value)[:12]}")
        for option, value, message in RULES
        for entry_point in ENTRY_POINTS
        if _takes(entry_point, option)
    ]


# -- how each entry point is given options ---------------------------------------------------------------
def _airflow(options: Mapping[str, Any]) -> None:
    from greenflow.airflow.operators.carbon_aware import CarbonAwareOperator

    CarbonAwareOperator(task_id="train", python_callable=print, **options)


def _airflow_decorator(options: Mapping[str, Any]) -> None:
    from datetime import UTC, datetime

    from airflow.sdk import DAG, task

    @task.carbon_aware(**options)
    def train() -> None:
        return None

    with DAG("parity", schedule=None, start_date=datetime(2022, 6, 1, tzinfo=UTC)):
        train()


def _prefect(options: Mapping[str, Any]) -> None:
    from greenflow.prefect.decorators import carbon_aware

    carbon_aware(**options)(lambda: None)


def _schedule_green(options: Mapping[str, Any]) -> None:
    from greenflow.prefect.deferral import schedule_green

    # Options are checked before anything is asked of Prefect: no server is needed to be refused.
    schedule_green("train/nightly", **options)


PYTHON_ENTRY_POINTS: dict[str, Callable[[Mapping[str, Any]], None]] = {
    "airflow": _airflow,
    "airflow_decorator": _airflow_decorator,
    "prefect": _prefect,
    "schedule_green": _schedule_green,
}


def _flags(options: Mapping[str, Any]) -> list[str]:
    """The options as the commands' flags, from the table's spelling."""
    flags: list[str] = []
    for name, value in options.items():
        option = OPTION[name]
        assert option.flag is not None, name
        if name == "provider_options":
            flags += [item for key, v in value.items() for item in (option.flag, f"{key}={v}")]
        elif isinstance(value, bool):
            flags += [option.flag] if value else []
        elif isinstance(value, (list, tuple)):
            flags += [item for v in value for item in (option.flag, str(v))]
        else:
            flags += [option.flag, str(value)]
    return flags


def _command(entry_point: str, options: Mapping[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GREENFLOW_LEDGER_URL": f"sqlite:///{tmp_path / 'ledger.db'}"}
    tail = ["--", sys.executable, "-c", "pass"] if entry_point == "run" else []
    return subprocess.run(
        [sys.executable, "-m", "greenflow.cli", entry_point, *_flags(options), *tail],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(("entry_point", "option", "value", "message"), _cases())
def test_the_same_bad_value_gets_the_same_refusal_everywhere(
    entry_point: str, option: str, value: Any, message: str, tmp_path: Path
) -> None:
    options = {**BASE, option: value}
    if entry_point in PYTHON_ENTRY_POINTS:
        with pytest.raises(InvalidInput) as refused:
            PYTHON_ENTRY_POINTS[entry_point](options)
        assert message in refused.value.message
        return
    done = _command(entry_point, options, tmp_path)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


# -- one default per option --------------------------------------------------------------------------------
def test_the_airflow_operators_defaults_are_the_tables() -> None:
    import inspect

    from greenflow.airflow.carbon_aware_base import CarbonAwareBaseOperator

    # The operators (CarbonAwareOperator, the Bash operator, the decorator's) take these through their base.
    parameters = inspect.signature(CarbonAwareBaseOperator.__init__).parameters
    for name, default in defaults_for("airflow").items():
        if "airflow" in OPTION[name].entry_points:
            assert name in parameters, f"CarbonAwareOperator does not take {name}"
            assert parameters[name].default == default, name
    assert parameters["on_budget_exceeded"].default == OPTION["on_budget_exceeded"].default


def test_the_prefect_decorators_spec_is_the_tables_defaults() -> None:
    from greenflow.prefect.decorators import carbon_aware, carbon_config
    from greenflow.spec import CarbonSpec

    config = carbon_config(carbon_aware(**BASE)(lambda: None))
    assert config is not None
    assert config.spec == CarbonSpec.declare(BASE, "prefect")
    assert config.on_budget_exceeded == OPTION["on_budget_exceeded"].default


def test_greenflow_run_records_the_tables_defaults(tmp_path: Path) -> None:
    from greenflow.ledger import Ledger

    done = _command("run", BASE, tmp_path)
    assert done.returncode == 0, done.stderr
    [entry] = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}").entries()
    policy, defaults = entry.policy, defaults_for("run")
    assert policy["on_provider_error"] == defaults["on_provider_error"] == defaults_for("airflow")["on_provider_error"]
    assert policy["min_savings_pct"] == defaults["min_savings"]
    assert policy["max_staleness_s"] == defaults["max_staleness"].total_seconds()
    assert policy["max_delay_s"] == defaults["max_delay"].total_seconds() == 0  # the documented exception
    assert entry.decision == "ran_now"


def test_greenflow_plan_starts_at_once_unless_given_a_delay(tmp_path: Path) -> None:
    import json

    now = _command("plan", {**BASE, "expected_duration": "2h"}, tmp_path)
    assert now.returncode == 0, now.stderr
    waited = subprocess.run(
        [sys.executable, "-m", "greenflow.cli", "plan", *_flags(BASE), "--max-delay", "14h", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert waited.returncode == 0, waited.stderr
    assert json.loads(waited.stdout)["deferred_seconds"] > timedelta(hours=1).total_seconds()
