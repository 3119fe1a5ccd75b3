"""``@task.carbon_aware``: builds the deferrable decorated operator with the carbon-aware arguments."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from airflow.sdk import DAG, task
from airflow.sdk.exceptions import TaskDeferred

from greenflow.airflow.decorators.carbon_aware import CarbonAwareDecoratedOperator
from greenflow.errors import InvalidInput
from greenflow.ledger import Ledger


def test_decorated_task_defers_and_resumes_with_its_result(
    gf_ledger: Ledger, make_context: Any, midnight: datetime
) -> None:
    options = {"now": midnight.isoformat(), "speed": 36_000, "replay_started_at": datetime.now(UTC).isoformat()}

    @task.carbon_aware(region="ES", provider="trace", provider_options=options, expected_duration="2h", max_delay="14h")
    def infer(shard: int) -> dict[str, int]:
        return {"shard": shard, "rows": 100}

    with DAG("decorated", schedule=None, start_date=midnight):
        op = infer(7).operator
    assert isinstance(op, CarbonAwareDecoratedOperator)
    context = make_context(dag_id="decorated", task_id="infer")
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)

    async def fire() -> dict[str, Any]:
        async for event in deferred.value.trigger.run():
            return dict(event.payload)
        raise AssertionError("no event")

    event = asyncio.run(asyncio.wait_for(fire(), 20))
    assert op.execute_complete(context, event) == {"shard": 7, "rows": 100}
    [entry] = gf_ledger.entries()
    assert entry.decision == "deferred" and entry.task_id == "infer"


def test_decorator_arguments_are_validated_when_the_dag_is_built(midnight: datetime) -> None:
    @task.carbon_aware(region="Narnia", provider="ukgrid")
    def infer() -> None:
        return None

    with pytest.raises(InvalidInput, match="Narnia"), DAG("bad", schedule=None, start_date=midnight):
        infer()


def _message(build: Any) -> tuple[str, str | None]:
    with pytest.raises(InvalidInput) as error:
        build()
    return error.value.message, error.value.fix


def test_mapped_decorated_tasks_are_validated_when_the_dag_is_built(midnight: datetime) -> None:
    @task.carbon_aware(region="Narnia", provider="ukgrid")
    def infer(shard: int, model: str) -> None:
        return None

    with DAG("bad", schedule=None, start_date=midnight):
        called = _message(lambda: infer(1, "m"))
        assert "Narnia" in called[0]
        assert _message(lambda: infer.expand(shard=[1, 2], model=["m"])) == called
        assert _message(lambda: infer.partial(model="m").expand(shard=[1, 2])) == called
        assert _message(lambda: infer.partial(model="m").expand_kwargs([{"shard": 1}])) == called
        # .override() replaces the decorator's arguments: a good region maps, a bad duration is refused.
        infer.override(region="GB").partial(model="m").expand(shard=[1, 2])
        with pytest.raises(InvalidInput, match="expected_duration='-1h' is negative"):
            infer.override(region="GB", expected_duration="-1h").expand(shard=[1], model=["m"])


def test_the_dags_default_args_apply_to_mapped_decorated_tasks(midnight: datetime) -> None:
    @task.carbon_aware(region="GB")
    def infer(shard: int) -> None:
        return None

    # A DAG-level carbon default out of range would fail every instance: it is refused when the DAG is built.
    with (
        DAG("bad", schedule=None, start_date=midnight, default_args={"min_savings": 150}),
        pytest.raises(InvalidInput, match="min_savings=150 is out of range"),
    ):
        infer.expand(shard=[1, 2])
    with DAG("good", schedule=None, start_date=midnight, default_args={"min_savings": 150}):
        infer.override(min_savings=10).expand(shard=[1, 2])
