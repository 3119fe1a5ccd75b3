"""The Carbon Ledger's reads: pages of entries, exports, totals per day, budgets and one task instance.

Every query is restricted to Airflow entries of the DAGs the user may read (the auth manager's answer,
passed in as ``readable``), is built with SQLAlchemy expressions (so every value is a bound parameter)
and runs in a read-only transaction. Lists use keyset pagination on (sort key, seq): each page is an
index range scan however deep it is (the indexes are in migration 0002).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Row, Select, and_, case, false, func, literal, or_, select, tuple_
from sqlalchemy.orm import InstrumentedAttribute

from greenflow.airflow.plugins.cursor import Cursor, Direction, Position
from greenflow.airflow.plugins.params import EntryQuery, Paging, TaskInstanceKey
from greenflow.clock import utcnow
from greenflow.ledger import Entry, Ledger
from greenflow.ledger.budgets import Budget, BudgetStatus
from greenflow.ledger.models import EntryRow
from greenflow.ledger.store import entry_from_row

ORCHESTRATOR = "airflow"
# An entry planned on a replayed trace keeps extra["replay"] = {"speed", "note"}: its times (requested,
# planned, actual, the wait) are the trace's, not real ones. The note is always written, the speed may be
# None (a replay whose clock stands still).
REPLAYED: ColumnElement[bool] = EntryRow.extra["replay"]["note"].as_string().is_not(None)
REPLAY_SPEED: ColumnElement[float] = EntryRow.extra["replay"]["speed"].as_float()
# A segment of an interruptible attempt keeps extra["segment"] (docs/interruptible.md): one entry per segment,
# each with its own energy and savings, linked to its attempt. Its index counts from 0 (past the plan it is
# ``of`` or more); the first segment (index 0) stands for the attempt where attempts are counted, so an
# attempt counts once however many segments it ran in, and in the period it started in.
SEGMENT_INDEX: ColumnElement[int] = EntryRow.extra["segment"]["index"].as_integer()
SEGMENT_OF: ColumnElement[int] = EntryRow.extra["segment"]["of"].as_integer()
SEGMENT_FINAL: ColumnElement[bool] = EntryRow.extra["segment"]["final"].as_boolean()
OPENS_ATTEMPT: ColumnElement[bool] = or_(SEGMENT_INDEX.is_(None), SEGMENT_INDEX == 0)
# The columns a list or an export shows: never the forecast copy or the notes, which are large.
LIST_COLUMNS: tuple[InstrumentedAttribute[Any] | ColumnElement[Any], ...] = (
    EntryRow.seq,
    EntryRow.entry_id,
    EntryRow.recorded_at,
    EntryRow.workflow_id,
    EntryRow.run_id,
    EntryRow.task_id,
    EntryRow.map_index,
    EntryRow.attempt,
    EntryRow.region,
    EntryRow.decision,
    EntryRow.requested_at,
    EntryRow.planned_start,
    EntryRow.actual_start,
    EntryRow.ended_at,
    EntryRow.deferred_seconds,
    EntryRow.energy_kwh,
    EntryRow.energy_gpu_kwh,
    EntryRow.energy_cpu_kwh,
    EntryRow.energy_dram_kwh,
    EntryRow.method_gpu,
    EntryRow.method_cpu,
    EntryRow.method_dram,
    EntryRow.intensity_g_per_kwh,
    EntryRow.operational_g,
    EntryRow.embodied_g,
    EntryRow.counterfactual_g,
    EntryRow.saved_g,
    EntryRow.functional_unit,
    EntryRow.functional_units,
    EntryRow.sci_g_per_unit,
    EntryRow.budget,
    EntryRow.charged_g,
    EntryRow.error,
    EntryRow.entry_hash,
    REPLAYED.label("replayed"),
    REPLAY_SPEED.label("replay_speed"),
    SEGMENT_INDEX.label("segment_index"),
    SEGMENT_OF.label("segment_of"),
    SEGMENT_FINAL.label("segment_final"),
)
# Sort keys that can be NULL (not measured): those rows come last in either direction.
_NOT_NULL_KEYS = frozenset({"seq", "recorded_at"})
EXPORT_BATCH = 2000
MAX_TOTALS_DAYS = 400


@dataclass(frozen=True)
class Page:
    """One page of entries and the cursors to the pages around it (``None``: no such page)."""

    rows: Sequence[Row[Any]]
    next_cursor: Cursor | None
    prev_cursor: Cursor | None


def visible(readable: frozenset[str]) -> ColumnElement[bool]:
    """Airflow entries of the DAGs in ``readable`` (nothing when it is empty)."""
    if not readable:
        return false()
    return and_(EntryRow.orchestrator == ORCHESTRATOR, EntryRow.workflow_id.in_(sorted(readable)))


def conditions(query: EntryQuery, readable: frozenset[str]) -> list[ColumnElement[bool]]:
    """Every condition of ``query`` plus the visibility restriction."""
    found: list[ColumnElement[bool]] = [visible(readable)]
    w = query.where
    for column, value in (
        (EntryRow.workflow_id, w.workflow_id),
        (EntryRow.run_id, w.run_id),
        (EntryRow.task_id, w.task_id),
        (EntryRow.decision, w.decision),
        (EntryRow.region, w.region),
    ):
        if value is not None:
            found.append(column == value)
    if w.since is not None:
        found.append(EntryRow.recorded_at >= w.since)
    if w.until is not None:
        found.append(EntryRow.recorded_at < w.until)
    if query.map_index is not None:
        found.append(EntryRow.map_index == query.map_index)
    elif query.unmapped_only:
        found.append(EntryRow.map_index.is_(None))
    return found


# -- pages ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Segment:
    """A stretch of the sort order: rows with a value ordered by (value, seq), or rows without one by seq."""

    nulls: bool


def _segments(sort: str) -> tuple[_Segment, ...]:
    return (_Segment(False),) if sort in _NOT_NULL_KEYS else (_Segment(False), _Segment(True))


def _segment_of(sort: str, position: Position) -> int:
    return 1 if sort not in _NOT_NULL_KEYS and position.value is None else 0


def _segment_select(
    base: Select[Any], sort: str, segment: _Segment, forward_desc: bool, bound: Position | None, limit: int
) -> Select[Any]:
    """Rows of one segment in order ``forward_desc`` (True: descending), strictly beyond ``bound``."""
    column = getattr(EntryRow, sort)
    seq = EntryRow.seq
    query = base
    if segment.nulls:
        query = query.where(column.is_(None))
        if bound is not None:
            query = query.where(seq < bound.seq if forward_desc else seq > bound.seq)
        return query.order_by(seq.desc() if forward_desc else seq.asc()).limit(limit)
    if sort == "seq":
        if bound is not None:
            query = query.where(seq < bound.seq if forward_desc else seq > bound.seq)
        return query.order_by(seq.desc() if forward_desc else seq.asc()).limit(limit)
    if sort not in _NOT_NULL_KEYS:
        query = query.where(column.is_not(None))
    if bound is not None:
        # A row-value comparison, so that the (key, seq) index can seek straight to the bound.
        key = tuple_(column, seq)
        mark = tuple_(literal(bound.value, column.type), literal(bound.seq, seq.type))
        query = query.where(key < mark if forward_desc else key > mark)
    order = (column.desc(), seq.desc()) if forward_desc else (column.asc(), seq.asc())
    return query.order_by(*order).limit(limit)


def _fetch(
    ledger: Ledger, base: Select[Any], paging: Paging, direction: Direction, bound: Position | None, want: int
) -> list[Row[Any]]:
    """Up to ``want`` rows after (or before) ``bound`` along the whole order, crossing into the NULL segment."""
    segments = _segments(paging.sort)
    # Walking backwards reverses the order: the NULL segment comes first and each segment runs the other way.
    forward = direction == "after"
    start = 0 if bound is None else _segment_of(paging.sort, bound)
    if forward:
        walk = list(range(start, len(segments)))
    else:
        walk = list(range(start, -1, -1)) if bound is not None else list(range(len(segments) - 1, -1, -1))
    descending = paging.descending if forward else not paging.descending
    rows: list[Row[Any]] = []
    with ledger.read() as session:
        for index in walk:
            edge = bound if bound is not None and index == start else None
            query = _segment_select(base, paging.sort, segments[index], descending, edge, want - len(rows))
            rows.extend(session.execute(query).all())
            if len(rows) >= want:
                break
    return rows


def _position(sort: str, row: Row[Any]) -> Position:
    return Position(getattr(row, sort), row.seq)


def page(ledger: Ledger, query: EntryQuery, paging: Paging, readable: frozenset[str]) -> Page:
    """One page of entries in ``paging``'s order, with cursors to the next and previous pages."""
    base = select(*LIST_COLUMNS).where(*conditions(query, readable))
    cursor = paging.cursor
    direction: Direction = cursor.direction if cursor else "after"
    bound = cursor.position if cursor else None
    rows = _fetch(ledger, base, paging, direction, bound, paging.limit + 1)
    more = len(rows) > paging.limit
    rows = rows[: paging.limit]
    if direction == "before":
        rows.reverse()
    if not rows:
        return Page(rows, None, None)
    has_next = more if direction == "after" else True
    has_prev = (cursor is not None) if direction == "after" else more

    def make(kind: Direction, row: Row[Any]) -> Cursor:
        return Cursor(paging.sort, paging.descending, kind, _position(paging.sort, row))

    return Page(
        rows,
        make("after", rows[-1]) if has_next else None,
        make("before", rows[0]) if has_prev else None,
    )


def export_rows(ledger: Ledger, query: EntryQuery, paging: Paging, readable: frozenset[str]) -> Iterator[Row[Any]]:
    """Every matching entry in ``paging``'s order, read in keyset batches (one short transaction each)."""
    batch = Paging(paging.sort, paging.descending, EXPORT_BATCH, None)
    while True:
        result = page(ledger, query, batch, readable)
        yield from result.rows
        if result.next_cursor is None:
            return
        batch = Paging(paging.sort, paging.descending, EXPORT_BATCH, result.next_cursor)


# -- one task instance ---------------------------------------------------------------------------------
def task_instance_entries(ledger: Ledger, key: TaskInstanceKey) -> list[Entry]:
    """Every entry of one task instance (all its attempts), oldest first."""
    where = [
        EntryRow.orchestrator == ORCHESTRATOR,
        EntryRow.workflow_id == key.dag_id,
        EntryRow.run_id == key.run_id,
        EntryRow.task_id == key.task_id,
        EntryRow.map_index.is_(None) if key.map_index is None else EntryRow.map_index == key.map_index,
    ]
    with ledger.read() as session:
        rows = session.execute(select(EntryRow).where(*where).order_by(EntryRow.attempt, EntryRow.seq)).scalars()
        return [entry_from_row(row) for row in rows]


# -- totals ----------------------------------------------------------------------------------------------
@dataclass
class Totals:
    """Sums over entries; ``None`` where no entry had a measured value (not zero).

    ``entries`` counts ledger entries, ``attempts`` task attempts: an interruptible attempt leaves one entry
    per segment (``segments`` counts those) and is one attempt, counted at its first segment. Energy,
    emissions and savings add up per entry: every segment's are its own, so nothing is counted twice.
    ``deferred`` counts deferred attempts (an interruptible one on its final entry, the only one that
    says ``deferred``), and ``deferred_seconds`` their waits, once each.
    """

    entries: int = 0
    attempts: int = 0
    segments: int = 0
    measured: int = 0
    deferred: int = 0
    skipped_budget: int = 0
    energy_kwh: float | None = None
    operational_g: float | None = None
    saved_g: float | None = None
    counterfactual_g: float | None = None
    deferred_seconds: float | None = None
    # Replayed entries' waits are a trace's hours, not time anyone waited: counted apart, never in the above.
    replayed: int = 0
    replayed_deferred_seconds: float | None = None

    def add(self, other: Totals) -> None:
        """Accumulate ``other`` into this one."""
        self.entries += other.entries
        self.attempts += other.attempts
        self.segments += other.segments
        self.measured += other.measured
        self.deferred += other.deferred
        self.skipped_budget += other.skipped_budget
        self.replayed += other.replayed
        sums = ("energy_kwh", "operational_g", "saved_g", "counterfactual_g", "deferred_seconds")
        for name in (*sums, "replayed_deferred_seconds"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if theirs is not None:
                setattr(self, name, theirs if mine is None else mine + theirs)

    @property
    def saved_share(self) -> float | None:
        """What deferral saved as a share of what running at once would have emitted."""
        if self.saved_g is None or not self.counterfactual_g or self.counterfactual_g <= 0:
            return None
        return self.saved_g / self.counterfactual_g

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "entries": self.entries,
            "attempts": self.attempts,
            "segments": self.segments,
            "measured": self.measured,
            "deferred": self.deferred,
            "skipped_budget": self.skipped_budget,
            "energy_kwh": self.energy_kwh,
            "operational_g": self.operational_g,
            "saved_g": self.saved_g,
            "counterfactual_g": self.counterfactual_g,
            "saved_share": self.saved_share,
            "deferred_seconds": self.deferred_seconds,
            "replayed": self.replayed,
            "replayed_deferred_seconds": self.replayed_deferred_seconds,
        }


@dataclass(frozen=True)
class DailyTotals:
    """Totals per day of a period in a time zone, and over the whole period."""

    start: datetime
    end: datetime
    zone: ZoneInfo
    days: list[tuple[date, Totals]]
    overall: Totals


def default_period(zone: ZoneInfo, now: datetime | None = None, days: int = 30) -> tuple[datetime, datetime]:
    """The last ``days`` whole days in ``zone``, today included."""
    today = (now or utcnow()).astimezone(zone).date()
    end = datetime.combine(today + timedelta(days=1), datetime.min.time(), zone)
    return datetime.combine(today - timedelta(days=days - 1), datetime.min.time(), zone), end


def _hour_bucket(dialect: str) -> ColumnElement[Any]:
    if dialect == "postgresql":
        # timezone('UTC', timestamptz) is the UTC wall time, so the session's TimeZone cannot shift buckets.
        return func.date_trunc("hour", func.timezone("UTC", EntryRow.recorded_at))
    return func.strftime("%Y-%m-%d %H:00:00", EntryRow.recorded_at)


def _bucket_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)


def daily_totals(
    ledger: Ledger, query: EntryQuery, readable: frozenset[str], start: datetime, end: datetime, zone: ZoneInfo
) -> DailyTotals:
    """Emissions, energy and savings per day in ``zone`` over [start, end).

    The database sums per UTC hour (portable SQL, at most ~9,600 rows for the longest period) and the
    hours are then added into the zone's days here, which handles daylight-saving days exactly.
    """
    bucket = _hour_bucket(ledger.engine.dialect.name).label("bucket")
    where = [*conditions(query, readable), EntryRow.recorded_at >= start, EntryRow.recorded_at < end]
    statement = (
        select(
            bucket,
            func.count(),
            func.count(EntryRow.operational_g),
            func.sum(case((EntryRow.decision == "deferred", 1), else_=0)),
            func.sum(case((EntryRow.decision == "skipped_budget", 1), else_=0)),
            func.sum(EntryRow.energy_kwh),
            func.sum(EntryRow.operational_g),
            func.sum(EntryRow.saved_g),
            func.sum(EntryRow.counterfactual_g),
            func.sum(case((and_(EntryRow.decision == "deferred", ~REPLAYED), EntryRow.deferred_seconds), else_=None)),
            func.sum(case((REPLAYED, 1), else_=0)),
            func.sum(case((and_(EntryRow.decision == "deferred", REPLAYED), EntryRow.deferred_seconds), else_=None)),
            func.sum(case((OPENS_ATTEMPT, 1), else_=0)),
            func.sum(case((SEGMENT_INDEX.is_not(None), 1), else_=0)),
        )
        .where(*where)
        .group_by(bucket)
    )
    by_day: dict[date, Totals] = {}
    day = start.astimezone(zone).date()
    while datetime.combine(day, datetime.min.time(), zone) < end:
        by_day[day] = Totals()
        day += timedelta(days=1)
    with ledger.read() as session:
        for row in session.execute(statement):
            local_day = _bucket_time(row[0]).astimezone(zone).date()
            hour = Totals(
                entries=int(row[1]),
                measured=int(row[2]),
                deferred=int(row[3] or 0),
                skipped_budget=int(row[4] or 0),
                energy_kwh=_float(row[5]),
                operational_g=_float(row[6]),
                saved_g=_float(row[7]),
                counterfactual_g=_float(row[8]),
                deferred_seconds=_float(row[9]),
                replayed=int(row[10] or 0),
                replayed_deferred_seconds=_float(row[11]),
                attempts=int(row[12] or 0),
                segments=int(row[13] or 0),
            )
            by_day.setdefault(local_day, Totals()).add(hour)
    overall = Totals()
    for totals in by_day.values():
        overall.add(totals)
    return DailyTotals(start, end, zone, sorted(by_day.items()), overall)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


# -- budgets ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BudgetView:
    """A budget's standing now, without settling anything, and the tasks it refused this period."""

    status: BudgetStatus
    expired_reservations: int
    blocked_count: int
    blocked: list[Row[Any]]


BLOCKED_SHOWN = 10


def budget_visible(budget: Budget, readable: frozenset[str]) -> bool:
    """A budget for one DAG is shown only to users who may read that DAG."""
    return budget.scope.kind != "workflow" or budget.scope.value in readable


def budget_views(ledger: Ledger, readable: frozenset[str], at: datetime | None = None) -> list[BudgetView]:
    """Every budget the user may see, with spent/reserved/remaining now and the entries it blocked.

    The UI must not write, so it reads without settling expired reservations and reports how many are
    still waiting to be settled.
    """
    at = at or utcnow()
    views = []
    for budget in ledger.budgets.list():
        if not budget_visible(budget, readable):
            continue
        status = ledger.budgets.status(budget.name, at, settle_expired=False)
        with ledger.read() as session:
            blocked_where = [
                visible(readable),
                EntryRow.decision == "skipped_budget",
                EntryRow.budget == budget.name,
                EntryRow.recorded_at >= status.period_start,
                EntryRow.recorded_at < status.period_end,
            ]
            count = int(session.execute(select(func.count()).select_from(EntryRow).where(*blocked_where)).scalar_one())
            blocked = (
                session.execute(
                    select(*LIST_COLUMNS)
                    .where(*blocked_where)
                    .order_by(EntryRow.recorded_at.desc(), EntryRow.seq.desc())
                    .limit(BLOCKED_SHOWN)
                ).all()
                if count
                else []
            )
        views.append(BudgetView(status, status.expired_unsettled, count, list(blocked)))
    return views


def readable_seqs(ledger: Ledger, seqs: Sequence[int], readable: frozenset[str]) -> set[int]:
    """Which of ``seqs`` are entries the user may read (for redacting an integrity report)."""
    if not seqs:
        return set()
    with ledger.read() as session:
        found = session.execute(select(EntryRow.seq).where(EntryRow.seq.in_(list(seqs)), visible(readable)))
        return {int(seq) for seq in found.scalars()}


def any_entries(ledger: Ledger, readable: frozenset[str]) -> bool:
    """True when the user can see at least one entry."""
    with ledger.read() as session:
        return session.execute(select(EntryRow.seq).where(visible(readable)).limit(1)).first() is not None


SCOPE_CHOICES = 200


def scope_choices(ledger: Ledger, readable: frozenset[str], start: datetime, end: datetime) -> dict[str, list[str]]:
    """Teams and tags recorded in ``[start, end)`` on entries the user may read (the Report page's pickers)."""
    where = [visible(readable), EntryRow.recorded_at >= start, EntryRow.recorded_at < end]
    with ledger.read() as session:
        teams = session.execute(
            select(EntryRow.team).where(*where, EntryRow.team.is_not(None)).distinct().limit(SCOPE_CHOICES)
        ).scalars()
        tag_lists = session.execute(
            select(EntryRow.tags).where(*where, EntryRow.tags.is_not(None)).distinct().limit(SCOPE_CHOICES)
        ).scalars()
        tags = {tag for joined in tag_lists for tag in str(joined).split(",") if tag}
        return {"team": sorted(str(team) for team in teams), "tag": sorted(tags)[:SCOPE_CHOICES]}
