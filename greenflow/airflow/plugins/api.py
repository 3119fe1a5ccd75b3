"""The read-only JSON API under ``/greenflow/api``: entries (paged, CSV), one task instance, budgets,
totals per day and the chain's integrity. Only GET routes exist: nothing here changes the ledger."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, StreamingResponse

from greenflow.airflow.plugins.access import ReadableDags, dag_read, named_dag_read
from greenflow.airflow.plugins.integrity import Mode, Outcome, redacted, verification
from greenflow.airflow.plugins.ledger_source import LedgerSource, open_source
from greenflow.airflow.plugins.params import (
    EntryQuery,
    EntryQueryDep,
    PagingDep,
    TaskInstanceDep,
    parse_zone,
)
from greenflow.airflow.plugins.present import CSV_COLUMNS, attempts_json, csv_cells, entry_row_json, iso
from greenflow.airflow.plugins.queries import (
    MAX_TOTALS_DAYS,
    BudgetView,
    DailyTotals,
    Totals,
    budget_views,
    daily_totals,
    default_period,
    export_rows,
    page,
    readable_seqs,
    task_instance_entries,
)
from greenflow.clock import utcnow
from greenflow.errors import InvalidInput
from greenflow.ledger import Ledger

router = APIRouter(prefix="/api", tags=["greenflow"])


def ledger_source() -> LedgerSource:
    """The ledger this request reads (FastAPI dependency)."""
    return open_source()


SourceDep = Annotated[LedgerSource, Depends(ledger_source)]


@router.get("/entries", dependencies=[Depends(named_dag_read)], summary="A page of ledger entries")
def entries(source: SourceDep, query: EntryQueryDep, paging: PagingDep, readable: ReadableDags) -> dict[str, Any]:
    """Entries of the DAGs the user may read, filtered, sorted and keyset-paginated.

    Follow ``next_cursor`` / ``prev_cursor`` with the same filters, sort and order.
    """
    body: dict[str, Any] = {"sort": paging.sort, "order": paging.order, "limit": paging.limit}
    if source.ledger is None:
        return {**body, "entries": [], "next_cursor": None, "prev_cursor": None, "ledger_exists": False}
    result = page(source.ledger, query, paging, readable)
    return {
        **body,
        "entries": [entry_row_json(row) for row in result.rows],
        "next_cursor": result.next_cursor.encode() if result.next_cursor else None,
        "prev_cursor": result.prev_cursor.encode() if result.prev_cursor else None,
        "ledger_exists": True,
    }


@router.get("/entries.csv", dependencies=[Depends(named_dag_read)], summary="Every matching entry as CSV")
def entries_csv(
    source: SourceDep, query: EntryQueryDep, paging: PagingDep, readable: ReadableDags
) -> StreamingResponse:
    """The same entries as ``/entries`` (all pages, no cursor), streamed as CSV: masses in g, energy in kWh."""
    ledger = source.ledger

    def lines() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        if ledger is not None:
            for count, row in enumerate(export_rows(ledger, query, paging, readable), start=1):
                writer.writerow(csv_cells(row))
                if count % 500 == 0:
                    yield buffer.getvalue()
                    buffer.seek(0)
                    buffer.truncate()
        yield buffer.getvalue()

    filename = f"greenflow-ledger-{utcnow():%Y%m%dT%H%M%SZ}.csv"
    return StreamingResponse(
        lines(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/task-instance", dependencies=[Depends(dag_read)], summary="Every attempt of one task instance")
def task_instance(source: SourceDep, key: TaskInstanceDep) -> dict[str, Any]:
    """Decision, measurement, the forecast planned on, the intensity during the run, per attempt.

    An interruptible attempt is one item: its totals, and its segments' entries in ``segments``.
    """
    attempts = [] if source.ledger is None else task_instance_entries(source.ledger, key)
    return {
        "dag_id": key.dag_id,
        "run_id": key.run_id,
        "task_id": key.task_id,
        "map_index": key.map_index,
        "attempts": attempts_json(attempts),
    }


def budget_json(view: BudgetView) -> dict[str, Any]:
    """A budget's standing and the entries it blocked."""
    return {
        **view.status.to_dict(),
        "expired_reservations": view.expired_reservations,
        "blocked": {"count": view.blocked_count, "recent": [entry_row_json(row) for row in view.blocked]},
    }


@router.get("/budgets", summary="Budgets: limit, spent, reserved, remaining and what they blocked")
def budgets(source: SourceDep, readable: ReadableDags) -> dict[str, Any]:
    """Every budget the user may see (a DAG's budget only with read access to that DAG)."""
    views = [] if source.ledger is None else budget_views(source.ledger, readable)
    return {"budgets": [budget_json(view) for view in views]}


def totals_period(query: EntryQuery, tz: str | None) -> tuple[datetime, datetime, ZoneInfo]:
    """(start, end, zone) of a totals request: the filter's range, else the last 30 days in ``tz``."""
    zone = parse_zone(tz)
    start, end = query.where.since, query.where.until
    default_start, default_end = default_period(zone)
    if start is None and end is None:
        start, end = default_start, default_end
    elif start is None:
        assert end is not None
        start = end - timedelta(days=30)
    elif end is None:
        end = max(default_end, start + timedelta(days=1))
    if end - start > timedelta(days=MAX_TOTALS_DAYS):
        raise InvalidInput(f"the period is longer than {MAX_TOTALS_DAYS} days", fix="ask for a shorter range")
    return start, end, zone


def totals_json(result: DailyTotals) -> dict[str, Any]:
    """Totals per day and over the period."""
    return {
        "since": iso(result.start),
        "until": iso(result.end),
        "tz": result.zone.key,
        "days": [{"day": day.isoformat(), **totals.to_dict()} for day, totals in result.days],
        "totals": result.overall.to_dict(),
    }


def period_totals(source: LedgerSource, query: EntryQuery, readable: frozenset[str], tz: str | None) -> DailyTotals:
    """Totals per day for a request (all zero days when there is no ledger yet)."""
    start, end, zone = totals_period(query, tz)
    if source.ledger is None:
        return DailyTotals(start, end, zone, [], Totals())
    # The period is passed on its own (with its defaults): drop the filter's copy of the same dates.
    undated = replace(query, where=replace(query.where, since=None, until=None))
    return daily_totals(source.ledger, undated, readable, start, end, zone)


@router.get("/totals", dependencies=[Depends(named_dag_read)], summary="Emissions, energy and savings per day")
def totals(
    source: SourceDep,
    query: EntryQueryDep,
    readable: ReadableDags,
    tz: Annotated[str | None, Query(description="Time zone of the days (IANA; default UTC)")] = None,
) -> dict[str, Any]:
    """Per day in ``tz`` over [since, until] (default: the last 30 days), with what deferral saved."""
    return totals_json(period_totals(source, query, readable, tz))


def integrity_mode(refresh: str | None, auto: str | None) -> Mode:
    """``refresh=1``: verify now; ``auto=1``: only start one on a small ledger; else reuse or verify."""
    flags = {}
    for name, value in (("refresh", refresh), ("auto", auto)):
        flag = (value or "").strip().lower()
        if flag not in ("", "0", "1", "true", "false"):
            raise InvalidInput(f"{name}={value!r} is not 0 or 1", fix=f"give {name}=1 or leave it out")
        flags[name] = flag in ("1", "true")
    return "refresh" if flags["refresh"] else "auto" if flags["auto"] else "run"


def integrity_json(outcome: Outcome, ledger: Ledger, readable: frozenset[str]) -> dict[str, Any]:
    """The verification report (problems of unreadable DAGs anonymised) and when it was made."""
    status = {"in_progress": outcome.in_progress, "reused": outcome.reused}
    result = outcome.result
    if result is None:
        head_seq, _hash = ledger.head()
        return {"checked": False, "ok": None, "entries": head_seq, "problems": [], **status}
    report = result.report
    seqs = [p.seq for p in report.problems if p.seq is not None]
    return {
        "checked": True,
        "ok": report.ok,
        "entries": report.entries,
        "head_seq": report.head_seq,
        "head_hash": report.head_hash,
        "problems": redacted(report, readable_seqs(ledger, seqs, readable)),
        "checked_at": iso(result.checked_at),
        "seconds": round(result.seconds, 3),
        **status,
    }


@router.get("/integrity", summary="Hash-chain verification of the whole ledger")
def integrity(
    source: SourceDep,
    readable: ReadableDags,
    refresh: Annotated[str | None, Query(description="1 to verify again now")] = None,
    auto: Annotated[str | None, Query(description="1: start a verification only on a small ledger")] = None,
) -> JSONResponse:
    """Recompute every entry's hash and link; a recent result is reused unless ``refresh=1``.

    202 while another request's verification is still running (with the previous result, if any).
    """
    mode = integrity_mode(refresh, auto)
    if source.ledger is None:
        return JSONResponse({"checked": True, "ok": True, "entries": 0, "problems": []})
    outcome = verification(source.ledger, mode)
    return JSONResponse(
        integrity_json(outcome, source.ledger, readable), status_code=202 if outcome.in_progress else 200
    )
