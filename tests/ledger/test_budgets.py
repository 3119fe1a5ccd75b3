"""Carbon budgets: reservations, settlement, scopes, expiry, and the 32-process race."""

from __future__ import annotations

import multiprocessing
from datetime import UTC, datetime, timedelta

import pytest

from greenflow.errors import BudgetExceeded, BudgetNotFound, InvalidInput
from greenflow.ledger import Budget, Entry, Identity, Ledger

T0 = datetime(2024, 6, 10, 12, 0, tzinfo=UTC)


def _id(task: str, attempt: int = 1, workflow: str = "train_llm") -> Identity:
    return Identity("airflow", workflow, "run-1", task, attempt)


def test_reserve_then_settle_moves_amount_from_reserved_to_settled(ledger: Ledger) -> None:
    ledger.budgets.set(Budget.parse("gpu", "1kg", "month"))
    reservation = ledger.budgets.reserve("gpu", _id("train"), 400.0, estimate_source="explicit: 400g")
    status = ledger.budgets.status("gpu")
    assert (status.settled, status.reserved, status.remaining) == (0.0, 400.0, 600.0)
    ledger.append(Entry.for_attempt(_id("train"), "ran_now", charged_g=350.0), settle=reservation.reservation_id)
    status = ledger.budgets.status("gpu")
    assert (status.settled, status.reserved, status.remaining) == (350.0, 0.0, 650.0)


def test_reservation_that_does_not_fit_is_refused_and_changes_nothing(ledger: Ledger) -> None:
    ledger.budgets.set(Budget.parse("gpu", "500g", "day"))
    ledger.budgets.reserve("gpu", _id("a"), 300.0, estimate_source="x")
    with pytest.raises(BudgetExceeded, match=r"cannot cover 300 g: 300 g of 500 g"):
        ledger.budgets.reserve("gpu", _id("b"), 300.0, estimate_source="x")
    assert ledger.budgets.status("gpu").open_reservations == 1


def test_spent_budget_refuses_even_a_zero_estimate(ledger: Ledger) -> None:
    ledger.budgets.set(Budget.parse("gpu", "100g", "day"))
    ledger.append(Entry.for_attempt(_id("a"), "ran_now", charged_g=120.0, budget="gpu"))
    assert ledger.budgets.status("gpu").exhausted
    with pytest.raises(BudgetExceeded):
        ledger.budgets.reserve("gpu", _id("b"), 0.0, estimate_source="x")


def test_reserving_twice_for_one_attempt_is_idempotent(ledger: Ledger) -> None:
    ledger.budgets.set(Budget.parse("gpu", "1kg", "month"))
    first = ledger.budgets.reserve("gpu", _id("a"), 100.0, estimate_source="x")
    again = ledger.budgets.reserve("gpu", _id("a"), 100.0, estimate_source="x")
    assert again.reservation_id == first.reservation_id
    assert ledger.budgets.status("gpu").reserved == 100.0


def test_released_reservation_frees_the_amount(ledger: Ledger) -> None:
    ledger.budgets.set(Budget.parse("gpu", "1kg", "month"))
    reservation = ledger.budgets.reserve("gpu", _id("a"), 900.0, estimate_source="x")
    ledger.budgets.release(reservation.reservation_id)
    assert ledger.budgets.status("gpu").spent == 0.0


def test_scopes_count_only_their_entries(ledger: Ledger) -> None:
    ledger.budgets.set(Budget.parse("llm", "1kg", "month", scope="workflow:train_llm"))
    ledger.budgets.set(Budget.parse("gpu-tag", "1kg", "month", scope="tag:gpu"))
    ledger.budgets.set(Budget.parse("vision", "1kg", "month", scope="team:vision"))
    ledger.budgets.set(Budget.parse("energy", "10kWh", "month"))
    ledger.append(Entry.for_attempt(_id("a"), "ran_now", charged_g=100.0, charged_kwh=1.0, tags=("gpu",)))
    ledger.append(
        Entry.for_attempt(
            _id("b", workflow="etl"), "ran_now", charged_g=50.0, charged_kwh=0.5, team="vision", tags=("gpus",)
        )
    )
    assert ledger.budgets.status("llm").settled == 100.0
    assert ledger.budgets.status("gpu-tag").settled == 100.0  # "gpus" is another tag
    assert ledger.budgets.status("vision").settled == 50.0
    assert ledger.budgets.status("energy").settled == 1.5


def test_periods_reset_spending(ledger: Ledger) -> None:
    ledger.budgets.set(Budget.parse("daily", "1kg", "day"))
    ledger.append(Entry.for_attempt(_id("a"), "ran_now", charged_g=100.0, recorded_at=T0))
    assert ledger.budgets.status("daily", at=T0 + timedelta(hours=1)).settled == 100.0
    assert ledger.budgets.status("daily", at=T0 + timedelta(days=1)).settled == 0.0
    ledger.budgets.set(Budget.parse("rolling", "1kg", "rolling:24h"))
    assert ledger.budgets.status("rolling", at=T0 + timedelta(hours=23)).settled == 100.0
    assert ledger.budgets.status("rolling", at=T0 + timedelta(hours=25)).settled == 0.0


def test_dead_workers_reservation_expires_as_an_interrupted_entry(ledger: Ledger) -> None:
    ledger.budgets.set(Budget.parse("gpu", "1kg", "month"))
    now = datetime.now(UTC)
    reservation = ledger.budgets.reserve(
        "gpu", _id("a"), 300.0, estimate_source="history: median of 3", ttl=timedelta(minutes=10), at=now
    )
    ledger.budgets.heartbeat(reservation.reservation_id, extend_to=now + timedelta(minutes=10), progress_g=120.0)
    status = ledger.budgets.status("gpu", at=now + timedelta(minutes=11))  # the worker died
    assert (status.reserved, status.settled) == (0.0, 120.0)
    [interrupted] = ledger.entries()
    assert interrupted.decision == "interrupted"
    assert interrupted.charged_g == 120.0
    assert interrupted.measurement_notes["charged_from"] == "last progress reported"
    assert interrupted.task_id == "a"

    # The worker was only slow: its real entry arrives late and is charged the difference.
    late = ledger.append(Entry.for_attempt(_id("a"), "ran_now", charged_g=200.0), settle=reservation.reservation_id)
    assert late.charged_g == 80.0
    assert ledger.budgets.status("gpu", at=now + timedelta(minutes=12)).settled == 200.0
    assert ledger.verify().ok


def test_expired_reservation_without_progress_charges_the_estimate(ledger: Ledger) -> None:
    ledger.budgets.set(Budget.parse("gpu", "1kg", "month"))
    now = datetime.now(UTC)
    ledger.budgets.reserve("gpu", _id("a"), 300.0, estimate_source="default", ttl=timedelta(seconds=1), at=now)
    [entry] = ledger.budgets.reap_expired(now + timedelta(seconds=2))
    assert entry.charged_g == 300.0
    assert entry.energy_kwh is None  # nothing was measured: None, not 0


def test_unknown_budget_names_the_known_ones(ledger: Ledger) -> None:
    ledger.budgets.set(Budget.parse("gpu", "1kg", "month"))
    with pytest.raises(BudgetNotFound, match=r"'cpu' does not exist \(known: gpu\)"):
        ledger.budgets.status("cpu")


@pytest.mark.parametrize(
    ("limit", "period", "scope", "message"),
    [
        ("5 parsecs", "month", None, "unknown unit 'parsecs'"),
        ("-5kg", "month", None, "must be greater than zero"),
        ("0g", "month", None, "must be greater than zero"),
        ("5kg", "fortnight", None, "period 'fortnight' is unknown"),
        ("5kg", "month", "region:GB", "scope 'region:GB' is unknown"),
    ],
)
def test_bad_budget_definitions(limit: str, period: str, scope: str | None, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        Budget.parse("b", limit, period, scope)


def _race_worker(
    url: str, index: int, barrier: multiprocessing.synchronize.Barrier, results: multiprocessing.Queue
) -> None:  # type: ignore[type-arg]
    ledger = Ledger(url, create_if_empty=False)
    barrier.wait()
    granted = 0
    for attempt in range(1, 4):
        identity = Identity("cli", "race", f"p{index}", "job", attempt)
        try:
            reservation = ledger.budgets.reserve("shared", identity, 70.0, estimate_source="race")
        except BudgetExceeded:
            continue
        granted += 1
        if attempt % 2:  # half settle at what they reserved, half stay open
            ledger.append(Entry.for_attempt(identity, "ran_now", charged_g=70.0), settle=reservation.reservation_id)
    results.put(granted)
    ledger.close()


def test_32_processes_reserving_at_once_never_overspend(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    ledger.budgets.set(Budget.parse("shared", "1kg", "month"))
    ledger.engine.dispose()
    # spawn, not fork: a test worker may have threads (caches, servers) whose locks a fork would copy.
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(32)
    results: multiprocessing.Queue[int] = context.Queue()
    processes = [context.Process(target=_race_worker, args=(ledger_url, i, barrier, results)) for i in range(32)]
    for process in processes:
        process.start()
    granted = sum(results.get(timeout=240) for _ in processes)
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    status = ledger.budgets.status("shared")
    assert status.spent <= 1000.0
    assert granted == 14  # floor(1000 / 70): every reservation that fitted was granted, and no more
    assert status.spent == pytest.approx(14 * 70.0)
    assert ledger.verify().ok


def test_a_read_only_status_reports_expired_reservations_without_settling_them(ledger: Ledger) -> None:
    ledger.budgets.set(Budget.parse("gpu", "1kg", "month"))
    now = datetime.now(UTC)
    ledger.budgets.reserve("gpu", _id("a"), 300.0, estimate_source="x", ttl=timedelta(seconds=1), at=now)
    peek = ledger.budgets.status("gpu", at=now + timedelta(seconds=5), settle_expired=False)
    assert (peek.expired_unsettled, peek.reserved, peek.settled) == (1, 0.0, 0.0)
    assert ledger.count() == 0  # nothing written
    settled = ledger.budgets.status("gpu", at=now + timedelta(seconds=5))
    assert (settled.expired_unsettled, settled.settled) == (0, 300.0)
