"""Who a ledger entry is about, from Airflow's task context."""

from __future__ import annotations

from typing import Any

from greenflow.ledger import Identity


def identity_from_context(context: Any) -> Identity:
    """The attempt of the running task instance (DAG id, run id, task id, try number, map index)."""
    ti = context["ti"]
    map_index = getattr(ti, "map_index", -1)
    return Identity(
        orchestrator="airflow",
        workflow_id=ti.dag_id,
        run_id=ti.run_id,
        task_id=ti.task_id,
        attempt=max(int(getattr(ti, "try_number", 1) or 1), 1),
        map_index=map_index if map_index is not None and map_index >= 0 else None,
    )


def identity_to_dict(identity: Identity) -> dict[str, Any]:
    """Primitive form (trigger arguments)."""
    return {
        "orchestrator": identity.orchestrator,
        "workflow_id": identity.workflow_id,
        "run_id": identity.run_id,
        "task_id": identity.task_id,
        "attempt": identity.attempt,
        "map_index": identity.map_index,
    }
