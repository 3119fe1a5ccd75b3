"""Carbon budgets: limits on emissions (gCO2e) or energy (kWh) per period, with reservations.

``spent`` = what settled entries in the period were charged + what open reservations hold. A task
reserves its estimate before it starts and settles to the measured value when it has been recorded;
the reservation takes the budget's row lock (``SELECT … FOR UPDATE``; ``BEGIN IMMEDIATE`` on SQLite),
so concurrent reservations can never together push ``spent`` above the limit.

Two things keep a reservation cheap under many workers (issue #2: 16 writers on 2 cores):

- the settled part is a checkpoint (migration 0003: the budget row keeps the period's bounds, the last
  seq summed and the amount) plus the entries after it: entries are append-only and commit in seq
  order, so a reservation sums a handful of rows, not every entry of the month. ``budget set`` clears
  the checkpoint; rolling periods have none (their window moves);
- on PostgreSQL the whole reservation is one call of the ``greenflow_reserve`` SQL function, run as
  its own transaction: the budget's lock is held only inside the server, never while a client process
  waits for a CPU between round trips. It needs the period's bounds, so each process caches budget
  definitions with their revision and the function answers ``stale`` when a ``set`` changed it. Expired
  reservations (which become hash-chained entries) and SQLite take the general path in Python.
"""

from __future__ import annotations

import builtins
import functools
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import ColumnElement, Select, bindparam, func, insert, null, or_, select, text, true
from sqlalchemy.orm import Session

from greenflow.clock import require_aware, utcnow
from greenflow.config import Defaults
from greenflow.errors import BudgetExceeded, BudgetNotFound, InvalidInput
from greenflow.ledger.entry import Entry, Identity
from greenflow.ledger.models import BudgetRow, EntryRow, HeadRow, ReservationRow, UTCDateTime
from greenflow.ledger.periods import Period
from greenflow.units import Quantity, Unit, format_energy, format_mass, parse_positive_quantity

if TYPE_CHECKING:
    from greenflow.ledger.store import Ledger

ScopeKind = Literal["all", "workflow", "tag", "team"]
# Built once: a reservation is on every carbon-aware task's path, and building statements costs CPU.
_LOCK_BUDGET = select(BudgetRow).where(BudgetRow.name == bindparam("name")).with_for_update()
_INSERT_RESERVATION = insert(ReservationRow)
SCOPE_KINDS: tuple[str, ...] = ("all", "workflow", "tag", "team")
# PostgreSQL: a whole reservation in one call (migration 0003), run as its own transaction so that the
# budget's lock is never held across a client round trip. Explicit casts pick the one function signature.
_RESERVE_CALL = (
    "SELECT outcome, settled, reserved, open_count, expired_count, r_id, r_amount, r_source, r_expires, r_status "
    "FROM greenflow_reserve(%(name)s::varchar, %(revision)s::integer, %(start)s::timestamptz, "
    "%(end)s::timestamptz, %(at)s::timestamptz, %(key)s::varchar, %(amount)s::double precision, "
    "%(reservation_id)s::varchar, %(identity)s::json, %(source)s::text, %(expires)s::timestamptz)"
)


@dataclass(frozen=True)
class Scope:
    """Which entries a budget counts: everything, one workflow, one tag or one team."""

    kind: ScopeKind = "all"
    value: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in SCOPE_KINDS:
            raise InvalidInput(
                f"scope {self.kind!r} is unknown", fix="use all, workflow:<id>, tag:<tag> or team:<name>"
            )
        if (self.kind == "all") != (self.value is None) or (self.value is not None and not self.value):
            raise InvalidInput(f"scope {self}", fix="use all, workflow:<id>, tag:<tag> or team:<name>")
        if self.kind == "tag" and self.value and "," in self.value:
            raise InvalidInput(f"tag {self.value!r} contains a comma", fix="use a tag without commas")

    @classmethod
    def parse(cls, text: str | None) -> Scope:
        """``all`` (or nothing), ``workflow:train_llm``, ``tag:gpu``, ``team:vision``."""
        if text is None or text.strip() in ("", "all", "*"):
            return cls()
        kind, sep, value = text.partition(":")
        if not sep or kind.strip() not in SCOPE_KINDS[1:]:
            raise InvalidInput(f"scope {text!r} is unknown", fix="use all, workflow:<id>, tag:<tag> or team:<name>")
        return cls(kind.strip(), value.strip())  # type: ignore[arg-type]

    def __str__(self) -> str:
        return "all" if self.kind == "all" else f"{self.kind}:{self.value}"

    def condition(self) -> ColumnElement[bool]:
        """The SQL condition selecting the entries in scope (parameterised)."""
        if self.kind == "all":
            return true()
        if self.kind == "workflow":
            return EntryRow.workflow_id == self.value
        if self.kind == "team":
            return EntryRow.team == self.value
        return EntryRow.tags.like(f"%,{self.value},%")


@dataclass(frozen=True)
class Budget:
    """A named limit on emissions or energy over a period, for a scope."""

    name: str
    limit: Quantity
    period: Period
    scope: Scope = Scope()

    def __post_init__(self) -> None:
        if not self.name or len(self.name) > 120 or self.name.strip() != self.name:
            raise InvalidInput(f"budget name {self.name!r}", fix="use 1-120 characters without surrounding spaces")
        if self.limit.value <= 0:
            raise InvalidInput(f"limit {self.limit} must be greater than zero", fix="give a positive limit, e.g. 5kg")

    @classmethod
    def parse(
        cls, name: str, limit: str, period: str = "month", scope: str | None = None, timezone: str = "UTC"
    ) -> Budget:
        """Build a budget from the words a user types (``--limit 5kg --period month --scope tag:gpu``)."""
        return cls(
            name=name,
            limit=parse_positive_quantity(limit, name="limit"),
            period=Period.parse(period, timezone),
            scope=Scope.parse(scope),
        )

    @property
    def unit(self) -> Unit:
        """``gCO2e`` or ``kWh``."""
        return self.limit.unit


@dataclass(frozen=True)
class BudgetStatus:
    """Where a budget stands at a moment."""

    budget: Budget
    at: datetime
    period_start: datetime
    period_end: datetime
    settled: float
    reserved: float
    open_reservations: int
    # Open reservations past their expiry that nobody has settled yet (only when read without settling).
    expired_unsettled: int = 0

    @property
    def spent(self) -> float:
        """Settled plus reserved, in the budget's unit."""
        return self.settled + self.reserved

    @property
    def remaining(self) -> float:
        """What is left (never below zero)."""
        return max(self.budget.limit.value - self.spent, 0.0)

    @property
    def exhausted(self) -> bool:
        """True once nothing is left."""
        return self.spent >= self.budget.limit.value

    @property
    def share_spent(self) -> float:
        """Spent / limit (may exceed 1 when measured runs cost more than their estimates)."""
        return self.spent / self.budget.limit.value

    def format(self, amount: float) -> str:
        """An amount in this budget's unit, for people."""
        return format_mass(amount) if self.budget.unit == "gCO2e" else format_energy(amount)

    def to_dict(self) -> dict[str, Any]:
        """The stable ``budget status --json`` shape."""
        return {
            "name": self.budget.name,
            "unit": self.budget.unit,
            "limit": self.budget.limit.value,
            "spent": self.spent,
            "settled": self.settled,
            "reserved": self.reserved,
            "remaining": self.remaining,
            "share_spent": self.share_spent,
            "exhausted": self.exhausted,
            "open_reservations": self.open_reservations,
            "period": str(self.budget.period),
            "period_start": self.period_start.isoformat(),
            "period_end": self.period_end.isoformat(),
            "scope": str(self.budget.scope),
            "at": self.at.isoformat(),
        }


@dataclass(frozen=True)
class Reservation:
    """An amount held against a budget for one attempt until it settles, is released or expires."""

    reservation_id: str
    budget: str
    amount: float
    unit: Unit
    estimate_source: str
    expires_at: datetime
    status: str


class Budgets:
    """The budgets of one ledger."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    # -- definitions -------------------------------------------------------------------------------
    def set(self, budget: Budget) -> Budget:
        """Create or replace a budget definition (spending already recorded is kept)."""
        now = utcnow()
        with self.ledger.write() as session:
            row = session.get(BudgetRow, budget.name, with_for_update=True)
            if row is None:
                row = BudgetRow(name=budget.name, created_at=now, revision=0)
                session.add(row)
            row.scope_kind, row.scope_value = budget.scope.kind, budget.scope.value
            row.period, row.period_hours, row.timezone = budget.period.kind, budget.period.hours, budget.period.timezone
            row.unit, row.limit_value, row.updated_at = budget.unit, budget.limit.value, now
            # A new definition may count other entries: forget the checkpoint, and tell workers that
            # cached the old definition (they compare revisions inside the reservation).
            row.revision += 1
            row.usage_period_start = row.usage_period_end = row.usage_through_seq = row.usage_settled = None
        self.ledger.budget_definitions.pop(budget.name, None)
        return budget

    def get(self, name: str) -> Budget:
        """The budget called ``name``; :class:`BudgetNotFound` names the known ones."""
        with self.ledger.read() as session:
            row = session.get(BudgetRow, name)
            if row is None:
                known = ", ".join(session.execute(select(BudgetRow.name).order_by(BudgetRow.name)).scalars()) or "none"
                raise BudgetNotFound(
                    f"budget {name!r} does not exist (known: {known})",
                    fix=f"create it with `greenflow budget set {name} --limit 5kg --period month`",
                )
            return _budget_from_row(row)

    def list(self) -> builtins.list[Budget]:
        """Every budget, by name."""
        with self.ledger.read() as session:
            return [_budget_from_row(r) for r in session.execute(select(BudgetRow).order_by(BudgetRow.name)).scalars()]

    # -- state -------------------------------------------------------------------------------------
    def status(self, name: str, at: datetime | None = None, *, settle_expired: bool = True) -> BudgetStatus:
        """Limit, settled, reserved and remaining for the period containing ``at`` (default now).

        Expired reservations are settled first (a write) unless ``settle_expired`` is false, as a
        read-only viewer needs: then the status counts them in ``expired_unsettled``.
        """
        at = require_aware(at, "at") if at is not None else utcnow()
        with self.ledger.read() as session:
            row = session.get(BudgetRow, name)
            if row is None:
                self.get(name)  # raises, naming the known budgets
            assert row is not None
            budget = _budget_from_row(row)
            checkpoint = _checkpoint(row, budget, at)
            usage = _usage(session, budget, at, checkpoint=checkpoint)
        if usage.expired and not settle_expired:
            return usage.status(budget, at)
        if usage.expired:
            self.reap_expired(at)
            with self.ledger.read() as session:
                usage = _usage(session, budget, at, checkpoint=checkpoint)
        return usage.status(budget, at)

    def reserve(
        self,
        name: str,
        identity: Identity,
        amount: float,
        *,
        estimate_source: str,
        ttl: timedelta | None = None,
        at: datetime | None = None,
    ) -> Reservation:
        """Hold ``amount`` (in the budget's unit) for an attempt, or raise :class:`BudgetExceeded`.

        Idempotent per attempt: reserving again for the same identity returns the open reservation.
        """
        if amount < 0:
            raise InvalidInput(f"estimate {amount!r} is negative", fix="give an estimate of zero or more")
        at = require_aware(at, "at") if at is not None else utcnow()
        ttl = ttl if ttl is not None else timedelta(seconds=Defaults().reservation_ttl_seconds)
        request = _Request(name, identity, float(amount), estimate_source, at, at + ttl)
        if self.ledger.engine.dialect.name == "postgresql":
            cached = self.ledger.budget_definitions.get(name) or self._definition(name)
            if cached is not None:
                reservation = self._reserve_in_server(request, *cached)
                if reservation is not None:
                    return reservation
        return self._reserve_in_session(request)

    def _definition(self, name: str) -> tuple[Budget, int] | None:
        """Read (without locking) and cache a budget's definition and revision; ``None`` if there is none."""
        with self.ledger.read() as session:
            row = session.get(BudgetRow, name)
            if row is None:
                return None
            cached = self.ledger.budget_definitions[name] = (_budget_from_row(row), row.revision)
        return cached

    def _reserve_in_server(self, request: _Request, budget: Budget, revision: int) -> Reservation | None:
        """PostgreSQL: one call, one transaction; ``None`` when the general path must decide."""
        start, end = budget.period.bounds(request.at)
        reservation_id = str(uuid.uuid4())
        params = {
            "name": request.name,
            "revision": revision,
            "start": start,
            "end": end,
            "at": request.at,
            "key": request.identity.idempotency_key,
            "amount": request.amount,
            "reservation_id": reservation_id,
            "identity": json.dumps(_identity_dict(request.identity)),
            "source": request.estimate_source,
            "expires": request.expires_at,
        }
        with self.ledger.engine.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT")
            outcome, settled, reserved, open_count, expired, *existing = connection.exec_driver_sql(
                _RESERVE_CALL, params
            ).one()
        if outcome == "granted":
            return Reservation(
                reservation_id=reservation_id,
                budget=request.name,
                amount=request.amount,
                unit=budget.unit,
                estimate_source=request.estimate_source,
                expires_at=request.expires_at,
                status="open",
            )
        if outcome == "existing":
            r_id, r_amount, r_source, r_expires, r_status = existing
            # psycopg answers in the session's time zone, whatever the server is set to: make it UTC.
            expires_at = r_expires.astimezone(UTC)
            return Reservation(r_id, request.name, r_amount, budget.unit, r_source, expires_at, r_status)
        if outcome == "refused":
            usage = _Usage(float(settled), float(reserved), int(open_count), int(expired), None, None)
            raise _refusal(request, budget, usage.status(budget, request.at))
        if outcome in ("stale", "missing"):
            self.ledger.budget_definitions.pop(request.name, None)
        return None  # stale or missing definition, or expired reservations to settle as entries first

    def _reserve_in_session(self, request: _Request) -> Reservation:
        """Every backend: lock the budget, settle expired holds, check usage, insert (one transaction)."""
        name, identity, at = request.name, request.identity, request.at
        with self.ledger.write() as session:
            _fast_commit(session)
            # The budget's row lock serialises every reservation against it (BEGIN IMMEDIATE on SQLite).
            row = session.execute(_LOCK_BUDGET, {"name": name}).scalar_one_or_none()
            if row is None:
                self.get(name)  # raises, naming the known budgets
            assert row is not None
            budget = _budget_from_row(row)
            self.ledger.budget_definitions[name] = (budget, row.revision)
            checkpoint = _checkpoint(row, budget, at)
            usage = _usage(session, budget, at, key=identity.idempotency_key, checkpoint=checkpoint)
            if usage.expired:
                self._expire_due(session, budget.name, at)
                usage = _usage(session, budget, at, key=identity.idempotency_key, checkpoint=checkpoint)
            if usage.existing is not None:
                existing = session.get_one(ReservationRow, usage.existing)
                return _reservation_from_row(existing, budget.unit)
            status = usage.status(budget, at)
            if status.exhausted or request.amount > status.remaining:
                raise _refusal(request, budget, status)
            if budget.period.kind != "rolling" and (checkpoint is None or usage.through_seq != checkpoint[0]):
                start, end = budget.period.bounds(at)
                row.usage_period_start, row.usage_period_end = start, end
                row.usage_through_seq, row.usage_settled = usage.through_seq, usage.settled
            reservation = Reservation(
                reservation_id=str(uuid.uuid4()),
                budget=name,
                amount=request.amount,
                unit=budget.unit,
                estimate_source=request.estimate_source,
                expires_at=request.expires_at,
                status="open",
            )
            session.execute(
                _INSERT_RESERVATION,
                {
                    "reservation_id": reservation.reservation_id,
                    "budget": name,
                    "idempotency_key": identity.idempotency_key,
                    "identity": _identity_dict(identity),
                    "amount": request.amount,
                    "estimate_source": request.estimate_source,
                    "status": "open",
                    "created_at": at,
                    "expires_at": reservation.expires_at,
                },
            )
        return reservation

    def heartbeat(
        self,
        reservation_id: str,
        *,
        extend_to: datetime,
        progress_kwh: float | None = None,
        progress_g: float | None = None,
    ) -> None:
        """Keep a long-running attempt's reservation alive and note what it has used so far."""
        extend_to = require_aware(extend_to, "extend_to")
        with self.ledger.write() as session:
            row = session.get(ReservationRow, reservation_id, with_for_update=True)
            if row is None or row.status != "open":
                return
            row.expires_at = max(row.expires_at, extend_to)
            if progress_kwh is not None:
                row.progress_kwh = progress_kwh
            if progress_g is not None:
                row.progress_g = progress_g

    def release(self, reservation_id: str) -> None:
        """Give an open reservation back unused (the attempt did not run and recorded nothing)."""
        with self.ledger.write() as session:
            row = session.get(ReservationRow, reservation_id, with_for_update=True)
            if row is not None and row.status == "open":
                row.status, row.settled_at = "released", utcnow()

    def reap_expired(self, at: datetime | None = None) -> builtins.list[Entry]:
        """Settle reservations whose holder stopped heart-beating as ``interrupted`` entries.

        The entry is charged with what the holder last reported, or with the reserved estimate when it
        reported nothing: a dead worker's spending is counted, not forgotten.
        """
        at = require_aware(at, "at") if at is not None else utcnow()
        with self.ledger.read() as session:
            due = (
                session.execute(
                    select(ReservationRow.reservation_id).where(
                        ReservationRow.status == "open", ReservationRow.expires_at <= at
                    )
                )
                .scalars()
                .all()
            )
        written = []
        for reservation_id in due:
            with self.ledger.write() as session:
                entry = self._expire(session, reservation_id, at)
            if entry is not None:
                written.append(entry)
        return written

    def _expire_due(self, session: Session, budget: str, at: datetime) -> None:
        due = (
            session.execute(
                select(ReservationRow.reservation_id).where(
                    ReservationRow.budget == budget, ReservationRow.status == "open", ReservationRow.expires_at <= at
                )
            )
            .scalars()
            .all()
        )
        for reservation_id in due:
            self._expire(session, reservation_id, at)

    def _expire(self, session: Session, reservation_id: str, at: datetime) -> Entry | None:
        budget_name = session.execute(
            select(ReservationRow.budget).where(ReservationRow.reservation_id == reservation_id)
        ).scalar_one()
        budget_row = session.get(BudgetRow, budget_name, with_for_update=True)
        row = session.get(ReservationRow, reservation_id, with_for_update=True)
        if row is None or row.status != "open" or row.expires_at > at:
            return None  # settled or extended meanwhile
        unit = budget_row.unit if budget_row is not None else "gCO2e"
        reported = row.progress_g if unit == "gCO2e" else row.progress_kwh
        charged = reported if reported is not None else row.amount
        source = "last progress reported" if reported is not None else f"reserved estimate ({row.estimate_source})"
        identity = Identity(**row.identity)
        entry = Entry.for_attempt(
            identity,
            "interrupted",
            # A distinct key: if the attempt's own entry arrives later it must still be recorded.
            idempotency_key=_expiry_key(reservation_id),
            budget=row.budget,
            reservation_id=row.reservation_id,
            energy_kwh=row.progress_kwh,
            operational_g=row.progress_g,
            charged_g=charged if unit == "gCO2e" else row.progress_g,
            charged_kwh=charged if unit == "kWh" else row.progress_kwh,
            estimate_source=row.estimate_source,
            measurement_notes={
                "reason": "the worker stopped heart-beating before recording; its reservation expired",
                "charged_from": source,
            },
            error=f"reservation expired at {row.expires_at.isoformat()} without being settled",
        )
        recorded = self.ledger.append_in(session, entry)
        row.status, row.settled_at, row.entry_id = "expired", at, recorded.entry_id
        # What the interrupted entry charged, so that a late settlement charges only the difference.
        row.progress_g, row.progress_kwh = recorded.charged_g, recorded.charged_kwh
        return recorded


def _fast_commit(session: Session) -> None:
    """Let a reservation's commit skip waiting for the WAL flush on PostgreSQL.

    The budget's row lock is held until commit, so a 4 ms fsync per reservation would cap every
    budget at ~250 reservations/s and queue concurrent workers behind it. Reservations are
    short-lived holds, not the audit record: a database *server* crash can lose the last ~200 ms of
    them (never corrupt them), while entries, which are the record, keep synchronous commits.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL synchronous_commit TO OFF"))


@dataclass(frozen=True)
class _Request:
    name: str
    identity: Identity
    amount: float
    estimate_source: str
    at: datetime
    expires_at: datetime


def _refusal(request: _Request, budget: Budget, status: BudgetStatus) -> BudgetExceeded:
    refusal = BudgetExceeded(
        f"budget {request.name!r} cannot cover {status.format(request.amount)}: {status.format(status.spent)} of "
        f"{status.format(budget.limit.value)} spent or reserved until {status.period_end.isoformat()}",
        fix="wait for the next period, raise the limit with `greenflow budget set`, or lower the estimate",
    )
    refusal.status = status  # type: ignore[attr-defined]
    return refusal


@dataclass(frozen=True)
class _Usage:
    settled: float
    reserved: float
    open_reservations: int
    expired: int  # open reservations past their expiry, not yet reaped
    existing: str | None  # an open reservation for the asking attempt
    through_seq: int | None  # the chain's last seq in the snapshot that was summed

    def status(self, budget: Budget, at: datetime) -> BudgetStatus:
        start, end = budget.period.bounds(at)
        return BudgetStatus(budget, at, start, end, self.settled, self.reserved, self.open_reservations, self.expired)


def _checkpoint(row: BudgetRow, budget: Budget, at: datetime) -> tuple[int, float] | None:
    """(last seq summed, settled through it) when the row's checkpoint is for the period containing ``at``."""
    if budget.period.kind == "rolling" or row.usage_through_seq is None or row.usage_settled is None:
        return None
    start, end = budget.period.bounds(at)
    if (row.usage_period_start, row.usage_period_end) != (start, end):
        return None
    return row.usage_through_seq, row.usage_settled


def _usage(
    session: Session,
    budget: Budget,
    at: datetime,
    key: str | None = None,
    checkpoint: tuple[int, float] | None = None,
) -> _Usage:
    """Everything a reservation decision needs, in one round trip (one snapshot).

    With a ``checkpoint`` only the entries after it are summed: entries are append-only and commit in
    seq order, so the ones up to it cannot have changed.
    """
    start, end = budget.period.bounds(at)
    params: dict[str, Any] = {"start": start, "end": end, "name": budget.name, "at": at, "key": key}
    if budget.scope.kind == "tag":
        params["scope"] = f"%,{budget.scope.value},%"
    elif budget.scope.kind != "all":
        params["scope"] = budget.scope.value
    if checkpoint is not None:
        params["through"] = checkpoint[0]
    statement = _usage_statement(budget.scope.kind, budget.unit, key is not None, checkpoint is not None)
    row = session.execute(statement, params).one()
    settled = float(row[0] or 0.0) + (checkpoint[1] if checkpoint is not None else 0.0)
    return _Usage(settled, float(row[1] or 0.0), int(row[2]), int(row[3]), row[4], row[5])


@functools.cache
def _usage_statement(scope: str, unit: str, with_key: bool, incremental: bool) -> Select[Any]:
    """The usage query for a kind of budget, built once: reservations are the hot path (a few per task)."""
    charged = EntryRow.charged_g if unit == "gCO2e" else EntryRow.charged_kwh
    in_scope: ColumnElement[bool] = {
        "all": true(),
        "workflow": EntryRow.workflow_id == bindparam("scope"),
        "team": EntryRow.team == bindparam("scope"),
        "tag": EntryRow.tags.like(bindparam("scope")),
    }[scope]
    mine = (ReservationRow.budget == bindparam("name"), ReservationRow.status == "open")
    settled = select(func.coalesce(func.sum(charged), 0.0)).where(
        EntryRow.recorded_at >= bindparam("start", type_=UTCDateTime()),
        EntryRow.recorded_at < bindparam("end", type_=UTCDateTime()),
        or_(in_scope, EntryRow.budget == bindparam("name")),
        *((EntryRow.seq > bindparam("through"),) if incremental else ()),
    )
    at = bindparam("at", type_=UTCDateTime())
    live = (*mine, ReservationRow.expires_at > at)
    reserved = select(func.coalesce(func.sum(ReservationRow.amount), 0.0)).where(*live)
    count = select(func.count()).select_from(ReservationRow).where(*live)
    expired = select(func.count()).select_from(ReservationRow).where(*mine, ReservationRow.expires_at <= at)
    existing = (
        select(ReservationRow.reservation_id).where(*mine, ReservationRow.idempotency_key == bindparam("key")).limit(1)
        if with_key
        else select(null())
    )
    head = select(HeadRow.seq).where(HeadRow.id == 1)
    return select(
        settled.scalar_subquery(),
        reserved.scalar_subquery(),
        count.scalar_subquery(),
        expired.scalar_subquery(),
        existing.scalar_subquery(),
        head.scalar_subquery(),
    )


def _budget_from_row(row: BudgetRow) -> Budget:
    return Budget(
        name=row.name,
        limit=Quantity(row.limit_value, "gCO2e" if row.unit == "gCO2e" else "kWh"),
        period=Period(row.period, row.timezone, row.period_hours),  # type: ignore[arg-type]
        scope=Scope(row.scope_kind, row.scope_value),  # type: ignore[arg-type]
    )


def _reservation_from_row(row: ReservationRow, unit: Unit) -> Reservation:
    return Reservation(
        reservation_id=row.reservation_id,
        budget=row.budget,
        amount=row.amount,
        unit=unit,
        estimate_source=row.estimate_source,
        expires_at=row.expires_at,
        status=row.status,
    )


def _identity_dict(identity: Identity) -> dict[str, Any]:
    return {
        "orchestrator": identity.orchestrator,
        "workflow_id": identity.workflow_id,
        "run_id": identity.run_id,
        "task_id": identity.task_id,
        "attempt": identity.attempt,
        "map_index": identity.map_index,
    }


def _expiry_key(reservation_id: str) -> str:
    return hashlib.sha256(f"expired-reservation:{reservation_id}".encode()).hexdigest()
