"""Who a ``greenflow run`` attempt is, and its ``--provider-option`` values, without importing the ledger.

Kept apart from :mod:`greenflow.cli.run` so that the launcher's fast path can resolve them before it
starts the command, without paying for SQLAlchemy, Typer or Rich.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from greenflow.bounds import check_identity
from greenflow.clock import utcnow
from greenflow.errors import InvalidInput


@dataclass(frozen=True)
class Attempt:
    """The fields of a :class:`~greenflow.ledger.Identity` and where they came from."""

    orchestrator: Literal["airflow", "prefect", "cli"]
    workflow_id: str
    run_id: str
    task_id: str
    attempt: int
    source: str

    def __post_init__(self) -> None:
        # Checked here, before the command starts: an id the ledger cannot hold would leave a spool file
        # that no flush could ever write.
        check_identity(workflow_id=self.workflow_id, run_id=self.run_id, task_id=self.task_id, attempt=self.attempt)

    def identity_fields(self) -> dict[str, Any]:
        """Keyword arguments of :class:`~greenflow.ledger.Identity`."""
        return {
            "orchestrator": self.orchestrator,
            "workflow_id": self.workflow_id,
            "run_id": self.run_id,
            "task_id": self.task_id,
            "attempt": self.attempt,
        }


def attempt_from(
    env: Mapping[str, str], *, workflow: str | None, run_id: str | None, task: str | None, attempt: int | None
) -> Attempt:
    """Who this attempt is: flags first, then the Airflow or Prefect context the command runs in."""
    orchestrator: Literal["airflow", "prefect", "cli"]
    if env.get("AIRFLOW_CTX_DAG_ID"):
        orchestrator, source = "airflow", "Airflow task context (AIRFLOW_CTX_*)"
        workflow = workflow or env["AIRFLOW_CTX_DAG_ID"]
        run_id = run_id or env.get("AIRFLOW_CTX_DAG_RUN_ID")
        task = task or env.get("AIRFLOW_CTX_TASK_ID")
        attempt = attempt if attempt is not None else _int(env.get("AIRFLOW_CTX_TRY_NUMBER"))
    elif env.get("PREFECT__FLOW_RUN_ID"):
        orchestrator, source = "prefect", "Prefect flow run (PREFECT__FLOW_RUN_ID)"
        run_id = run_id or env["PREFECT__FLOW_RUN_ID"]
    else:
        orchestrator, source = "cli", "command line"
    return Attempt(
        orchestrator=orchestrator,
        workflow_id=workflow or "adhoc",
        run_id=run_id or f"run-{utcnow():%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}",
        task_id=task or "command",
        attempt=1 if attempt is None else attempt,
        source=source,
    )


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None


def provider_options(pairs: list[str]) -> dict[str, Any]:
    """``--provider-option KEY=VALUE`` pairs as a dict; numbers and booleans typed (``speed=3600``)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(
                f"--provider-option {pair!r} is not KEY=VALUE", fix="e.g. --provider-option now=2022-06-01T00:00Z"
            )
        options[key.strip()] = _typed(value)
    return options


def _typed(value: str) -> Any:
    try:
        parsed = json.loads(value)
    except ValueError:
        return value
    return parsed if isinstance(parsed, (int, float, bool)) else value
