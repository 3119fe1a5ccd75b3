"""Who may see what: every route goes through Airflow's auth manager.

Airflow does not authenticate plugin applications, so the app depends on
``requires_access_view(AccessView.PLUGINS)`` (anonymous: 401; no access: 403); a request naming a DAG
also depends on ``requires_access_dag("GET")``; and every query is restricted to the DAG ids the auth
manager says the user may read, as Airflow's own list routes do (``get_authorized_dag_ids``).
"""

from __future__ import annotations

from typing import Annotated

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag, requires_access_view
from fastapi import Depends, Request

plugin_view = requires_access_view(AccessView.PLUGINS)
dag_read = requires_access_dag("GET")


def named_dag_read(request: Request, user: GetUserDep) -> None:
    """``requires_access_dag("GET")`` for the DAG a request names; nothing more when it names none.

    Asking about "no DAG" would mean "every DAG" to fine-grained auth managers, and refuse a user who
    may read only some; without a DAG the rows are restricted by :func:`readable_dags` instead.
    """
    if (request.query_params.get("dag_id") or "").strip():
        dag_read(request, user)


def readable_dags(user: GetUserDep) -> frozenset[str]:
    """The DAG ids the user may read (``GET``), from the auth manager."""
    return frozenset(get_auth_manager().get_authorized_dag_ids(user=user, method="GET"))


ReadableDags = Annotated[frozenset[str], Depends(readable_dags)]


def login_url(next_url: str) -> str | None:
    """Where an anonymous visitor logs in (``None`` when the auth manager cannot say)."""
    try:
        url = get_auth_manager().get_url_login(next_url=next_url)
    except Exception:  # an auth manager without a login page, or one not initialised: just no link
        return None
    return str(url) if url else None
