"""Mapped greenflow tasks (``partial().expand()``) are validated when the DAG is parsed, like plain ones.

Arguments given to ``partial()`` fail the DAG import with the message ``__init__`` gives; arguments that
are themselves mapped fail only the instance that gets the bad value.
"""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG, TaskGroup, task

from greenflow.airflow.operators.carbon_aware import CarbonAwareOperator
from greenflow.airflow.operators.gate import GreenGateOperator
from greenflow.airflow.sensors.green_window import GreenWindowSensor
from greenflow.errors import InvalidInput
from greenflow.ledger import Ledger

START = datetime(2024, 1, 1, tzinfo=UTC)
GOOD: dict[str, Any] = {"region": "GB", "provider": "ukgrid", "expected_duration": "2h"}
BAD = [
    {"provider": "ukgird"},
    {"region": "Atlantis"},
    {"provider": "trace", "region": "XX"},
    {"deadline": datetime(2030, 1, 1)},  # noqa: DTZ001 - naive on purpose
    {"deadline": "1h"},
    {"expected_duration": "-2h"},
    {"max_delay": "-30m"},
    {"deadline": "12h", "max_delay": "1h"},
    {"estimate": "-5g"},
    {"on_provider_error": "ignore"},
    {"on_budget_exceeded": "retry"},
    {"provider_options": {"token": "abc"}},
    {"pue": 0.8},
    {"max_delay": "12h", "execution_timeout": timedelta(hours=3)},
    {"budget": "  gpu  "},
    {"min_savings": 150},
    {"threshold": -10},
    {
        "provider": "trace",
        "region": "ES",
        "provider_options": {"now": "2022-06-01T00:00Z"},
        "deadline": "2022-06-01T01:00Z",
    },
]


def _error(build: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as error:
        build()
    return error.value


@pytest.mark.parametrize("overrides", BAD, ids=[",".join(o) + f"-{i}" for i, o in enumerate(BAD)])
def test_a_bad_partial_argument_fails_expand_with_the_message_init_gives(overrides: dict[str, Any]) -> None:
    args = {**GOOD, **overrides}
    plain = _error(lambda: CarbonAwareOperator(task_id="plain", python_callable=print, **args))
    with DAG("mapped", schedule=None, start_date=START):
        partial = CarbonAwareOperator.partial(task_id="mapped", python_callable=print, **args)
        mapped = _error(lambda: partial.expand(op_args=[[1], [2]]))
        by_kwargs = _error(lambda: partial.expand_kwargs([{"op_args": [1]}]))
    assert (mapped.message, mapped.fix) == (plain.message, plain.fix)
    assert (by_kwargs.message, by_kwargs.fix) == (plain.message, plain.fix)


def test_checks_that_involve_a_mapped_argument_wait_for_the_instance() -> None:
    with DAG("mapped", schedule=None, start_date=START):
        # A 30-minute deadline is too short for the default 1 h duration, but not for the mapped ones.
        CarbonAwareOperator.partial(task_id="a", python_callable=print, region="GB", deadline="30m").expand(
            expected_duration=["10m", "20m"]
        )
        # Spanish regions are valid for the trace provider, which is mapped here.
        CarbonAwareOperator.partial(task_id="b", python_callable=print, region="ES").expand(provider=["trace"])
        CarbonAwareOperator.partial(task_id="c", python_callable=print, provider="trace").expand(region=["ES", "GB"])
        CarbonAwareOperator.partial(
            task_id="d", python_callable=print, region="GB", execution_timeout=timedelta(hours=3)
        ).expand(max_delay=["30m"])
        # An unmapped duration is still checked at parse time (one not given is learned: nothing to refuse).
        with pytest.raises(InvalidInput, match="shorter than expected_duration=1:00:00"):
            CarbonAwareOperator.partial(
                task_id="e", python_callable=print, region="GB", deadline="30m", expected_duration="1h"
            ).expand(op_args=[[1]])


def test_a_bad_mapped_value_fails_only_its_instance_with_the_same_message() -> None:
    with DAG("mapped", schedule=None, start_date=START):
        mapped = CarbonAwareOperator.partial(task_id="m", python_callable=print, provider="trace").expand(
            region=["ES", "XX"]
        )
    assert mapped.unmap({"region": "ES"}).spec_args["region"] == "ES"
    error = _error(lambda: mapped.unmap({"region": "XX"}))
    plain = _error(lambda: CarbonAwareOperator(task_id="p", python_callable=print, provider="trace", region="XX"))
    assert (error.message, error.fix) == (plain.message, plain.fix)


def test_expand_kwargs_from_an_upstream_task_checks_what_partial_fixes() -> None:
    with DAG("mapped", schedule=None, start_date=START):

        @task
        def configs() -> list[dict[str, Any]]:
            return [{"op_args": [1], "expected_duration": "10m"}]

        partial = CarbonAwareOperator.partial(task_id="a", python_callable=print, region="GB", deadline="30m")
        partial.expand_kwargs(configs())  # the upstream may map expected_duration: only run time can tell
        unchecked = CarbonAwareOperator.partial(task_id="b", python_callable=print, region="Atlantis")
        unchecked.expand_kwargs(configs())  # the upstream may map the provider, which decides valid regions
        # With the provider and its configuration fixed, the region is checked (strict mode: no override).
        provider = {"provider": "ukgrid", "provider_options": {}, "provider_conn_id": None}
        bad = CarbonAwareOperator.partial(task_id="c", python_callable=print, region="Atlantis", **provider)
        with pytest.raises(InvalidInput, match="region 'Atlantis'"):
            bad.expand_kwargs(configs())


def test_the_dags_and_task_groups_default_args_are_checked() -> None:
    with DAG("mapped", schedule=None, start_date=START, default_args={"region": "Atlantis"}):
        with pytest.raises(InvalidInput, match="region 'Atlantis'"):
            CarbonAwareOperator.partial(task_id="a", python_callable=print).expand(op_args=[[1]])
        with TaskGroup("group", default_args={"expected_duration": "-1h"}), pytest.raises(InvalidInput, match="-1h"):
            CarbonAwareOperator.partial(task_id="b", python_callable=print, region="GB").expand(op_args=[[1]])


def test_sensors_and_the_gate_refuse_mapped_arguments_that_do_not_apply() -> None:
    with DAG("mapped", schedule=None, start_date=START):
        with pytest.raises(InvalidInput, match="does not take a budget"):
            GreenWindowSensor.partial(task_id="s", budget="gpu", region="GB").expand(expected_duration=["1h"])
        with pytest.raises(InvalidInput, match="reserves nothing"):
            GreenGateOperator.partial(task_id="g", estimate="5g", **GOOD).expand(rules=[[{"branch": "a"}]])
        with pytest.raises(InvalidInput, match="region 'Atlantis'"):
            GreenWindowSensor.partial(task_id="w", region="Atlantis").expand(expected_duration=["1h"])


def test_a_dag_file_with_a_bad_partial_fails_to_import(tmp_path: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    (tmp_path / "bad_mapped.py").write_text(
        textwrap.dedent(
            """
            from datetime import datetime, timezone
            from airflow.sdk import DAG
            from greenflow.airflow.operators.carbon_aware import CarbonAwareOperator

            with DAG("bad_mapped", schedule=None, start_date=datetime(2024, 1, 1, tzinfo=timezone.utc)):
                CarbonAwareOperator.partial(
                    task_id="shard", python_callable=print, region="GB", expected_duration="-1h"
                ).expand(op_args=[[1], [2]])
            """
        )
    )
    bag = DagBag(str(tmp_path))
    [message] = bag.import_errors.values()
    assert "expected_duration='-1h' is negative" in message
    assert "give a duration of zero or more" in message
    assert "bad_mapped" not in bag.dags


@pytest.mark.xdist_group("airflow-dagtest")
def test_a_mapped_dag_runs_with_one_ledger_entry_per_map_index(dagbag: Any, gf_ledger: Ledger) -> None:
    run = dagbag.get_dag("greenflow_test_mapped").test()
    assert run.state == "success"
    tis = sorted(run.get_task_instances(), key=lambda ti: ti.map_index)
    assert [(ti.map_index, str(ti.state)) for ti in tis] == [(0, "success"), (1, "success"), (2, "success")]
    assert tis[0].xcom_pull(task_ids="shard", map_indexes=[0, 1, 2]) == [0, 10, 20]
    entries = sorted(gf_ledger.entries(), key=lambda e: e.map_index or 0)
    assert [(e.task_id, e.map_index, e.run_id) for e in entries] == [("shard", i, run.run_id) for i in range(3)]
    assert all(e.decision == "ran_now" and e.region == "ES" for e in entries)
    for ti, entry in zip(tis, entries, strict=True):
        assert ti.xcom_pull(task_ids="shard", key="greenflow_entry_id", map_indexes=ti.map_index) == entry.entry_id


@pytest.mark.xdist_group("airflow-dagtest")
def test_a_bad_mapped_value_fails_its_instance_in_a_run(
    dagbag: Any, gf_ledger: Ledger, capfd: pytest.CaptureFixture[str]
) -> None:
    run = dagbag.get_dag("greenflow_test_mapped_bad_instance").test()
    states = {ti.map_index: str(ti.state) for ti in run.get_task_instances()}
    assert states == {0: "success", 1: "failed"}
    out, err = capfd.readouterr()  # dag.test() prints the task log (structlog) to the console
    assert "InvalidInput: expected_duration='-1h' is negative (give a duration of zero or more)" in out + err
    [entry] = gf_ledger.entries()  # the bad instance never started: nothing to record
    assert entry.map_index == 0 and entry.decision == "ran_now"
