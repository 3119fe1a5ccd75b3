"""The provenance ledger: append-only, hash-chained entries in any SQLAlchemy database.

Every append locks the chain's tip (``ledger_head``), links the new entry to it and moves it, in one
transaction; a retried write of the same attempt (same idempotency key) returns the entry already
there instead of writing a second one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, Select, func, insert, select, update
from sqlalchemy.orm import Session

from greenflow.clock import require_aware, utcnow
from greenflow.config import ledger_url
from greenflow.errors import InvalidInput
from greenflow.ledger.database import READONLY, check_schema, create_ledger_engine, safe_url, writer_turn
from greenflow.ledger.entry import EVENT_DECISIONS, Entry, Identity, chain_hash
from greenflow.ledger.models import EntryRow, HeadRow, ReservationRow
from greenflow.ledger.rows import entry_from_row, entry_row_values, row_values
from greenflow.ledger.settlement import charge_after_reservation, charge_part, close_group, draw_down, lock_group

if TYPE_CHECKING:
    from greenflow.ledger.anchor import Anchor
    from greenflow.ledger.budgets import Budget, Budgets
    from greenflow.ledger.verify import VerificationReport

__all__ = ["SORTABLE", "EntryFilter", "Ledger", "PastAttempt", "entry_from_row", "entry_row_values", "row_values"]

# Outcomes of an attempt whose work ran to the end (a segment paused for later is "interrupted", no error).
_SUCCEEDED = ("ran_now", "deferred", "degraded")
# How many of a task's latest entries :meth:`Ledger.past_attempts` reads: its segments' entries included,
# enough for the 20 latest attempts of a job run in up to ~25 pieces, and a bound on the query's cost.
HISTORY_ROWS = 500

SORTABLE = ("seq", "recorded_at", "actual_start", "energy_kwh", "operational_g", "saved_g", "deferred_seconds")


@dataclass(frozen=True)
class EntryFilter:
    """Which entries to read; every field is optional and they combine with AND."""

    workflow_id: str | None = None
    run_id: str | None = None
    task_id: str | None = None
    decision: str | None = None
    region: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    # Chained budget events (definitions) are not attempts: left out unless asked for.
    events: bool = False

    def __post_init__(self) -> None:
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, require_aware(value, name))

    def apply(self, query: Select[Any]) -> Select[Any]:
        """Add this filter's conditions to ``query`` (all parameterised)."""
        conditions = [
            getattr(EntryRow, name) == value
            for name in ("workflow_id", "run_id", "task_id", "decision", "region")
            if (value := getattr(self, name)) is not None
        ]
        if self.since is not None:
            conditions.append(EntryRow.recorded_at >= self.since)
        if self.until is not None:
            conditions.append(EntryRow.recorded_at < self.until)
        if not self.events and self.decision not in EVENT_DECISIONS:
            conditions.append(EntryRow.decision.not_in(EVENT_DECISIONS))
        return query.where(*conditions) if conditions else query


@dataclass(frozen=True)
class PastAttempt:
    """One successful past attempt of a task, all its segments together (what estimates learn from).

    ``run_seconds`` is the time its work ran (each segment's ``ended_at - actual_start``, summed), ``None``
    when an end is unknown; ``energy_kwh`` the energy it used, summed likewise, ``None`` when a part was not
    measured; ``segments`` how many entries it took (1 for an attempt in one piece); ``entry_id`` its final
    entry.
    """

    entry_id: str
    run_seconds: float | None
    energy_kwh: float | None
    segments: int = 1


class Ledger:
    """The ledger at a database URL (``GREENFLOW_LEDGER_URL`` or the default SQLite file)."""

    def __init__(self, url: str | None = None, *, engine: Engine | None = None, create_if_empty: bool = True):
        self.engine = engine if engine is not None else create_ledger_engine(ledger_url(url))
        check_schema(self.engine, create_if_empty=create_if_empty)
        # Budget definitions this process has seen, with their revision: on PostgreSQL a reservation
        # computes the period's bounds from it and the database checks the revision is still current.
        self.budget_definitions: dict[str, tuple[Budget, int]] = {}

    def __repr__(self) -> str:
        return f"Ledger({safe_url(str(self.engine.url))!r})"

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    @property
    def budgets(self) -> Budgets:
        """The carbon budgets kept in this ledger."""
        from greenflow.ledger.budgets import Budgets

        return Budgets(self)

    # -- transactions ------------------------------------------------------------------------------
    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite, after a fair OS lock); commits on success."""
        with writer_turn(self.engine), Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only transaction (never takes SQLite's write lock)."""
        with Session(self.engine, expire_on_commit=False) as session:
            session.connection(execution_options={READONLY: True})
            yield session

    # -- writing -----------------------------------------------------------------------------------
    def append(self, entry: Entry, *, settle: str | None = None, partial: bool = False) -> Entry:
        """Append ``entry`` to the chain and return it as recorded (with seq and hashes).

        Idempotent per attempt: if an entry with the same idempotency key exists, that entry is
        returned and nothing is written. ``settle`` names a reservation to settle in the same
        transaction, so that a budget never counts the attempt twice (reserved and charged).
        ``partial=True`` settles only this entry's part of it (one segment of an interruptible job): the
        reservation stays open, lowered by what the entry was charged, for the parts still to come.
        """
        with self.write() as session:
            # Settling does not take the budgets' locks: the entry and the group's new status commit
            # together, and a reserver reads both in one statement (one snapshot), so it sees the amount
            # either as reserved or as charged, never both or neither. Everyone locks budgets (by name),
            # then reservation rows (by budget name), then the head, so no two writers deadlock.
            group = lock_group(session, settle) if settle else None
            recorded = self.append_in(session, entry, reservation=group, partial=partial)
        return recorded

    def append_in(
        self,
        session: Session,
        entry: Entry,
        *,
        reservation: list[ReservationRow] | None = None,
        partial: bool = False,
    ) -> Entry:
        """Append inside an open write transaction (callers hold any budget lock first).

        ``reservation`` is a locked reservation group (primary first) to settle with the entry (only the
        entry's part of it with ``partial``, see :meth:`append`).
        """
        # One round trip: lock the chain's tip and look for an entry already written for this attempt.
        already = select(EntryRow.seq).where(EntryRow.idempotency_key == entry.idempotency_key).scalar_subquery()
        head_seq, head_hash, existing_seq = session.execute(
            select(HeadRow.seq, HeadRow.entry_hash, already).where(HeadRow.id == 1).with_for_update(of=HeadRow)
        ).one()
        if existing_seq is not None:
            recorded = entry_from_row(
                session.execute(select(EntryRow).where(EntryRow.seq == existing_seq)).scalar_one()
            )
        else:
            used: dict[str, float] = {}
            if reservation is not None and partial:
                entry, used = charge_part(entry, reservation)
            elif reservation is not None:
                entry = charge_after_reservation(entry, reservation[0])
            entry = entry.replace(recorded_at=entry.recorded_at or utcnow())
            digest = chain_hash(head_hash, entry.content())
            recorded = entry.replace(seq=head_seq + 1, prev_hash=head_hash, entry_hash=digest)
            session.execute(insert(EntryRow).values(entry_row_values(recorded)))
            session.execute(update(HeadRow).where(HeadRow.id == 1).values(seq=head_seq + 1, entry_hash=digest))
            if reservation is not None and partial:
                draw_down(session, reservation, recorded, used)  # once: a retried write draws nothing again
        if reservation is not None and not partial:
            close_group(reservation, "settled", utcnow(), recorded.entry_id)
        return recorded

    # -- reading -----------------------------------------------------------------------------------
    def get(self, entry_id: str) -> Entry | None:
        """The entry with this id, or ``None``."""
        with self.read() as session:
            row = session.execute(select(EntryRow).where(EntryRow.entry_id == entry_id)).scalar_one_or_none()
            return entry_from_row(row) if row else None

    def for_attempt(self, identity: Identity) -> Entry | None:
        """The entry recorded for this attempt, or ``None``."""
        with self.read() as session:
            row = session.execute(
                select(EntryRow).where(EntryRow.idempotency_key == identity.idempotency_key)
            ).scalar_one_or_none()
            return entry_from_row(row) if row else None

    def entries(
        self,
        where: EntryFilter | None = None,
        *,
        limit: int | None = None,
        offset: int = 0,
        order_by: str = "seq",
        descending: bool = False,
    ) -> list[Entry]:
        """Entries matching ``where``, ordered by ``order_by`` (one of ``SORTABLE``), then seq."""
        if order_by not in SORTABLE:
            raise InvalidInput(f"sort key {order_by!r} is unknown", fix=f"use one of {', '.join(SORTABLE)}")
        if limit is not None and limit < 0:
            raise InvalidInput(f"limit={limit} is negative", fix="give a limit of 0 or more")
        column = getattr(EntryRow, order_by)
        query = (where or EntryFilter()).apply(select(EntryRow))
        # Entries with no value (not measured) sort last either way, on every backend.
        primary = (column.desc() if descending else column.asc()).nulls_last()
        query = query.order_by(primary, EntryRow.seq.desc() if descending else EntryRow.seq.asc())
        if offset:
            query = query.offset(offset)
        if limit is not None:
            query = query.limit(limit)
        with self.read() as session:
            return [entry_from_row(row) for row in session.execute(query).scalars()]

    def count(self, where: EntryFilter | None = None) -> int:
        """How many entries match ``where``."""
        query = (where or EntryFilter()).apply(select(func.count()).select_from(EntryRow))
        with self.read() as session:
            return int(session.execute(query).scalar_one())

    def head(self) -> tuple[int, str]:
        """The chain's tip: (last seq, its hash). Publish it elsewhere to anchor the chain."""
        with self.read() as session:
            row = session.execute(select(HeadRow).where(HeadRow.id == 1)).scalar_one()
            return row.seq, row.entry_hash

    def verify(self, *, anchors: Sequence[Anchor] = (), full: bool = True) -> VerificationReport:
        """Recompute the hash chain; the report names every entry changed, inserted or removed.

        ``anchors`` (signed checkpoints) must still be in the chain; ``full=False`` recomputes only from
        the newest anchor on.
        """
        from greenflow.ledger.verify import verify_chain

        return verify_chain(self, anchors=anchors, full=full)

    def history(self, workflow_id: str, task_id: str, *, limit: int = 10) -> Sequence[Entry]:
        """The last successful measured attempts of a task (used for estimates)."""
        query = (
            select(EntryRow)
            .where(
                EntryRow.workflow_id == workflow_id,
                EntryRow.task_id == task_id,
                EntryRow.decision.in_(("ran_now", "deferred", "degraded")),
                EntryRow.energy_kwh.is_not(None),
                EntryRow.error.is_(None),
            )
            .order_by(EntryRow.seq.desc())
            .limit(limit)
        )
        with self.read() as session:
            return [entry_from_row(row) for row in session.execute(query).scalars()]

    def past_attempts(self, workflow_id: str, task_id: str, *, limit: int = 20) -> list[PastAttempt]:
        """The latest successful attempts of a task, newest first, each with all its segments summed.

        One indexed query, newest first, read only as far as needed: until ``limit`` successful attempts and
        every segment before them are at hand, and never past the task's latest :data:`HISTORY_ROWS` entries
        that may belong to one (a segment paused for later is ``interrupted``). An interruptible attempt is
        its final entry plus the segments before it, followed back through
        ``extra["segment"]["previous_entry"]`` under the same ``link``; one whose first segments fall outside
        the window is left out rather than counted short. Failed and stopped attempts are not history.
        """
        segment = EntryRow.extra["segment"].label("segment")
        query = (
            select(
                EntryRow.entry_id,
                EntryRow.decision,
                EntryRow.error,
                EntryRow.actual_start,
                EntryRow.ended_at,
                EntryRow.energy_kwh,
                segment,
            )
            .where(
                EntryRow.workflow_id == workflow_id,
                EntryRow.task_id == task_id,
                EntryRow.decision.in_((*_SUCCEEDED, "interrupted")),
            )
            # The index's order ((workflow_id, task_id, recorded_at)): no sort, and reading stops early.
            .order_by(EntryRow.recorded_at.desc(), EntryRow.seq.desc())
            .limit(HISTORY_ROWS)
        )
        paused: dict[str, Any] = {}  # segments that did not end their attempt, by entry id
        finals: list[Any] = []
        needed: set[str] = set()  # segments the attempts found so far still lack (older: read on)
        with self.read() as session:
            for row in session.execute(query, execution_options={"yield_per": 64}):
                part = row.segment if isinstance(row.segment, dict) else None
                if row.decision == "interrupted":
                    if row.error is not None or part is None or part.get("final"):
                        continue  # stopped for good: not a success, nor part of one
                    paused[row.entry_id] = row
                    if row.entry_id not in needed:
                        continue  # a part of a failed attempt, or of one past the limit
                    needed.discard(row.entry_id)
                elif row.error is None and len(finals) < limit:
                    finals.append(row)
                else:
                    continue
                if part is not None and part.get("previous_entry"):
                    needed.add(str(part["previous_entry"]))  # the segment before, older: further down
                if len(finals) == limit and not needed:
                    break
        attempts: list[PastAttempt] = []
        for final in finals:
            chain = _segments_of(final, paused)
            if chain is None:
                continue
            seconds = [_run_seconds(row) for row in chain]
            energy = [row.energy_kwh for row in chain]
            attempts.append(
                PastAttempt(
                    entry_id=final.entry_id,
                    run_seconds=None if None in seconds else sum(s for s in seconds if s is not None),
                    energy_kwh=None if None in energy else sum(e for e in energy if e is not None),
                    segments=len(chain),
                )
            )
            if len(attempts) == limit:
                break
        return attempts


def _segments_of(final: Any, paused: dict[str, Any]) -> list[Any] | None:
    """The entries of ``final``'s attempt, final first (``None`` when one of its segments is not at hand)."""
    chain = [final]
    part = final.segment if isinstance(final.segment, dict) else None
    link = part.get("link") if part else None
    while part is not None and part.get("previous_entry"):
        before = paused.pop(str(part["previous_entry"]), None)  # popped: a segment counts once, and no loop
        if before is None or before.segment.get("link") != link:
            return None
        chain.append(before)
        part = before.segment
    return chain


def _run_seconds(row: Any) -> float | None:
    if row.actual_start is None or row.ended_at is None:
        return None
    started: datetime = row.actual_start
    ended: datetime = row.ended_at
    return max((ended - started).total_seconds(), 0.0)
