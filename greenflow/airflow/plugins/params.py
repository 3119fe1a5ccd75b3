"""Query parameters of the Carbon Ledger routes, validated early with messages that name the fix.

Every parameter arrives as text and is checked here, so a bad date, an unknown sort key or a malformed
cursor is a 400 that says what to send instead, never a 500 or a silently ignored filter.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import Depends, Query

from greenflow.airflow.plugins.cursor import Cursor, decode
from greenflow.clock import parse_time
from greenflow.errors import InvalidInput
from greenflow.ledger.entry import DECISIONS
from greenflow.ledger.store import SORTABLE, EntryFilter

DEFAULT_SORT = "recorded_at"
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
# Airflow's UI substitutes {MAP_INDEX} only for mapped task instances; others get the placeholder itself.
_UNSET_MAP_INDEX = frozenset({"", "{MAP_INDEX}"})


@dataclass(frozen=True)
class TaskInstanceKey:
    """One task instance: a DAG, a run, a task and, for mapped tasks, the map index (``None``: unmapped)."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int | None


@dataclass(frozen=True)
class EntryQuery:
    """What a list of entries is restricted to (the user's readable DAGs are added by the route)."""

    where: EntryFilter
    map_index: int | None = None
    unmapped_only: bool = False

    @property
    def task_instance(self) -> TaskInstanceKey | None:
        """The task instance this query names completely, if it does."""
        w = self.where
        if w.workflow_id and w.run_id and w.task_id:
            return TaskInstanceKey(w.workflow_id, w.run_id, w.task_id, self.map_index)
        return None


@dataclass(frozen=True)
class Paging:
    """Sort order, page size and where the page starts."""

    sort: str = DEFAULT_SORT
    descending: bool = True
    limit: int = DEFAULT_LIMIT
    cursor: Cursor | None = None

    @property
    def order(self) -> str:
        """``asc`` or ``desc``."""
        return "desc" if self.descending else "asc"


def _text(value: str | None) -> str | None:
    return value.strip() if value and value.strip() else None


def parse_zone(value: str | None) -> ZoneInfo:
    """An IANA time zone (default UTC); :class:`InvalidInput` names an unknown one."""
    name = _text(value) or "UTC"
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            f"tz={name!r} is not a time zone", fix="give an IANA name such as UTC or Europe/London"
        ) from None


def parse_moment(value: str | None, name: str, zone: ZoneInfo, *, end_of_day: bool = False) -> datetime | None:
    """``2024-05-01T12:00Z`` (a zone is required) or a date ``2024-05-01`` read in ``zone``.

    A date as an upper bound (``end_of_day``) means "through that day": the next midnight.
    """
    text = _text(value)
    if text is None:
        return None
    if len(text) == 10:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise InvalidInput(f"{name}={text!r} is not a date", fix="write it like 2024-05-01") from None
        if end_of_day:
            day += timedelta(days=1)
        return datetime.combine(day, time(0), zone)
    return parse_time(text, name)


def parse_map_index(value: str | None) -> tuple[int | None, bool]:
    """(map index, unmapped only): ``-1`` means an unmapped task; empty or the placeholder means any."""
    text = (value or "").strip()
    if text in _UNSET_MAP_INDEX:
        return None, False
    try:
        number = int(text)
    except ValueError:
        raise InvalidInput(
            f"map_index={text!r} is not a whole number", fix="give -1 (unmapped) or 0, 1, 2, …"
        ) from None
    if number < -1:
        raise InvalidInput(f"map_index={number} is below -1", fix="give -1 (unmapped) or 0, 1, 2, …")
    return (None, True) if number == -1 else (number, False)


def entry_query(
    dag_id: Annotated[str | None, Query(description="DAG id")] = None,
    run_id: Annotated[str | None, Query(description="DAG run id")] = None,
    task_id: Annotated[str | None, Query(description="Task id")] = None,
    map_index: Annotated[str | None, Query(description="Map index; -1 for an unmapped task")] = None,
    decision: Annotated[str | None, Query(description=f"One of {', '.join(DECISIONS)}")] = None,
    since: Annotated[str | None, Query(description="Recorded at or after: ISO 8601 with a zone, or a date")] = None,
    until: Annotated[
        str | None, Query(description="Recorded before: ISO 8601 with a zone, or a date (inclusive)")
    ] = None,
    tz: Annotated[str | None, Query(description="Time zone that dates are read in (IANA; default UTC)")] = None,
) -> EntryQuery:
    """The filters of an entries request (FastAPI dependency)."""
    zone = parse_zone(tz)
    chosen = _text(decision)
    if chosen is not None and chosen not in DECISIONS:
        raise InvalidInput(f"decision={chosen!r} is unknown", fix=f"use one of {', '.join(DECISIONS)}")
    start = parse_moment(since, "since", zone)
    end = parse_moment(until, "until", zone, end_of_day=True)
    if start is not None and end is not None and end <= start:
        raise InvalidInput(
            f"until={_text(until)!r} is not after since={_text(since)!r}", fix="give a range that ends after it starts"
        )
    index, unmapped = parse_map_index(map_index)
    where = EntryFilter(
        workflow_id=_text(dag_id), run_id=_text(run_id), task_id=_text(task_id), decision=chosen, since=start, until=end
    )
    return EntryQuery(where, index, unmapped)


def paging(
    sort: Annotated[str | None, Query(description=f"One of {', '.join(SORTABLE)}")] = None,
    order: Annotated[str | None, Query(description="asc or desc (default)")] = None,
    limit: Annotated[str | None, Query(description=f"Rows per page, 1-{MAX_LIMIT}")] = None,
    cursor: Annotated[str | None, Query(description="next_cursor or prev_cursor of a previous page")] = None,
) -> Paging:
    """Sort, page size and cursor of an entries request (FastAPI dependency)."""
    key = _text(sort) or DEFAULT_SORT
    if key not in SORTABLE:
        raise InvalidInput(f"sort={key!r} is unknown", fix=f"sort by one of {', '.join(SORTABLE)}")
    direction = (_text(order) or "desc").lower()
    if direction not in ("asc", "desc"):
        raise InvalidInput(f"order={direction!r} is not asc or desc", fix="give order=asc or order=desc")
    size = DEFAULT_LIMIT
    if _text(limit) is not None:
        try:
            size = int(str(limit).strip())
        except ValueError:
            raise InvalidInput(f"limit={limit!r} is not a whole number", fix=f"give 1-{MAX_LIMIT}") from None
        if not 1 <= size <= MAX_LIMIT:
            raise InvalidInput(f"limit={size} is out of range", fix=f"give 1-{MAX_LIMIT}")
    token = _text(cursor)
    descending = direction == "desc"
    decoded = decode(token, sort=key, descending=descending) if token else None
    return Paging(key, descending, size, decoded)


def task_instance_key(
    dag_id: Annotated[str | None, Query(description="DAG id")] = None,
    run_id: Annotated[str | None, Query(description="DAG run id")] = None,
    task_id: Annotated[str | None, Query(description="Task id")] = None,
    map_index: Annotated[str | None, Query(description="Map index; -1 or absent for an unmapped task")] = None,
) -> TaskInstanceKey:
    """The task instance a tab or a detail request is about (FastAPI dependency)."""
    missing = [
        name for name, value in (("dag_id", dag_id), ("run_id", run_id), ("task_id", task_id)) if not _text(value)
    ]
    if missing:
        raise InvalidInput(f"{', '.join(missing)} missing", fix="give dag_id, run_id and task_id of the task instance")
    index, _unmapped = parse_map_index(map_index)
    assert dag_id and run_id and task_id
    return TaskInstanceKey(dag_id.strip(), run_id.strip(), task_id.strip(), index)


EntryQueryDep = Annotated[EntryQuery, Depends(entry_query)]
PagingDep = Annotated[Paging, Depends(paging)]
TaskInstanceDep = Annotated[TaskInstanceKey, Depends(task_instance_key)]
