"""Bad carbon-aware arguments fail when the DAG file is parsed, with a message naming the value and the fix."""

from __future__ import annotations

import textwrap
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from greenflow.airflow.operators.carbon_aware import CarbonAwareOperator
from greenflow.airflow.operators.gate import GreenGateOperator
from greenflow.airflow.sensors.budget import CarbonBudgetSensor
from greenflow.airflow.sensors.green_window import GreenWindowSensor
from greenflow.errors import InvalidInput
from greenflow.ledger import Ledger
from greenflow.spec import CarbonSpec

GOOD: dict[str, Any] = {"region": "GB", "provider": "ukgrid", "expected_duration": "2h"}


def _operator(**overrides: Any) -> CarbonAwareOperator:
    return CarbonAwareOperator(task_id="train", python_callable=print, **{**GOOD, **overrides})


@pytest.mark.parametrize(
    ("overrides", "names", "fix"),
    [
        ({"provider": "ukgird"}, "provider='ukgird' is unknown", "ukgrid"),
        ({"region": "Atlantis"}, "region 'Atlantis'", "national"),
        ({"provider": "trace", "region": "XX"}, "no shipped trace for region 'XX'", "ES"),
        ({"deadline": datetime(2030, 1, 1)}, "naive datetime", "time zone"),  # noqa: DTZ001 - naive on purpose
        ({"deadline": "1h"}, "shorter than expected_duration", "deadline"),
        ({"expected_duration": "-2h"}, "expected_duration='-2h' is negative", "zero or more"),
        ({"max_delay": "-30m"}, "max_delay='-30m' is negative", "zero or more"),
        ({"deadline": "12h", "max_delay": "1h"}, "both deadline and max_delay", "one"),
        ({"estimate": "-5g"}, "negative", "20g"),
        ({"on_provider_error": "ignore"}, "on_provider_error='ignore'", "wait"),
        ({"on_budget_exceeded": "retry"}, "on_budget_exceeded='retry'", "skip"),
        ({"provider_options": {"token": "abc"}}, "provider_options holds credentials (token)", "connection"),
        ({"pue": 0.8}, "pue=0.8 is out of range", "1.0"),
    ],
)
def test_bad_arguments_fail_at_construction(overrides: dict[str, Any], names: str, fix: str) -> None:
    with pytest.raises(InvalidInput) as error:
        _operator(**overrides)
    assert names in error.value.message
    assert fix in (error.value.fix or "")


REPLAY = {"provider": "trace", "region": "ES", "provider_options": {"now": "2022-06-01T00:00Z"}}


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        # Issue 15: once accepted by the operators (refused by the CLI, or failing at run time).
        ({"budget": ""}, "budget='' is empty or has surrounding spaces"),
        ({"budget": "b" * 121}, "is 121 characters long, over the ledger's 120"),
        ({"budget": "  gpu-monthly  "}, "budget='  gpu-monthly  ' is empty or has surrounding spaces"),
        ({"min_savings": 150}, "min_savings=150 is out of range"),
        ({"threshold": -10}, "threshold=-10 is out of range"),
        ({**REPLAY, "deadline": "2022-06-01T00:30Z"}, "deadline=2022-06-01T00:30:00+00:00 leaves no room"),
        ({"max_staleness": "-1h"}, "max_staleness='-1h' is negative"),
    ],
)
def test_the_dag_import_fails_with_the_options_tables_message(overrides: dict[str, Any], names: str) -> None:
    with pytest.raises(InvalidInput) as error:
        _operator(**overrides)
    assert names in error.value.message and error.value.fix
    # Word for word what every entry point says: the options table's refusal.
    with pytest.raises(InvalidInput) as declared:
        CarbonSpec.declare({**GOOD, **overrides}, "airflow")
    assert (error.value.message, error.value.fix) == (declared.value.message, declared.value.fix)


def test_a_deadline_past_in_a_replays_time_fails_the_import_but_not_a_later_run(
    gf_ledger: Ledger, make_context: Any
) -> None:
    replay = {"now": "2022-06-01T00:00Z"}
    with pytest.raises(InvalidInput, match="leaves no room for expected_duration"):
        _operator(provider="trace", region="ES", provider_options=replay, deadline="2022-06-01T01:00Z")
    # Declared in time; by the time it runs (the replay's clock has moved on) the deadline has passed: the
    # attempt runs at once and says why, rather than failing.
    task = _operator(provider="trace", region="ES", provider_options=replay, deadline="2022-06-01T06:00Z")
    task.python_callable = lambda: "ran"
    task.provider_options = {"now": "2022-06-01T08:00Z"}  # as a templated option renders at run time
    assert task.execute(make_context(task_id="train")) == "ran"
    [entry] = gf_ledger.entries()
    assert entry.decision == "ran_now" and "has passed" in entry.extra["decision_reason"]


def test_an_execution_timeout_shorter_than_the_allowed_wait_is_refused() -> None:
    with pytest.raises(InvalidInput) as error:
        _operator(max_delay="12h", execution_timeout=timedelta(hours=3))
    assert "Airflow counts deferred time" in error.value.message
    assert "14:00:00" in (error.value.fix or "")
    _operator(max_delay="1h", execution_timeout=timedelta(hours=3))  # 1 h wait + 2 h run fits


def test_async_callables_are_refused() -> None:
    async def infer() -> None:
        return None

    with pytest.raises(InvalidInput, match="is async"):
        CarbonAwareOperator(task_id="infer", python_callable=infer, **GOOD)


def test_templated_provider_options_are_checked_at_run_time_only() -> None:
    op = _operator(
        provider="trace", region="ES", provider_options={"now": "2022-06-01T00:00Z", "replay_started_at": "{{ ds }}"}
    )
    assert op.provider_options["replay_started_at"] == "{{ ds }}"
    assert "provider_options" in op.template_fields


def test_a_provider_configured_by_a_connection_is_checked_when_it_runs() -> None:
    # The Carbon Aware SDK's URL lives in the connection: parse time cannot build the provider, the rest is checked.
    CarbonAwareOperator(
        task_id="t", python_callable=print, region="westeurope", provider="carbon-aware-sdk", provider_conn_id="sdk"
    )
    with pytest.raises(InvalidInput, match="expected_duration"):
        CarbonAwareOperator(
            task_id="t",
            python_callable=print,
            provider="carbon-aware-sdk",
            provider_conn_id="sdk",
            expected_duration="-1h",
        )


def test_sensors_and_the_gate_refuse_arguments_that_do_not_apply() -> None:
    with pytest.raises(InvalidInput, match="does not take a budget"):
        GreenWindowSensor(task_id="s", budget="gpu", **GOOD)
    with pytest.raises(InvalidInput, match="reserves nothing"):
        GreenGateOperator(task_id="g", rules=[{"branch": "a"}], estimate="5g", **GOOD)
    with pytest.raises(InvalidInput, match="on_exhausted='later'"):
        CarbonBudgetSensor(task_id="b", budget="gpu", on_exhausted="later")
    with pytest.raises(InvalidInput, match="min_remaining"):
        CarbonBudgetSensor(task_id="b", budget="gpu", min_remaining="lots")


def test_a_bad_dag_file_fails_to_import_with_greenflows_message(tmp_path: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    (tmp_path / "bad_dag.py").write_text(
        textwrap.dedent(
            """
            from datetime import datetime, timezone
            from airflow.sdk import DAG
            from greenflow.airflow.operators.carbon_aware import CarbonAwareOperator

            with DAG("bad", schedule=None, start_date=datetime(2024, 1, 1, tzinfo=timezone.utc)):
                CarbonAwareOperator(task_id="train", python_callable=print, region="GB", provider="ukgrid",
                                    expected_duration="3h", deadline="2h")
            """
        )
    )
    bag = DagBag(str(tmp_path))
    [message] = bag.import_errors.values()
    assert "deadline=2:00:00 after the request is shorter than expected_duration=3:00:00" in message
    assert "give a deadline at least as long as the task" in message
    assert "bad" not in bag.dags


def test_parsing_a_dag_with_a_trace_file_does_not_read_it(
    tmp_path: Path, series_trace: Any, midnight: datetime, monkeypatch: pytest.MonkeyPatch, make_context: Any
) -> None:
    """The DAG processor parses each file again and again, each time in a fresh process: no CSV read there."""
    import builtins

    from airflow.dag_processing.dagbag import DagBag

    trace = series_trace(midnight, [300.0, 200.0, 100.0, 250.0])
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "trace_dag.py").write_text(
        textwrap.dedent(
            f"""
            from datetime import datetime, timezone
            from airflow.sdk import DAG
            from greenflow.airflow.operators.carbon_aware import CarbonAwareOperator

            with DAG("trace_dag", schedule=None, start_date=datetime(2024, 1, 1, tzinfo=timezone.utc)):
                CarbonAwareOperator(task_id="train", python_callable=print, region="GB", provider="trace",
                                    provider_options={{"path": {str(trace)!r}, "now": "{midnight.isoformat()}"}},
                                    expected_duration="1h", max_delay="2h")
                CarbonAwareOperator(task_id="bad", python_callable=print, region="GB", provider="trace",
                                    provider_options={{"path": {str(trace)!r}}}, expected_duration="1h",
                                    max_delay="1h", deadline="3h")
            """
        )
    )
    opened: list[str] = []
    real_open = builtins.open

    def counting_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    bag = DagBag(str(dags))
    assert str(trace) not in opened
    # Every other check still ran: the second task's conflicting deadline failed the import.
    [message] = bag.import_errors.values()
    assert "both deadline and max_delay are set" in message

    task = CarbonAwareOperator(
        task_id="train",
        python_callable=lambda: "ran",
        region="GB",
        provider="trace",
        provider_options={"path": str(trace), "now": midnight.isoformat()},
        max_delay="0s",
    )
    assert str(trace) not in opened
    assert task.execute(make_context(task_id="train")) == "ran"  # the task reads the file when it plans
    assert str(trace) in opened


def test_a_trace_files_region_label_and_template_are_still_checked_at_parse_time(tmp_path: Path) -> None:
    args: dict[str, Any] = {"task_id": "t", "python_callable": print, "provider": "trace"}
    with pytest.raises(InvalidInput, match="region='  GB' is empty or has surrounding spaces"):
        CarbonAwareOperator(**args, region="  GB", provider_options={"path": str(tmp_path / "x.csv")})
    with pytest.raises(InvalidInput, match=r"has the placeholder \{zone\}"):
        CarbonAwareOperator(**args, region="GB", provider_options={"path": str(tmp_path / "{zone}.csv")})
