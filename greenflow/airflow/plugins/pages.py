"""The server-rendered pages: the Carbon Ledger, the task-instance tab, integrity, and their assets.

Pages are Jinja2 templates shipped in the package; charts are drawn by Chart.js (shipped under
``static/`` with its licence) from JSON embedded in the page, and a small script shows times in the
time zone chosen in Airflow's UI and follows its light/dark theme. Nothing is loaded from elsewhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from greenflow import __version__
from greenflow.airflow.plugins import present
from greenflow.airflow.plugins.access import ReadableDags, dag_read, named_dag_read
from greenflow.airflow.plugins.api import (
    SourceDep,
    budget_json,
    integrity_json,
    integrity_mode,
    period_totals,
    totals_json,
)
from greenflow.airflow.plugins.integrity import verification
from greenflow.airflow.plugins.ledger_source import LedgerSource
from greenflow.airflow.plugins.params import EntryQueryDep, PagingDep, TaskInstanceDep, TaskInstanceKey
from greenflow.airflow.plugins.queries import any_entries, budget_views, page, task_instance_entries
from greenflow.errors import InvalidInput
from greenflow.ledger import Ledger
from greenflow.ledger.entry import DECISIONS
from greenflow.ledger.store import SORTABLE

HERE = Path(__file__).parent
STATIC = HERE / "static"
# Only these files are served (no path from the request ever reaches the file system).
STATIC_FILES = {
    "greenflow.css": "text/css",
    "greenflow.js": "text/javascript",
    "theme.js": "text/javascript",
    "chart.umd.min.js": "text/javascript",
    "chart.js.LICENSE.md": "text/markdown",
    "leaf.svg": "image/svg+xml",
    "leaf-dark.svg": "image/svg+xml",
}
MOUNT = "/greenflow"

templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.filters.update(
    mass=present.mass,
    energy=present.energy,
    intensity=present.intensity,
    hm=present.hours_minutes,
    percent=present.percent,
    methods=present.methods,
    when=present.when,
    decision=present.decision_label,
    badge=present.decision_badge,
    masked=present.mask_text,
    figure=present.figure,
    exact=present.exact,
    row_clock=present.row_clock,
    segment=present.segment_label,
    row_badge=present.row_badge,
)
templates.env.globals.update(amount=present.amount, method_label=present.method_label)

router = APIRouter()


def base_path(request: Request) -> str:
    """This app's URL path (``[api] base_url``'s path + ``/greenflow``), for every link a page makes."""
    return str(request.scope.get("root_path") or MOUNT).rstrip("/")


def page_context(request: Request, source: LedgerSource, user: Any, **values: Any) -> dict[str, Any]:
    base = base_path(request)
    return {
        "base": base,
        "airflow_base": base.removesuffix(MOUNT),
        "static": lambda name: f"{base}/static/{name}?v={__version__}",
        "ledger_label": ledger_label(source, user),
        "ledger_missing": source.missing,
        "decisions": DECISIONS,
        **values,
    }


def ledger_label(source: LedgerSource, user: Any) -> str:
    """The ledger's URL (password masked) for users who may read Airflow's configuration, else its kind."""
    from airflow.api_fastapi.app import get_auth_manager

    kind = (
        "PostgreSQL" if source.safe_url.startswith("postgresql") else "SQLite" if "sqlite" in source.safe_url else "SQL"
    )
    try:
        allowed = bool(get_auth_manager().is_authorized_configuration(method="GET", user=user))
    except Exception:  # an auth manager that cannot answer: show the kind only
        allowed = False
    return source.safe_url if allowed else f"{kind} ledger"


def _link(base: str, path: str, params: dict[str, Any]) -> str:
    kept = {k: v for k, v in params.items() if v not in (None, "")}
    return f"{base}{path}" + (f"?{urlencode(kept)}" if kept else "")


@router.get("/", include_in_schema=False)
def home(request: Request) -> RedirectResponse:
    """The Carbon Ledger page."""
    return RedirectResponse(f"{base_path(request)}/ledger", status_code=307)


@router.get("/ledger", dependencies=[Depends(named_dag_read)], include_in_schema=False)
def ledger_page(
    request: Request,
    source: SourceDep,
    query: EntryQueryDep,
    paging: PagingDep,
    readable: ReadableDags,
    user: GetUserDep,
    tz: Annotated[str | None, Query()] = None,
    attempt: Annotated[str | None, Query()] = None,
) -> Response:
    """The ledger table with filters, totals and savings, budgets, and one task instance when named."""
    base = base_path(request)
    filters = {
        "dag_id": query.where.workflow_id,
        "run_id": query.where.run_id,
        "task_id": query.where.task_id,
        "map_index": request.query_params.get("map_index"),
        "decision": query.where.decision,
        "since": request.query_params.get("since"),
        "until": request.query_params.get("until"),
        "tz": tz,
    }
    values: dict[str, Any] = {
        "filters": filters,
        "paging": paging,
        "readable": sorted(readable),
        "rows": [],
        "any_visible": False,
        "budgets": [],
        "totals": None,
        "detail": None,
        "filtered": any(filters[k] for k in ("dag_id", "run_id", "task_id", "decision", "since", "until")),
    }
    ledger = source.ledger
    if ledger is not None:
        result = page(ledger, query, paging, readable)
        values["rows"] = result.rows
        values["any_visible"] = bool(result.rows) or any_entries(ledger, readable)
        sort_params = {**filters, "sort": paging.sort, "order": paging.order, "limit": paging.limit}
        values["next_link"] = (
            _link(base, "/ledger", {**sort_params, "cursor": result.next_cursor.encode()})
            if result.next_cursor
            else None
        )
        values["prev_link"] = (
            _link(base, "/ledger", {**sort_params, "cursor": result.prev_cursor.encode()})
            if result.prev_cursor
            else None
        )
        values["budgets"] = [budget_json(view) for view in budget_views(ledger, readable)]
        try:
            values["totals"] = totals_json(period_totals(source, query, readable, tz))
        except InvalidInput as too_long:  # the table still shows the range; the chart needs a shorter one
            values["totals_note"] = f"{too_long.message}: {too_long.fix}"
        key = query.task_instance
        if key is not None:
            values["detail"] = _detail(ledger, key, attempt)
    values["sort_link"] = lambda key: _link(
        base,
        "/ledger",
        {**filters, "sort": key, "order": "asc" if paging.sort == key and paging.descending else "desc"},
    )
    values["export_link"] = _link(base, "/api/entries.csv", {**filters, "sort": paging.sort, "order": paging.order})
    values["reset_link"] = f"{base}/ledger"
    values["task_link"] = lambda row: _link(
        base,
        "/ledger",
        {"dag_id": row.workflow_id, "run_id": row.run_id, "task_id": row.task_id, "map_index": row.map_index, "tz": tz},
    )
    values["attempt_link"] = lambda number: _link(
        base, "/ledger", {**filters, "sort": paging.sort, "order": paging.order, "attempt": number}
    )
    values["sortable"] = SORTABLE
    return templates.TemplateResponse(request, "ledger.html", page_context(request, source, user, **values))


def _detail(ledger: Ledger, key: TaskInstanceKey, attempt: str | None) -> dict[str, Any]:
    entries = task_instance_entries(ledger, key)
    attempts = present.attempts_json(entries)  # an interruptible attempt's segments are one attempt
    chosen = attempts[-1] if attempts else None
    if attempt and attempt.strip():
        try:
            wanted = int(attempt)
        except ValueError:
            raise InvalidInput(
                f"attempt={attempt!r} is not a whole number", fix="give an attempt number, e.g. 1"
            ) from None
        matching = [a for a in attempts if a["attempt"] == wanted]
        if not matching:
            raise InvalidInput(
                f"attempt {wanted} has no entry",
                fix=f"choose one of {', '.join(str(a['attempt']) for a in attempts) or 'none'}",
            )
        chosen = matching[-1]
    return {"key": key, "attempts": attempts, "chosen": chosen}


@router.get("/task", dependencies=[Depends(dag_read)], include_in_schema=False)
def task_tab(
    request: Request,
    source: SourceDep,
    key: TaskInstanceDep,
    user: GetUserDep,
    tz: Annotated[str | None, Query()] = None,
    attempt: Annotated[str | None, Query()] = None,
) -> Response:
    """The task-instance tab: this task instance's attempts, decision, measurement and charts."""
    base = base_path(request)
    detail = _detail(source.ledger, key, attempt) if source.ledger is not None else None
    ledger_link = _link(
        base,
        "/ledger",
        {"dag_id": key.dag_id, "run_id": key.run_id, "task_id": key.task_id, "map_index": key.map_index, "tz": tz},
    )
    attempt_link = lambda number: _link(  # noqa: E731 - a one-line URL builder for the template
        base,
        "/task",
        {
            "dag_id": key.dag_id,
            "run_id": key.run_id,
            "task_id": key.task_id,
            "map_index": key.map_index,
            "attempt": number,
        },
    )
    values = {"detail": detail, "key": key, "ledger_link": ledger_link, "attempt_link": attempt_link}
    return templates.TemplateResponse(request, "task.html", page_context(request, source, user, **values))


@router.get("/integrity", include_in_schema=False)
def integrity_page(
    request: Request,
    source: SourceDep,
    readable: ReadableDags,
    user: GetUserDep,
    refresh: Annotated[str | None, Query()] = None,
) -> Response:
    """The hash-chain verification, with every problem found (naming only entries the user may read)."""
    values: dict[str, Any] = {"report": None}
    if source.ledger is not None:
        outcome = verification(source.ledger, integrity_mode(refresh, None))
        values = {
            "report": integrity_json(outcome, source.ledger, readable),
            "refresh_link": f"{base_path(request)}/integrity?refresh=1",
        }
    return templates.TemplateResponse(request, "integrity.html", page_context(request, source, user, **values))


@router.get("/static/{name}", include_in_schema=False)
def static(name: str) -> Response:
    """One of the shipped assets (a fixed list; anything else is 404)."""
    media_type = STATIC_FILES.get(name)
    if media_type is None:
        return Response("not found", status_code=404, media_type="text/plain")
    # Versioned URLs (?v=) change with each release, so the browser may keep an asset for a day.
    return FileResponse(STATIC / name, media_type=media_type, headers={"Cache-Control": "private, max-age=86400"})
