"""The Airflow plugin: a "Carbon Ledger" page in the navigation and a "Carbon" tab on task instances.

Registered through the ``airflow.plugins`` entry point (so it loads under Airflow's default lazy
provider discovery). Airflow imports this module in every process, task processes included; the
FastAPI application is built only when the API server reads :attr:`GreenflowLedgerPlugin.fastapi_apps`,
so a task does not pay for importing FastAPI.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit

from airflow.plugins_manager import AirflowPlugin

MOUNT = "/greenflow"
NAV_ROUTE = "carbon-ledger"
TASK_ROUTE = "carbon-ledger-task"

_app_lock = threading.Lock()
_app: Any = None


def airflow_base_path() -> str:
    """The path of ``[api] base_url`` (``""`` when Airflow is served at the root)."""
    from airflow.configuration import conf

    base_url = conf.get("api", "base_url", fallback="") or ""
    return urlsplit(base_url).path.rstrip("/")


def external_views(base_path: str) -> list[dict[str, Any]]:
    """The nav entry and the task-instance tab, with hrefs under ``base_path`` (``[api] base_url``'s path)."""
    app = f"{base_path}{MOUNT}"
    icons = {"icon": f"{app}/static/leaf.svg", "icon_dark_mode": f"{app}/static/leaf-dark.svg"}
    return [
        {
            "name": "Carbon Ledger",
            "href": f"{app}/ledger",
            "destination": "nav",
            "url_route": NAV_ROUTE,
            "nav_top_level": True,
            **icons,
        },
        {
            "name": "Carbon",
            "href": f"{app}/task?dag_id={{DAG_ID}}&run_id={{RUN_ID}}&task_id={{TASK_ID}}&map_index={{MAP_INDEX}}",
            "destination": "task_instance",
            "url_route": TASK_ROUTE,
            **icons,
        },
    ]


def ledger_app() -> Any:
    """The plugin's FastAPI application, built once per process on first use."""
    global _app
    with _app_lock:
        if _app is None:
            from greenflow.airflow.plugins.app import create_app

            _app = create_app()
        return _app


class GreenflowLedgerPlugin(AirflowPlugin):
    """greenflow's Carbon Ledger in the Airflow UI."""

    name = "greenflow"

    def __init__(self) -> None:
        super().__init__()
        # Per instance, so that the hrefs follow [api] base_url as configured when Airflow loads plugins.
        self.external_views = external_views(airflow_base_path())

    @property
    def fastapi_apps(self) -> list[dict[str, Any]]:  # type: ignore[override]
        """The app Airflow mounts under ``/greenflow`` (built on first access)."""
        return [{"app": ledger_app(), "url_prefix": MOUNT, "name": "greenflow Carbon Ledger"}]
