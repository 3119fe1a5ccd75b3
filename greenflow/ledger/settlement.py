"""Settling reservations: what an entry is charged after its reservation, and the reservation groups.

An attempt holds its estimate against every budget covering it: one ``budget_reservations`` row per
budget, all sharing a group id (the id of the row of the budget the attempt named, which is the id
callers see). Settling, releasing, heart-beating and expiring act on the whole group. Used by the
store (settlement inside an append), the budgets and verification, so it imports neither.

Each row carries a digest of its content that greenflow rewrites with every change it makes: an edit
made by hand (an amount lowered, a settled hold re-opened) no longer matches, and ``ledger verify``
says so. Without a secret this cannot stop someone who recomputes the digest; the settled effect of a
reservation is in the hash chain (its entry), an open one is an operational hold (see docs/methods.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from greenflow.errors import InvalidInput
from greenflow.intensity.forecast import canonical_json
from greenflow.ledger.entry import Entry, Identity
from greenflow.ledger.models import BudgetRow, ReservationRow

# The columns the digest covers, in a fixed order (everything but the digest itself).
DIGESTED = (
    "reservation_id",
    "group_id",
    "budget",
    "idempotency_key",
    "identity",
    "amount",
    "estimate_source",
    "status",
    "created_at",
    "expires_at",
    "settled_at",
    "entry_id",
    "progress_kwh",
    "progress_g",
)


def reservation_digest(values: Mapping[str, Any]) -> str:
    """SHA-256 of a reservation row's canonical content (values by column name)."""
    content = {name: _canonical(values.get(name)) for name in DIGESTED}
    return hashlib.sha256(("greenflow-reservation:" + canonical_json(content)).encode()).hexdigest()


def row_digest(row: ReservationRow) -> str:
    """The digest a reservation row should carry."""
    return reservation_digest({name: getattr(row, name) for name in DIGESTED})


def seal(row: ReservationRow) -> None:
    """Rewrite the row's digest after greenflow changed it."""
    row.digest = row_digest(row)


def group_of(row: ReservationRow) -> str:
    """The group a row belongs to (rows written before migration 0004 are their own group)."""
    return row.group_id or row.reservation_id


def lock_group(session: Session, reservation_id: str) -> list[ReservationRow]:
    """Lock every row of the reservation's group, in budget-name order (the order reservers lock budgets).

    The first row is the group's primary (the budget the attempt named). Raises :class:`InvalidInput`
    when there is no such reservation.
    """
    rows = (
        session.execute(
            select(ReservationRow)
            .where(or_(ReservationRow.group_id == reservation_id, ReservationRow.reservation_id == reservation_id))
            .order_by(ReservationRow.budget)
            .with_for_update()
        )
        .scalars()
        .all()
    )
    group = [row for row in rows if group_of(row) == reservation_id]
    if not group:
        raise InvalidInput(f"reservation {reservation_id!r} does not exist", fix="settle the id reserve() returned")
    group.sort(key=lambda row: row.reservation_id != reservation_id)  # the primary first
    return group


def close_group(rows: Sequence[ReservationRow], status: str, at: datetime, entry_id: str | None = None) -> None:
    """Mark every open row of a group settled / released / expired at ``at`` (and reseal it)."""
    for row in rows:
        if row.status == "open":
            row.status, row.settled_at, row.entry_id = status, at, entry_id
            seal(row)


def charge_after_reservation(entry: Entry, primary: ReservationRow) -> Entry:
    """Link the entry to its reservation; if that reservation already expired, charge only the difference.

    An expired reservation was settled as an ``interrupted`` entry charged with what was known then.
    The late real entry is the truth, so it is charged with (actual - already charged): the budget's
    total stays right while both records stay in the append-only chain.
    """
    entry = link_to_reservation(entry, primary)
    if primary.status != "expired":
        return entry
    already_g, already_kwh = primary.progress_g or 0.0, primary.progress_kwh or 0.0
    note = dict(entry.extra)
    note["reservation_expired_before_settle"] = {"already_charged_g": already_g, "already_charged_kwh": already_kwh}
    return entry.replace(
        charged_g=None if entry.charged_g is None else entry.charged_g - already_g,
        charged_kwh=None if entry.charged_kwh is None else entry.charged_kwh - already_kwh,
        extra=note,
    )


def link_to_reservation(entry: Entry, primary: ReservationRow) -> Entry:
    """The entry naming its reservation, and the attempt's budget, team and tags where it left them out."""
    _identity, team, tags = split_identity(primary.identity)
    # An entry that forgot the attempt's team or tags would leave the budgets that held for them uncharged.
    return entry.replace(
        budget=entry.budget or primary.budget,
        reservation_id=primary.reservation_id,
        team=entry.team if entry.team is not None else team,
        tags=entry.tags or tags,
    )


def split_identity(values: Mapping[str, Any]) -> tuple[Identity, str | None, tuple[str, ...]]:
    """A reservation row's stored attempt: (identity, team, tags); rows before 0004 have no team or tags."""
    fields = dict(values)
    team, tags = fields.pop("team", None), tuple(fields.pop("tags", None) or ())
    return Identity(**fields), team, tags


def _canonical(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()  # as the database gives it back
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)  # the database gives floats back
    return value


def charge_part(entry: Entry, group: Sequence[ReservationRow]) -> tuple[Entry, dict[str, float]]:
    """Link one part of an attempt (a segment of an interruptible job) to the reservation it draws on.

    The reservation stays open for the parts still to come (:func:`draw_down` lowers it by what this part
    was charged). If it already expired, the ``interrupted`` entry that expired it charged its holds: each
    later part is charged only what exceeds the credit left of that charge, and uses the credit up. Returns
    the linked entry and the credit used per unit (``{"gCO2e": ..., "kWh": ...}``).
    """
    primary = group[0]
    entry = link_to_reservation(entry, primary)
    if primary.status != "expired":
        return entry, {}
    credit = {"gCO2e": primary.progress_g or 0.0, "kWh": primary.progress_kwh or 0.0}
    used = {
        "gCO2e": min(entry.charged_g or 0.0, credit["gCO2e"]),
        "kWh": min(entry.charged_kwh or 0.0, credit["kWh"]),
    }
    note = dict(entry.extra)
    note["reservation_expired_before_settle"] = {"credit_used_g": used["gCO2e"], "credit_used_kwh": used["kWh"]}
    return (
        entry.replace(
            charged_g=None if entry.charged_g is None else entry.charged_g - used["gCO2e"],
            charged_kwh=None if entry.charged_kwh is None else entry.charged_kwh - used["kWh"],
            extra=note,
        ),
        used,
    )


def draw_down(session: Session, group: Sequence[ReservationRow], entry: Entry, used: Mapping[str, float]) -> None:
    """Lower an open group's holds by what one part of its attempt was charged; the group stays open.

    Each row is lowered in its own budget's unit (never below zero), so every budget covering the attempt
    counts that part once: as charged by its entry, no longer as reserved. An expired group (see
    :func:`charge_part`) keeps the credit it has left instead.
    """
    units = dict(
        session.execute(
            select(BudgetRow.name, BudgetRow.unit).where(BudgetRow.name.in_([row.budget for row in group]))
        ).all()
    )
    for row in group:
        if row.status == "open":
            charged = entry.charged_g if units.get(row.budget, "gCO2e") == "gCO2e" else entry.charged_kwh
            if charged:
                row.amount = max(row.amount - charged, 0.0)
                seal(row)
        elif row.status == "expired" and used:
            row.progress_g = max((row.progress_g or 0.0) - used.get("gCO2e", 0.0), 0.0)
            row.progress_kwh = max((row.progress_kwh or 0.0) - used.get("kWh", 0.0), 0.0)
            seal(row)
