"""Progress from the orchestrators' log lines: what a task decided, what it waits for and until when.

The lines are copied from real demo runs (Airflow 3.3 ``dag.test()`` and Prefect 3.7 logs).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from greenflow.demo.events import PREFIX
from greenflow.demo.progress import LogFollower, LogParser, describe_wait

AIRFLOW = [
    "2026-11-22T02:21:16.991741Z [info     ] [DAG TEST] running task <TaskInstance: greenflow_example_training.train "
    "manual__2026-11-22T02:21:13.454018+00:00 [TaskInstanceState.SCHEDULED] ti_id=01a2> [airflow.sdk.definitions.dag]"
    " loc=dag.py:1504",
    "2026-11-22T02:21:17.145930Z [info     ] greenflow plan: defer: start 2022-06-01T12:00:00+00:00 in ES (latest "
    "2022-06-01T13:34:55.120800+00:00): Deferring 8h25m5s to 2022-06-01T12:00:00Z in ES (171.0 gCO2e/kWh vs 319.2 "
    "starting now in ES, 46.4 % lower): the lowest-carbon 2h window finishing by 2022-06-01T15:34:55.120800Z. "
    "[replayed trace at 3600x; times are the trace's] [airflow.task.operators.greenflow.airflow.operators."
    "carbon_aware.CarbonAwareOperator] loc=carbon_aware_base.py:156",
    "2026-11-22T02:21:17.157636Z [info     ] greenflow: reserved 50 g against budget example-training-daily (declared "
    "estimate 50 g) [airflow.task.operators.greenflow.airflow.operators.carbon_aware.CarbonAwareOperator] "
    "loc=carbon_aware_base.py:171",
    "2026-11-22T02:21:17.157911Z [info     ] greenflow: deferring until 2026-11-22T02:21:25.563748+00:00 (wall clock); "
    "no worker slot is held [airflow.task.operators.greenflow.airflow.operators.carbon_aware.CarbonAwareOperator] "
    "loc=carbon_aware_base.py:196",
    "2026-11-22T02:21:17.158105Z [info     ] Pausing task as DEFERRED.      [task] dag_id=greenflow_example_training "
    "loc=task_runner.py:1466",
    "2026-11-22T02:21:25.453625Z [info     ] [DAG TEST] running task <TaskInstance: greenflow_example_training.train "
    "manual__2026-11-22T02:21:13.454018+00:00 [TaskInstanceState.SCHEDULED] ti_id=01a2> [airflow.sdk.definitions.dag]"
    " loc=dag.py:1504",
    "2026-11-22T02:21:26.015651Z [info     ] greenflow: ledger entry 32325b2b (deferred), energy 0 Wh, emissions "
    "0 g at 174 gCO2e/kWh, charged 0 g to budget example-training-daily, not measured: gpu: no NVIDIA GPU "
    "[airflow.task.operators.greenflow.airflow.operators.carbon_aware.CarbonAwareOperator] "
    "loc=carbon_aware_base.py:243",
]

PREFECT = [
    "02:21:41.544 | INFO    | Task run 'train-8a6' - greenflow: plan for train-8a64b15e-6df1 (attempt 1): deferred to "
    "2022-06-01 10:00:00Z in ES (trace replay time) (expected 183 gCO2e/kWh, vs 312 now, saves 41%); latest start "
    "2022-06-01 10:00:00Z (trace replay time): Deferring 10h to 2022-06-01T10:00:00.067648Z in ES",
    "02:21:41.560 | INFO    | Task run 'train-8a6' - greenflow: waiting in this process until 2026-11-22 02:21:51Z, "
    "0m10s left (no deployment flow run to reschedule)",
    "02:21:51.967 | WARNING | Task run 'carbon-budget-gate-fae' - greenflow: budget 'example-training-daily' cannot "
    "cover 20 g (50 g of 60 g spent or reserved (83%), period ends 2026-11-23T00:00:00+00:00): skipping the work "
    "behind this gate",
    "02:21:52.167 | INFO    | Flow run 'naughty-sponge' - Finished in state Completed()",
]


def _feed(part: str, lines: list[str]) -> list[tuple[str | None, str]]:
    parser = LogParser(part)
    return [(p.task, p.text) for line in lines if (p := parser.feed(line)) is not None]


def test_airflow_lines_become_the_task_story_in_order() -> None:
    assert _feed("airflow", AIRFLOW) == [
        ("train", "starts"),
        ("train", "plan: defer to 2022-06-01 12:00 (trace) in ES (171 gCO2e/kWh vs 319 now, 46% lower)"),
        ("train", "reserved 50 g of budget example-training-daily"),
        ("train", "deferred: Airflow's trigger waits for the green window (no worker slot held)"),
        ("train", "resumes on a worker"),
        (
            "train",
            "ledger entry: deferred, energy 0 Wh, emissions 0 g at 174 gCO2e/kWh, charged 0 g to budget "
            "example-training-daily",
        ),
    ]


def test_a_wait_says_until_when_in_trace_and_wall_clock_time() -> None:
    parser = LogParser("airflow")
    waits = [p for line in AIRFLOW if (p := parser.feed(line)) is not None and p.wait_wall is not None]
    assert len(waits) == 1
    [wait] = waits
    assert wait.wait_trace == datetime(2022, 6, 1, 12, tzinfo=UTC)
    assert wait.wait_wall == datetime(2026, 11, 22, 2, 21, 25, 563748, tzinfo=UTC)
    text = describe_wait(wait, datetime(2026, 11, 22, 2, 21, 17, 500000, tzinfo=UTC))
    assert text == "until 2022-06-01 12:00 (trace) = 02:21:25 UTC wall clock, 8 s from now"


def test_prefect_lines_name_the_task_and_the_in_process_wait() -> None:
    parser = LogParser("prefect")
    progress = [p for line in PREFECT if (p := parser.feed(line)) is not None]
    assert [p.task for p in progress] == ["train", "train", "carbon-budget-gate", "flow"]
    assert progress[0].text.startswith("plan: deferred to 2022-06-01 10:00:00Z in ES (trace replay time)")
    assert progress[1].wait_trace == datetime(2022, 6, 1, 10, tzinfo=UTC)
    assert progress[1].wait_wall == datetime(2026, 11, 22, 2, 21, 51, tzinfo=UTC)
    assert "cannot cover 20 g" in progress[2].text and "period ends" not in progress[2].text
    assert progress[3].text == "finished: Completed()"


def test_other_lines_stay_in_the_log_file_and_part_events_are_read(tmp_path: Path) -> None:
    log = tmp_path / "part.log"
    log.write_text(
        "2026-11-22T02:21:13.475435Z [info     ] Creating ORM DAG for greenflow_example_training "
        "[airflow.x] loc=a.py:1\n"
        f'{PREFIX}{{"event": "migrated", "seconds": 2.3}}\n'
        "half a li"
    )
    follower, parser = LogFollower(log), LogParser("airflow")
    progress = [p for line in follower.new_lines() if (p := parser.feed(line)) is not None]
    assert [p.event for p in progress] == [{"event": "migrated", "seconds": 2.3}]
    with log.open("a") as stream:
        stream.write("ne\n")
    assert follower.new_lines() == ["half a line"]  # a line is read once it is complete
