"""Carbon budgets: limits on emissions (gCO2e) or energy (kWh) per period, with reservations.

``spent`` = what settled entries in the period were charged + what open reservations hold. A budget
counts every entry its scope covers (and every entry naming it), so budgets nest: an organisation's
``all`` budget, a ``team:`` budget and a ``tag:`` budget can all cover one task. A task therefore
reserves its estimate against EVERY budget covering it (the one it names and all the others), in one
transaction that locks those budgets' rows in name order (``SELECT … FOR UPDATE … ORDER BY name``;
``BEGIN IMMEDIATE`` on SQLite), so two reservers never deadlock and concurrent reservations can never
together push any budget's ``spent`` above its limit. It is refused if any of them would go over, and
the refusal names that (binding) budget. Settling, releasing, heart-beating and expiry act on the whole
group (:mod:`greenflow.ledger.settlement`).

Every ``set`` is also a chained entry (decision ``budget_set``), so the definitions are under the hash
chain; ``ledger verify`` checks the table against them (:mod:`greenflow.ledger.budget_audit`).

Two things keep a reservation cheap under many workers (issue #2: 16 writers on 2 cores):

- the settled part is a checkpoint (migration 0003: the budget row keeps the period's bounds, the last
  seq summed and the amount) plus the entries after it: entries are append-only and commit in seq
  order, so a reservation sums a handful of rows, not every entry of the month. ``budget set`` clears
  the checkpoint; rolling periods have none (their window moves);
- on PostgreSQL the whole reservation is one call of the ``greenflow_reserve_group`` SQL function
  (migration 0004), run as its own transaction: the budgets' locks are held only inside the server,
  never while a client process waits for a CPU between round trips. It needs the covering budgets and
  their periods' bounds, so each process caches every budget definition with its revision and the
  function answers ``stale`` when the covering set or a revision changed. Expired reservations (which
  become hash-chained entries) and SQLite take the general path in Python.

``status`` uses the same checkpoint and moves it forward when more than a few hundred entries follow
it, so reading a calendar budget costs the same at 10 k or 1 M entries (rolling periods sum their
window: they have no checkpoint).
"""

from __future__ import annotations

import builtins
import functools
import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    bindparam,
    false,
    func,
    insert,
    null,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.orm import Session

from greenflow.clock import require_aware, utcnow
from greenflow.config import Defaults
from greenflow.errors import BudgetExceeded, BudgetNotFound, InvalidInput
from greenflow.ledger.entry import Entry, Identity
from greenflow.ledger.models import BudgetRow, EntryRow, HeadRow, ReservationRow, UTCDateTime
from greenflow.ledger.periods import Period
from greenflow.ledger.settlement import close_group, group_of, lock_group, reservation_digest, seal, split_identity
from greenflow.options import check_budget_name
from greenflow.units import Quantity, Unit, format_energy, format_mass, parse_positive_quantity

if TYPE_CHECKING:
    from greenflow.ledger.store import Ledger

ScopeKind = Literal["all", "workflow", "tag", "team"]
_INSERT_RESERVATION = insert(ReservationRow)
SCOPE_KINDS: tuple[str, ...] = ("all", "workflow", "tag", "team")
# The chained events' identity: one "workflow" holding every budget's definitions, one run per budget.
EVENT_WORKFLOW = "greenflow:budgets"
# status() moves a calendar budget's checkpoint forward once this many entries follow it, so that a
# read sums a bounded number of rows however long the ledger is.
_STATUS_CHECKPOINT_LAG = 256
# PostgreSQL: a whole reservation in one call (migration 0004), run as its own transaction so that the
# budgets' locks are never held across a client round trip. Explicit casts pick the one signature.
_RESERVE_CALL = (
    "SELECT outcome, binding, settled, reserved, open_count, expired_count, r_id, r_amount, r_source, r_expires, "
    "r_status, r_holds FROM greenflow_reserve_group(%(names)s::varchar[], %(revisions)s::integer[], "
    "%(starts)s::timestamptz[], %(ends)s::timestamptz[], %(amounts)s::double precision[], "
    "%(ids)s::varchar[], %(digests)s::varchar[], %(primary)s::varchar, %(workflow)s::varchar, "
    "%(team)s::varchar, %(tags)s::varchar[], %(at)s::timestamptz, %(key)s::varchar, %(identity)s::json, "
    "%(source)s::text, %(expires)s::timestamptz)"
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

    def covers(self, workflow_id: str, team: str | None, tags: Iterable[str]) -> bool:
        """True when an attempt of ``workflow_id`` by ``team`` with ``tags`` is in this scope."""
        if self.kind == "all":
            return True
        if self.kind == "workflow":
            return self.value == workflow_id
        if self.kind == "team":
            return team is not None and self.value == team
        return self.value in tuple(tags)


@dataclass(frozen=True)
class Budget:
    """A named limit on emissions or energy over a period, for a scope."""

    name: str
    limit: Quantity
    period: Period
    scope: Scope = Scope()

    def __post_init__(self) -> None:
        check_budget_name(self.name, "budget name")  # the rule every entry point's budget= follows
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
    """An amount held for one attempt until it settles, is released or expires.

    ``budget`` is the budget the attempt named and ``amount`` is in its unit; ``holds`` names every
    budget the attempt holds against (the named one and all others covering it).
    """

    reservation_id: str
    budget: str
    amount: float
    unit: Unit
    estimate_source: str
    expires_at: datetime
    status: str
    holds: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Attempt:
    """What decides which budgets cover an attempt: its workflow, team and tags."""

    workflow_id: str
    team: str | None = None
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "tags", tuple(self.tags))


class Budgets:
    """The budgets of one ledger."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    # -- definitions -------------------------------------------------------------------------------
    def set(self, budget: Budget) -> Budget:
        """Create or replace a budget definition (spending already recorded is kept).

        The definition is also appended to the hash chain (a ``budget_set`` entry) in the same
        transaction, so that ``ledger verify`` notices a limit or scope edited outside greenflow.
        """
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
            row.revision = (row.revision or 0) + 1
            row.usage_period_start = row.usage_period_end = row.usage_through_seq = row.usage_settled = None
            session.flush()
            # Lock order budget -> head, as reservers (budgets -> reservations -> head) take it.
            self.ledger.append_in(session, definition_event(budget, row.revision, now))
        self.ledger.budget_definitions.clear()
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

    def covering(self, name: str | None, attempt: Attempt | None = None) -> builtins.list[Budget]:
        """The budgets that also count what an attempt naming ``name`` spends, ``name``'s own first.

        With ``attempt``: every budget whose scope covers it (what a reservation holds against). Without:
        the budgets that cover EVERY attempt ``name`` counts, whatever its workflow, team or tags: those
        scoped ``all`` and those with the same scope (two ``tag:ml`` budgets, say).
        """
        budgets = self.list()
        named = next((b for b in budgets if b.name == name), None) if name is not None else None
        if name is not None and named is None:
            self.get(name)  # raises, naming the known budgets

        def counts(budget: Budget) -> bool:
            if attempt is not None:
                return budget.scope.covers(attempt.workflow_id, attempt.team, attempt.tags)
            return named is not None and (budget.scope.kind == "all" or budget.scope == named.scope)

        return [b for b in budgets if b is named] + [b for b in budgets if b is not named and counts(b)]

    # -- state -------------------------------------------------------------------------------------
    def status(self, name: str, at: datetime | None = None, *, settle_expired: bool = True) -> BudgetStatus:
        """Limit, settled, reserved and remaining for the period containing ``at`` (default now).

        Expired reservations are settled first (a write) unless ``settle_expired`` is false, as a
        read-only viewer needs: then the status counts them in ``expired_unsettled``. A reader that may
        write also moves the budget's settled checkpoint forward when many entries follow it, which
        keeps this read's cost independent of the ledger's length.
        """
        at = require_aware(at, "at") if at is not None else utcnow()
        with self.ledger.read() as session:
            row = session.get(BudgetRow, name)
            if row is None:
                self.get(name)  # raises, naming the known budgets
            assert row is not None
            budget = _budget_from_row(row)
            revision, checkpoint = row.revision, _checkpoint(row, budget, at)
            usage = _usage(session, budget, at, checkpoint=checkpoint)
        if usage.expired and not settle_expired:
            return usage.status(budget, at)
        if usage.expired:
            self.reap_expired(at, budgets=(name,))
            with self.ledger.read() as session:
                usage = _usage(session, budget, at, checkpoint=checkpoint)
        if settle_expired and _lagging(budget, checkpoint, usage):  # a read-only viewer never writes
            self._advance_checkpoint(budget, revision, checkpoint, usage, at)
        return usage.status(budget, at)

    def binding_status(
        self,
        name: str,
        attempt: Attempt | None = None,
        at: datetime | None = None,
        *,
        settle_expired: bool = True,
    ) -> BudgetStatus:
        """The status that decides whether work charged to ``name`` may run now.

        Gates and sensors that watch one budget must also stop when a budget that counts the same work
        is spent (two ``tag:ml`` budgets, an organisation's ``all`` budget, and with ``attempt`` every
        budget covering it): this is the first spent one (the named budget first, then by name), else
        the one with the least left in the named budget's unit, else the named budget's own status.
        """
        at = require_aware(at, "at") if at is not None else utcnow()
        statuses = [self.status(b.name, at, settle_expired=settle_expired) for b in self.covering(name, attempt)]
        spent = [s for s in statuses if s.exhausted]
        if spent:
            return spent[0]
        named = statuses[0]
        same_unit = [s for s in statuses if s.budget.unit == named.budget.unit]
        return min(same_unit, key=lambda s: s.remaining)  # min keeps the first (the named one) on ties

    def _advance_checkpoint(
        self, budget: Budget, revision: int, checkpoint: tuple[int, float] | None, usage: _Usage, at: datetime
    ) -> None:
        """Store the settled total a read just computed, unless someone moved the checkpoint meanwhile.

        No budget lock: the value is right for the snapshot it was summed in (entries commit in seq
        order), and the conditional update only lands if the row still holds the checkpoint (and the
        definition) the sum started from.
        """
        start, end = budget.period.bounds(at)
        old_seq = checkpoint[0] if checkpoint is not None else None
        unchanged = BudgetRow.usage_through_seq.is_(None) if old_seq is None else BudgetRow.usage_through_seq == old_seq
        with self.ledger.write() as session:
            _fast_commit(session)
            session.execute(
                update(BudgetRow)
                .where(
                    BudgetRow.name == budget.name,
                    BudgetRow.revision == revision,
                    or_(unchanged, BudgetRow.usage_period_start != start, BudgetRow.usage_period_start.is_(None)),
                )
                .values(
                    usage_period_start=start,
                    usage_period_end=end,
                    usage_through_seq=usage.through_seq,
                    usage_settled=usage.settled,
                )
            )

    def reserve(
        self,
        name: str,
        identity: Identity,
        amount: float,
        *,
        estimate_source: str,
        ttl: timedelta | None = None,
        at: datetime | None = None,
        team: str | None = None,
        tags: Sequence[str] = (),
        amounts: Mapping[str, float] | None = None,
    ) -> Reservation:
        """Hold ``amount`` (in the named budget's unit) for an attempt, or raise :class:`BudgetExceeded`.

        The attempt holds against every budget covering it (its workflow, ``team`` and ``tags``), all
        or none: the refusal names the budget that could not cover it. ``amounts`` gives the estimate
        per unit (``{"gCO2e": …, "kWh": …}``) for covering budgets that count the other unit.
        Idempotent per attempt: reserving again for the same identity returns the open reservation.
        """
        at = require_aware(at, "at") if at is not None else utcnow()
        ttl = ttl if ttl is not None else timedelta(seconds=Defaults().reservation_ttl_seconds)
        given = {unit: _estimate(value) for unit, value in (amounts or {}).items()}
        request = _Request(name, identity, _estimate(amount), estimate_source, at, at + ttl, team, tuple(tags), given)
        if self.ledger.engine.dialect.name == "postgresql":
            for _try in range(2):
                definitions = self.ledger.budget_definitions or self._definitions()
                if name not in definitions:
                    break  # the general path names the known budgets
                reservation = self._reserve_in_server(request, _group(request, definitions))
                if reservation is not None:
                    return reservation
                if self.ledger.budget_definitions:
                    break  # not stale: expired holds to settle as entries first
        return self._reserve_in_session(request)

    def _definitions(self) -> dict[str, tuple[Budget, int]]:
        """Read (without locking) and cache every budget's definition and revision."""
        with self.ledger.read() as session:
            rows = session.execute(select(BudgetRow)).scalars().all()
            cached = {row.name: (_budget_from_row(row), row.revision) for row in rows}
        self.ledger.budget_definitions.clear()
        self.ledger.budget_definitions.update(cached)
        return cached

    def _reserve_in_server(self, request: _Request, group: builtins.list[tuple[Budget, int]]) -> Reservation | None:
        """PostgreSQL: one call, one transaction; ``None`` when the general path must decide."""
        named = next(budget for budget, _revision in group if budget.name == request.name)
        amounts = [request.amount_for(budget, named) for budget, _revision in group]
        bounds = [budget.period.bounds(request.at) for budget, _revision in group]
        group_id = str(uuid.uuid4())
        ids = [group_id if budget.name == request.name else str(uuid.uuid4()) for budget, _revision in group]
        identity = _identity_dict(request.identity, request.team, request.tags)
        digests = [
            reservation_digest(request.row(rid, group_id, budget.name, value, identity))
            for rid, (budget, _revision), value in zip(ids, group, amounts, strict=True)
        ]
        params = {
            "names": [budget.name for budget, _revision in group],
            "revisions": [revision for _budget, revision in group],
            "starts": [start for start, _end in bounds],
            "ends": [end for _start, end in bounds],
            "amounts": amounts,
            "ids": ids,
            "digests": digests,
            "primary": request.name,
            "workflow": request.identity.workflow_id,
            "team": request.team,
            "tags": list(request.tags),
            "at": request.at,
            "key": request.identity.idempotency_key,
            "identity": json.dumps(identity),
            "source": request.estimate_source,
            "expires": request.expires_at,
        }
        with self.ledger.engine.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT")
            outcome, binding, settled, reserved, open_count, expired, *existing = connection.exec_driver_sql(
                _RESERVE_CALL, params
            ).one()
        holds = tuple(budget.name for budget, _revision in group)
        if outcome == "granted":
            return Reservation(
                group_id,
                request.name,
                request.amount_for(named, named),
                named.unit,
                request.estimate_source,
                request.expires_at,
                "open",
                holds,
            )
        if outcome == "existing":
            r_id, r_amount, r_source, r_expires, r_status, r_holds = existing
            # psycopg answers in the session's time zone, whatever the server is set to: make it UTC.
            expires_at = r_expires.astimezone(UTC)
            return Reservation(
                r_id, request.name, r_amount, named.unit, r_source, expires_at, r_status, tuple(r_holds or ())
            )
        if outcome == "refused":
            budget = next(b for b, _revision in group if b.name == binding)
            usage = _Usage(float(settled), float(reserved), int(open_count), int(expired), None, None)
            raise _refusal(request, budget, named, usage.status(budget, request.at))
        if outcome in ("stale", "missing"):
            self.ledger.budget_definitions.clear()
        return None  # stale or missing definitions, or expired reservations to settle as entries first

    def _reserve_in_session(self, request: _Request) -> Reservation:
        """Every backend: lock the covering budgets (by name), settle expired holds, check each, insert."""
        name, identity, at = request.name, request.identity, request.at
        with self.ledger.write() as session:
            _fast_commit(session)
            # The row locks serialise every reservation against each budget (BEGIN IMMEDIATE on SQLite);
            # taken in name order by everyone, so two reservers with overlapping groups cannot deadlock.
            rows = session.execute(_covering_statement(request)).scalars().all()
            if name not in {row.name for row in rows}:
                self.get(name)  # raises, naming the known budgets
            budgets = [_budget_from_row(row) for row in rows]
            named = next(budget for budget in budgets if budget.name == name)
            checkpoints = [_checkpoint(row, budget, at) for row, budget in zip(rows, budgets, strict=True)]
            amounts = [request.amount_for(budget, named) for budget in budgets]

            def measure() -> builtins.list[_Usage]:
                return [
                    _usage(
                        session,
                        budget,
                        at,
                        key=identity.idempotency_key if budget.name == name else None,
                        checkpoint=checkpoint,
                    )
                    for budget, checkpoint in zip(budgets, checkpoints, strict=True)
                ]

            usages = measure()
            if any(usage.expired for usage in usages):
                self._expire_due(session, [budget.name for budget in budgets], at)
                usages = measure()
            mine = usages[[budget.name for budget in budgets].index(name)]
            if mine.existing is not None:
                group = lock_group(session, mine.existing)
                return _reservation_from_rows(group, named.unit)
            refusal: BudgetExceeded | None = None
            for row, budget, checkpoint, usage, value in zip(rows, budgets, checkpoints, usages, amounts, strict=True):
                status = usage.status(budget, at)
                if refusal is None and (status.exhausted or value > status.remaining):
                    refusal = _refusal(request, budget, named, status)
                if budget.period.kind != "rolling" and (checkpoint is None or usage.through_seq != checkpoint[0]):
                    start, end = budget.period.bounds(at)
                    row.usage_period_start, row.usage_period_end = start, end
                    row.usage_through_seq, row.usage_settled = usage.through_seq, usage.settled
            if refusal is not None:
                raise refusal  # rolls the transaction back: a refusal changes nothing
            group_id = str(uuid.uuid4())
            identity_values = _identity_dict(identity, request.team, request.tags)
            values = []
            for budget, value in zip(budgets, amounts, strict=True):
                rid = group_id if budget.name == name else str(uuid.uuid4())
                row_values = request.row(rid, group_id, budget.name, value, identity_values)
                values.append({**row_values, "digest": reservation_digest(row_values)})
            session.execute(_INSERT_RESERVATION, values)
        return Reservation(
            group_id,
            name,
            request.amount_for(named, named),
            named.unit,
            request.estimate_source,
            request.expires_at,
            "open",
            tuple(budget.name for budget in budgets),
        )

    def heartbeat(
        self,
        reservation_id: str,
        *,
        extend_to: datetime,
        progress_kwh: float | None = None,
        progress_g: float | None = None,
    ) -> None:
        """Keep a long-running attempt's reservations alive and note what it has used so far."""
        extend_to = require_aware(extend_to, "extend_to")
        with self.ledger.write() as session:
            try:
                group = lock_group(session, reservation_id)
            except InvalidInput:
                return
            for row in group:
                if row.status != "open":
                    continue
                row.expires_at = max(row.expires_at, extend_to)
                if progress_kwh is not None:
                    row.progress_kwh = progress_kwh
                if progress_g is not None:
                    row.progress_g = progress_g
                seal(row)

    def release(self, reservation_id: str) -> None:
        """Give an open reservation back unused (the attempt did not run and recorded nothing)."""
        with self.ledger.write() as session:
            try:
                group = lock_group(session, reservation_id)
            except InvalidInput:
                return
            close_group(group, "released", utcnow())

    def reap_expired(self, at: datetime | None = None, *, budgets: Sequence[str] | None = None) -> builtins.list[Entry]:
        """Settle reservations whose holder stopped heart-beating as ``interrupted`` entries.

        The entry is charged with what the holder last reported, or with the reserved estimate when it
        reported nothing: a dead worker's spending is counted, not forgotten. ``budgets`` limits the
        reaping to groups holding against those budgets.
        """
        at = require_aware(at, "at") if at is not None else utcnow()
        with self.ledger.read() as session:
            due = _due_groups(session, at, budgets)
        written = []
        for group_id in due:
            with self.ledger.write() as session:
                entry = self._expire(session, group_id, at)
            if entry is not None:
                written.append(entry)
        return written

    def _expire_due(self, session: Session, budgets: Sequence[str], at: datetime) -> None:
        for group_id in _due_groups(session, at, budgets):
            self._expire(session, group_id, at)

    def _expire(self, session: Session, group_id: str, at: datetime) -> Entry | None:
        # No budget lock: like a settlement, the entry and the group's new status commit together.
        group = lock_group(session, group_id)
        primary = group[0]
        if primary.status != "open" or primary.expires_at > at:
            return None  # settled or extended meanwhile
        units = dict(
            session.execute(
                select(BudgetRow.name, BudgetRow.unit).where(BudgetRow.name.in_([row.budget for row in group]))
            ).all()
        )
        held = {units.get(row.budget, "gCO2e"): row.amount for row in reversed(group)}  # the primary's wins
        charged_g = primary.progress_g if primary.progress_g is not None else held.get("gCO2e")
        charged_kwh = primary.progress_kwh if primary.progress_kwh is not None else held.get("kWh")
        unit = units.get(primary.budget, "gCO2e")
        reported = primary.progress_g if unit == "gCO2e" else primary.progress_kwh
        source = "last progress reported" if reported is not None else f"reserved estimate ({primary.estimate_source})"
        identity, team, tags = split_identity(primary.identity)
        entry = Entry.for_attempt(
            identity,
            "interrupted",
            # The attempt's team and tags, so that every budget that held for it counts the charge.
            team=team,
            tags=tags,
            # A distinct key: if the attempt's own entry arrives later it must still be recorded.
            idempotency_key=_expiry_key(primary.reservation_id),
            budget=primary.budget,
            reservation_id=primary.reservation_id,
            energy_kwh=primary.progress_kwh,
            operational_g=primary.progress_g,
            charged_g=charged_g,
            charged_kwh=charged_kwh,
            estimate_source=primary.estimate_source,
            measurement_notes={
                "reason": "the worker stopped heart-beating before recording; its reservation expired",
                "charged_from": source,
            },
            error=f"reservation expired at {primary.expires_at.isoformat()} without being settled",
        )
        recorded = self.ledger.append_in(session, entry)
        for row in group:
            # What the interrupted entry charged, so that a late settlement charges only the difference.
            row.progress_g, row.progress_kwh = recorded.charged_g, recorded.charged_kwh
        close_group(group, "expired", at, recorded.entry_id)
        return recorded


def definition(budget: Budget, revision: int) -> dict[str, Any]:
    """A budget's definition as its chained event holds it (and ``budget_audit`` compares)."""
    return {
        "name": budget.name,
        "scope_kind": budget.scope.kind,
        "scope_value": budget.scope.value,
        "period": budget.period.kind,
        "period_hours": budget.period.hours,
        "timezone": budget.period.timezone,
        "unit": budget.unit,
        "limit_value": budget.limit.value,
        "revision": revision,
    }


def definition_event(budget: Budget, revision: int, at: datetime) -> Entry:
    """The chained entry recording that ``budget`` was set (revision ``revision``) at ``at``."""
    return Entry(
        orchestrator="cli",
        workflow_id=EVENT_WORKFLOW,
        run_id=budget.name,
        task_id="set",
        attempt=revision,
        decision="budget_set",
        idempotency_key=hashlib.sha256(f"budget-event:{budget.name}:{uuid.uuid4()}".encode()).hexdigest(),
        recorded_at=at,
        extra={"budget": definition(budget, revision)},
    )


def _fast_commit(session: Session) -> None:
    """Let a reservation's commit skip waiting for the WAL flush on PostgreSQL.

    The budgets' row locks are held until commit, so a 4 ms fsync per reservation would cap every
    budget at ~250 reservations/s and queue concurrent workers behind it. Reservations are
    short-lived holds, not the audit record: a database *server* crash can lose the last ~200 ms of
    them (never corrupt them), while entries, which are the record, keep synchronous commits.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL synchronous_commit TO OFF"))


def _estimate(amount: float) -> float:
    value = float(amount)
    if not value >= 0 or value == float("inf"):
        raise InvalidInput(
            f"estimate {amount!r} is negative or not a finite number", fix="give an estimate of zero or more"
        )
    return value


@dataclass(frozen=True)
class _Request:
    name: str
    identity: Identity
    amount: float
    estimate_source: str
    at: datetime
    expires_at: datetime
    team: str | None = None
    tags: tuple[str, ...] = ()
    amounts: Mapping[str, float] = field(default_factory=dict)

    def amount_for(self, budget: Budget, named: Budget) -> float:
        """What this attempt holds against ``budget``, in its unit."""
        if budget.unit == named.unit:
            return self.amount
        if budget.unit in self.amounts:
            return self.amounts[budget.unit]
        raise InvalidInput(
            f"budget {budget.name!r} (which covers this attempt) counts {budget.unit} but the estimate is in "
            f"{named.unit} only",
            fix=f"give the estimate in {budget.unit} too (amounts={{'{budget.unit}': …}})",
        )

    def row(self, rid: str, group_id: str, budget: str, amount: float, identity: dict[str, Any]) -> dict[str, Any]:
        """The column values of this request's reservation row against ``budget``."""
        return {
            "reservation_id": rid,
            "group_id": group_id,
            "budget": budget,
            "idempotency_key": self.identity.idempotency_key,
            "identity": identity,
            "amount": amount,
            "estimate_source": self.estimate_source,
            "status": "open",
            "created_at": self.at,
            "expires_at": self.expires_at,
            "settled_at": None,
            "entry_id": None,
            "progress_kwh": None,
            "progress_g": None,
        }


def _group(request: _Request, definitions: Mapping[str, tuple[Budget, int]]) -> builtins.list[tuple[Budget, int]]:
    """The cached budgets covering a request, in name order (the server checks it is still the set)."""
    return sorted(
        (
            (budget, revision)
            for budget, revision in definitions.values()
            if budget.name == request.name
            or budget.scope.covers(request.identity.workflow_id, request.team, request.tags)
        ),
        key=lambda pair: pair[0].name,
    )


def _covering_statement(request: _Request) -> Select[BudgetRow]:
    """Lock the named budget and every budget whose scope covers the request, in name order."""
    return (
        select(BudgetRow)
        .where(
            or_(
                BudgetRow.name == request.name,
                BudgetRow.scope_kind == "all",
                and_(BudgetRow.scope_kind == "workflow", BudgetRow.scope_value == request.identity.workflow_id),
                and_(BudgetRow.scope_kind == "team", BudgetRow.scope_value == request.team)
                if request.team is not None
                else false(),
                and_(BudgetRow.scope_kind == "tag", BudgetRow.scope_value.in_(request.tags))
                if request.tags
                else false(),
            )
        )
        .order_by(BudgetRow.name)
        .with_for_update()
    )


def _due_groups(session: Session, at: datetime, budgets: Sequence[str] | None) -> builtins.list[str]:
    """The groups with an open reservation past its expiry (against ``budgets`` when given), sorted."""
    query = select(ReservationRow).where(ReservationRow.status == "open", ReservationRow.expires_at <= at)
    if budgets is not None:
        query = query.where(ReservationRow.budget.in_(list(budgets)))
    return sorted({group_of(row) for row in session.execute(query).scalars()})


def _refusal(request: _Request, budget: Budget, named: Budget, status: BudgetStatus) -> BudgetExceeded:
    amount = request.amount_for(budget, named)
    wider = "" if budget.name == named.name else f" (it covers this attempt too, which named {named.name!r})"
    refusal = BudgetExceeded(
        f"budget {budget.name!r}{wider} cannot cover {status.format(amount)}: {status.format(status.spent)} of "
        f"{status.format(budget.limit.value)} spent or reserved until {status.period_end.isoformat()}",
        fix="wait for the next period, raise the limit with `greenflow budget set`, or lower the estimate",
    )
    refusal.status = status  # type: ignore[attr-defined]
    return refusal


def _lagging(budget: Budget, checkpoint: tuple[int, float] | None, usage: _Usage) -> bool:
    """True when a read should store the total it summed (a calendar budget far from its checkpoint)."""
    if budget.period.kind == "rolling" or usage.through_seq is None:
        return False
    if checkpoint is None:
        return True
    return usage.through_seq - checkpoint[0] > _STATUS_CHECKPOINT_LAG


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


def _reservation_from_rows(group: Sequence[ReservationRow], unit: Unit) -> Reservation:
    primary = group[0]
    return Reservation(
        reservation_id=primary.reservation_id,
        budget=primary.budget,
        amount=primary.amount,
        unit=unit,
        estimate_source=primary.estimate_source,
        expires_at=primary.expires_at,
        status=primary.status,
        holds=tuple(sorted(row.budget for row in group)),
    )


def _identity_dict(identity: Identity, team: str | None, tags: Sequence[str]) -> dict[str, Any]:
    """The attempt as a reservation row keeps it: its identity, and the team and tags budgets cover by."""
    return {
        "orchestrator": identity.orchestrator,
        "workflow_id": identity.workflow_id,
        "run_id": identity.run_id,
        "task_id": identity.task_id,
        "attempt": identity.attempt,
        "map_index": identity.map_index,
        "team": team,
        "tags": list(tags),
    }


def _expiry_key(reservation_id: str) -> str:
    return hashlib.sha256(f"expired-reservation:{reservation_id}".encode()).hexdigest()
