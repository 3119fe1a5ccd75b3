"""A task instance's "Carbon ledger" button: its entries on the greenflow page of the Airflow UI.

The UI plugin (``greenflow.airflow.plugins``) serves ``/greenflow/ledger``; this link only builds the URL
``{[api] base_url}/greenflow/ledger?dag_id=…&run_id=…&task_id=…`` (plus ``&map_index=N`` for a mapped
task). Airflow computes it on the worker when the task process ends and stores it as an XCom.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from airflow.sdk import BaseOperatorLink

LEDGER_PATH = "/greenflow/ledger"


def ledger_url_for(base_url: str, dag_id: str, run_id: str, task_id: str, map_index: int | None = None) -> str:
    """The ledger page's URL for one task instance (all its attempts)."""
    query: dict[str, Any] = {"dag_id": dag_id, "run_id": run_id, "task_id": task_id}
    if map_index is not None and map_index >= 0:
        query["map_index"] = map_index
    return f"{base_url.rstrip('/')}{LEDGER_PATH}?{urlencode(query)}"


class GreenflowLedgerLink(BaseOperatorLink):
    """Links a task instance to its greenflow ledger entries."""

    name = "Carbon ledger"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        """The URL for ``ti_key`` under ``[api] base_url``."""
        from airflow.sdk import conf

        base_url = str(conf.get("api", "base_url", fallback="") or "")
        return ledger_url_for(
            base_url, ti_key.dag_id, ti_key.run_id, ti_key.task_id, getattr(ti_key, "map_index", None)
        )
