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
