"""The Report page (``/greenflow/report``) and its downloads (``/greenflow/api/report.{json,csv,html,pdf}``).

Both take the period (``period=2026-11``, or ``from``/``to`` dates; default this month) and the scope
(``scope=team:vision``, or the form's ``scope_kind``/``scope_value``), are behind the app's
authentication, and report over the Airflow entries of the DAGs the user may read
(:mod:`greenflow.airflow.plugins.report_view`). A scope naming a DAG the user may not read is a 403,
as on the ledger page; a bad period or scope is a 400 naming the value.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response

from greenflow.airflow.plugins import report_view
from greenflow.airflow.plugins.access import ReadableDags
from greenflow.airflow.plugins.api import SourceDep
from greenflow.airflow.plugins.integrity import verification
from greenflow.airflow.plugins.ledger_source import LedgerSource
from greenflow.airflow.plugins.pages import base_path, ledger_label, page_context, templates
from greenflow.airflow.plugins.queries import scope_choices
from greenflow.airflow.plugins.report_view import FORMATS, ReportRequest
from greenflow.ledger import Ledger
from greenflow.report import Report

router = APIRouter()


def report_request(
    readable: ReadableDags,
    period: Annotated[str | None, Query(description="A month (2026-11), quarter (2026-Q4) or year")] = None,
    start: Annotated[str | None, Query(alias="from", description="First day (2026-11-01) or ISO time")] = None,
    end: Annotated[str | None, Query(alias="to", description="Last day, included (2026-11-30) or ISO time")] = None,
    scope: Annotated[str | None, Query(description="all, team:<name>, workflow:<dag_id> or tag:<tag>")] = None,
    scope_kind: Annotated[str | None, Query(include_in_schema=False)] = None,
    scope_value: Annotated[str | None, Query(include_in_schema=False)] = None,
) -> ReportRequest:
    """The request's period and scope; a DAG the user may not read is refused like a DAG filter is (403)."""
    parsed = report_view.parse_request(
        period=period, start=start, end=end, scope=scope, scope_kind=scope_kind, scope_value=scope_value
    )
    chosen = parsed.scope.scope
    if chosen.kind == "workflow" and chosen.value not in readable:
        raise HTTPException(403, f"you may not read DAG {chosen.value!r}")
    return parsed


ReportRequestDep = Annotated[ReportRequest, Depends(report_request)]


def _report(
    ledger: Ledger, request: ReportRequest, readable: frozenset[str], user: Any, source: LedgerSource
) -> Report:
    checked = verification(ledger, "auto")  # reuses the Integrity page's result; verifies only small ledgers
    return report_view.visible_report(
        ledger,
        request,
        readable,
        verification=report_view.verification_evidence(checked, ledger, readable),
        ledger_label=ledger_label(source, user),
    )


@router.get("/report", include_in_schema=False)
def report_page(
    request: Request, source: SourceDep, readable: ReadableDags, user: GetUserDep, wanted: ReportRequestDep
) -> Response:
    """The report over a period and scope: the same figures as ``greenflow report``, and its downloads."""
    base = base_path(request)
    values: dict[str, Any] = {
        "wanted": wanted,
        "scope_kind": wanted.scope.scope.kind,
        "scope_value": wanted.scope.scope.value or "",
        "readable": sorted(readable),
        "choices": {"team": [], "tag": []},
        "r": None,
        "downloads": [],
        "labels": report_view.FIGURE_LABELS,
    }
    ledger = source.ledger
    if ledger is not None:
        report = _report(ledger, wanted, readable, user, source)
        values["r"] = report.to_dict()
        values["choices"] = scope_choices(ledger, readable, wanted.period.start, wanted.period.end)
        query = urlencode(wanted.params())
        values["downloads"] = [
            {
                "format": fmt,
                "href": f"{base}/api/report.{fmt}?{query}",
                "missing": report_view.renderer_missing(fmt),
            }
            for fmt in ("html", "pdf", "json", "csv")
        ]
        values["daily"] = {
            "days": [
                {"day": d["day"], "operational_g": d["location_based_g"], "saved_g": d["saved_g"]}
                for d in values["r"]["charts"].get("daily", [])
            ]
        }
    return templates.TemplateResponse(request, "report.html", page_context(request, source, user, **values))


@router.get("/api/report.{fmt}", summary="The report over a period and scope, as JSON, CSV, HTML or PDF")
def report_download(
    fmt: str, source: SourceDep, readable: ReadableDags, user: GetUserDep, wanted: ReportRequestDep
) -> Response:
    """``greenflow report`` over the Airflow entries of the DAGs the user may read.

    JSON follows schema ``greenflow.report/1``; CSV has one row per breakdown line; HTML and PDF are
    the core's documents (PDF only where WeasyPrint and pango are installed: otherwise a 400 saying so).
    """
    fmt = report_view.parse_format(fmt)
    if source.ledger is None:
        raise HTTPException(404, "there is no ledger yet: no task has written one")
    body = report_view.render(_report(source.ledger, wanted, readable, user, source), fmt)
    name = report_view.filename(wanted, fmt)
    return Response(body, media_type=FORMATS[fmt], headers={"Content-Disposition": f'attachment; filename="{name}"'})
