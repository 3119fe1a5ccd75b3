"""Settling a reservation part by part (one segment of an interruptible job at a time): each part moves its
charge from reserved to settled in every covering budget, once, and the last part settles the rest."""

from __future__ import annotations

from datetime import timedelta

import pytest

from greenflow.clock import utcnow
from greenflow.ledger import Budget, Identity, Ledger
from greenflow.ledger.entry import Entry

ATTEMPT = Identity("cli", "train_llm", "run-1", "train", 1)


def _part(index: int, grams: float, kwh: float) -> Entry:
    key = f"{index:064x}"  # a segment's own key (the lifecycle derives it from the attempt's)
    return Entry.for_attempt(ATTEMPT, "interrupted", idempotency_key=key, charged_g=grams, charged_kwh=kwh)


def test_each_part_moves_its_charge_from_reserved_to_settled_in_every_budget_once(ledger: Ledger) -> None:
    ledger.budgets.set(Budget.parse("gpu", "1kg", "month"))
    ledger.budgets.set(Budget.parse("power", "10kWh", "month"))  # covers the attempt too, in kWh
    held = ledger.budgets.reserve("gpu", ATTEMPT, 50.0, estimate_source="test", amounts={"kWh": 0.5})

    first = ledger.append(_part(0, 12.0, 0.1), settle=held.reservation_id, partial=True)
    again = ledger.append(_part(0, 12.0, 0.1), settle=held.reservation_id, partial=True)  # a retried write

    assert again.entry_id == first.entry_id and first.reservation_id == held.reservation_id
    gpu, power = ledger.budgets.status("gpu"), ledger.budgets.status("power")
    assert (gpu.settled, gpu.reserved, gpu.open_reservations) == (pytest.approx(12.0), pytest.approx(38.0), 1)
    assert (power.settled, power.reserved) == (pytest.approx(0.1), pytest.approx(0.4))

    last = Entry.for_attempt(ATTEMPT, "ran_now", charged_g=20.0, charged_kwh=0.2)
    ledger.append(last, settle=held.reservation_id)

    gpu, power = ledger.budgets.status("gpu"), ledger.budgets.status("power")
    assert (gpu.settled, gpu.reserved, gpu.open_reservations) == (pytest.approx(32.0), 0.0, 0)
    assert (power.settled, power.reserved) == (pytest.approx(0.3), 0.0)
    assert ledger.verify().ok  # the lowered holds were resealed: no "changed outside greenflow"


def test_a_part_never_lowers_a_hold_below_zero(ledger: Ledger) -> None:
    ledger.budgets.set(Budget.parse("gpu", "1kg", "month"))
    held = ledger.budgets.reserve("gpu", ATTEMPT, 10.0, estimate_source="test")

    ledger.append(_part(0, 25.0, 0.2), settle=held.reservation_id, partial=True)  # more than estimated

    status = ledger.budgets.status("gpu")
    assert (status.settled, status.reserved, status.open_reservations) == (pytest.approx(25.0), 0.0, 1)


def test_parts_after_the_reservation_expired_are_charged_only_beyond_the_expirys_charge(ledger: Ledger) -> None:
    ledger.budgets.set(Budget.parse("gpu", "1kg", "month"))
    start = utcnow()
    held = ledger.budgets.reserve("gpu", ATTEMPT, 30.0, estimate_source="test", ttl=timedelta(minutes=1), at=start)
    (expired,) = ledger.budgets.reap_expired(start + timedelta(minutes=2))  # the worker looked dead
    assert expired.charged_g == 30.0

    second = ledger.append(_part(1, 20.0, 0.1), settle=held.reservation_id, partial=True)
    third = ledger.append(_part(2, 25.0, 0.1), settle=held.reservation_id, partial=True)

    # 30 g were charged at expiry: the parts use that credit up first (20 g, then 10 of 25), then pay.
    assert (second.charged_g, third.charged_g) == (pytest.approx(0.0), pytest.approx(15.0))
    assert ledger.budgets.status("gpu").settled == pytest.approx(20.0 + 25.0)
