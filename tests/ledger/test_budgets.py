"""Carbon budgets: reservations, settlement, scopes, expiry, and the 32-process race."""

from __future__ import annotations

import multiprocessing
import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

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
    assert again.expires_at == first.expires_at and again.expires_at.utcoffset() == timedelta(0)
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


# -- the settled checkpoint and the cached definition ---------------------------------------------


def _recomputed(ledger: Ledger, name: str, at: datetime) -> tuple[float, float]:
    """(settled, reserved) summed from scratch with plain SQL, independently of greenflow's queries."""
    budget = ledger.budgets.get(name)
    start, end = budget.period.bounds(at)
    scope = {
        "all": "1 = 1",
        "workflow": "workflow_id = :value",
        "team": "team = :value",
        "tag": "tags LIKE '%,' || :value || ',%'",
    }[budget.scope.kind]
    params = {"name": name, "value": budget.scope.value}
    with ledger.engine.connect() as connection:
        rows = connection.execute(
            text(f"SELECT recorded_at, charged_g FROM ledger_entries WHERE ({scope} OR budget = :name)"), params
        ).all()
        held = connection.execute(
            text("SELECT expires_at, amount FROM budget_reservations WHERE budget = :name AND status = 'open'"),
            params,
        ).all()
    settled = sum(g or 0.0 for when, g in rows if start <= _aware(when) < end)
    reserved = sum(amount for expires, amount in held if _aware(expires) > at)
    return settled, reserved


def _aware(value: datetime | str) -> datetime:
    value = datetime.fromisoformat(value) if isinstance(value, str) else value  # SQLite returns text
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _mix_worker(
    url: str, index: int, barrier: multiprocessing.synchronize.Barrier, results: multiprocessing.Queue
) -> None:  # type: ignore[type-arg]
    rng = random.Random(index)
    ledger = Ledger(url, create_if_empty=False)
    barrier.wait()
    refused = 0
    for op in range(30):
        now = datetime.now(UTC)
        if rng.random() < 0.15:  # spending that never reserved (an un-budgeted task), possibly back-dated
            when = now - timedelta(seconds=rng.uniform(0, 3600)) if now.day > 1 else now
            identity = Identity("cli", "other", f"p{index}", f"plain{op}")
            ledger.append(Entry.for_attempt(identity, "ran_now", charged_g=rng.uniform(0, 5), recorded_at=when))
            continue
        name = rng.choice(("mix", "mix", "all"))
        # Attempts held against "all" belong to another workflow: "mix" (scope workflow:mix) must not pay for them.
        identity = Identity("cli", "mix" if name == "mix" else "wide", f"p{index}", f"job{op}")
        amount = rng.uniform(5, 40)
        dies = rng.random() < 0.15  # a worker that dies: its short reservation expires, others reap it
        try:
            reservation = ledger.budgets.reserve(
                name, identity, amount, estimate_source="mix", ttl=timedelta(seconds=0.2 if dies else 600)
            )
        except BudgetExceeded:
            refused += 1
            continue
        if dies:
            if rng.random() < 0.5:
                ledger.budgets.heartbeat(
                    reservation.reservation_id, extend_to=now, progress_g=amount * rng.uniform(0, 1)
                )
            continue
        fate = rng.random()
        if fate < 0.2:
            ledger.budgets.release(reservation.reservation_id)
        elif fate < 0.85:  # settles at or under its estimate, so the budget can never be overspent
            charged = amount * rng.uniform(0.2, 1.0)
            ledger.append(Entry.for_attempt(identity, "ran_now", charged_g=charged), settle=reservation.reservation_id)
        # else: still running at the end, its reservation open
    results.put(refused)
    ledger.close()


def test_status_equals_the_sum_of_entries_after_a_random_mix_across_processes(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    ledger.budgets.set(Budget.parse("mix", "800g", "month", scope="workflow:mix"))
    ledger.budgets.set(Budget.parse("all", "1000t", "month"))
    ledger.engine.dispose()
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(6)
    results: multiprocessing.Queue[int] = context.Queue()
    processes = [context.Process(target=_mix_worker, args=(ledger_url, i, barrier, results)) for i in range(6)]
    for process in processes:
        process.start()
    refused = sum(results.get(timeout=240) for _ in processes)
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    assert refused > 0  # the limit was binding, so the race for the last grams happened

    at = datetime.now(UTC)
    for name in ("mix", "all"):
        peek = ledger.budgets.status(name, at=at, settle_expired=False)
        assert (peek.settled, peek.reserved) == pytest.approx(_recomputed(ledger, name, at), rel=1e-9, abs=1e-9)
        # A new reservation (which also settles the dead workers' holds) sees the same totals as a recount.
        later = at + timedelta(seconds=1)
        ledger.budgets.reserve(name, Identity("cli", "mix", "final", name), 0.0, estimate_source="x", at=later)
        status = ledger.budgets.status(name, at=later)
        assert (status.settled, status.reserved) == pytest.approx(_recomputed(ledger, name, later), rel=1e-9)
    assert ledger.budgets.status("mix", at=at + timedelta(seconds=1)).spent <= 800.0
    with ledger.engine.connect() as connection:
        # The reservations above summed only what followed a checkpoint: this test exercised it.
        assert connection.execute(text("SELECT usage_through_seq FROM budgets WHERE name = 'mix'")).scalar()
    assert ledger.verify().ok
    ledger.close()


def test_an_entry_back_dated_into_the_period_after_the_checkpoint_is_counted(ledger: Ledger) -> None:
    ledger.budgets.set(Budget.parse("gpu", "1kg", "month"))
    ledger.append(Entry.for_attempt(_id("a"), "ran_now", charged_g=100.0, recorded_at=T0))
    ledger.budgets.reserve("gpu", _id("b"), 10.0, estimate_source="x", at=T0)  # checkpoint through entry 1
    # Recorded later but dated earlier in the same month (a spooled measurement flushed late).
    ledger.append(Entry.for_attempt(_id("c"), "ran_now", charged_g=50.0, recorded_at=T0 - timedelta(days=5)))
    with pytest.raises(BudgetExceeded, match="160 g of 1 kg"):
        ledger.budgets.reserve("gpu", _id("d"), 900.0, estimate_source="x", at=T0)
    assert ledger.budgets.status("gpu", at=T0).settled == 150.0


def test_reserving_in_another_period_and_back_keeps_each_period_right(ledger: Ledger) -> None:
    ledger.budgets.set(Budget.parse("daily", "100g", "day"))
    ledger.append(Entry.for_attempt(_id("a"), "ran_now", charged_g=60.0, recorded_at=T0))
    ledger.budgets.reserve("daily", _id("b"), 30.0, estimate_source="x", at=T0, ttl=timedelta(days=3))
    tomorrow = T0 + timedelta(days=1)
    # A fresh day: only the open 30 g reservation counts (open holds count in every period).
    ledger.budgets.release(
        ledger.budgets.reserve("daily", _id("c"), 70.0, estimate_source="x", at=tomorrow).reservation_id
    )
    ledger.append(Entry.for_attempt(_id("d"), "ran_now", charged_g=5.0, recorded_at=T0))
    with pytest.raises(BudgetExceeded, match="95 g of 100 g"):
        ledger.budgets.reserve("daily", _id("e"), 10.0, estimate_source="x", at=T0)
    assert ledger.budgets.status("daily", at=T0).settled == 65.0
    assert ledger.budgets.status("daily", at=tomorrow).settled == 0.0


def test_a_worker_that_cached_a_definition_follows_a_change_made_elsewhere(ledger_url: str) -> None:
    worker, admin = Ledger(ledger_url), Ledger(ledger_url)
    admin.budgets.set(Budget.parse("gpu", "100g", "month"))
    admin.append(
        Entry.for_attempt(_id("a"), "ran_now", charged_g=90.0, budget="gpu", recorded_at=T0 - timedelta(days=3))
    )
    worker.budgets.reserve("gpu", _id("b"), 5.0, estimate_source="x", at=T0)  # the worker now knows "month"
    admin.budgets.set(Budget.parse("gpu", "100g", "day"))  # another machine makes it a daily budget
    # Under the old monthly bounds 90 + 5 + 50 > 100; today only the 5 g reservation counts.
    reservation = worker.budgets.reserve("gpu", _id("c"), 50.0, estimate_source="x", at=T0)
    assert reservation.amount == 50.0
    assert worker.budgets.status("gpu", at=T0).spent == 55.0
    worker.close()
    admin.close()


def test_a_rolling_budget_counts_the_window_at_each_reservation(ledger: Ledger) -> None:
    ledger.budgets.set(Budget.parse("rolling", "100g", "rolling:24h"))
    ledger.append(Entry.for_attempt(_id("a"), "ran_now", charged_g=80.0, recorded_at=T0))
    with pytest.raises(BudgetExceeded):
        ledger.budgets.reserve("rolling", _id("b"), 30.0, estimate_source="x", at=T0 + timedelta(hours=23))
    later = ledger.budgets.reserve("rolling", _id("c"), 30.0, estimate_source="x", at=T0 + timedelta(hours=25))
    assert later.amount == 30.0


def test_status_keeps_the_running_total_current_so_reads_do_not_sum_the_whole_ledger(ledger: Ledger) -> None:
    """Issue 14 item 10: a status read stores the settled total once many entries follow it."""
    ledger.budgets.set(Budget.parse("gpu", "1000t", "month"))
    now = datetime.now(UTC)

    def through() -> int | None:
        with ledger.engine.connect() as connection:
            return connection.execute(text("SELECT usage_through_seq FROM budgets WHERE name = 'gpu'")).scalar()

    for i in range(300):  # budget-less spending: no reservation ever moves the checkpoint
        ledger.append(Entry.for_attempt(_id(f"t{i}"), "ran_now", charged_g=2.0, recorded_at=now))
    assert through() is None
    assert ledger.budgets.status("gpu", at=now, settle_expired=False).settled == 600.0
    assert through() is None  # a read-only viewer writes nothing
    assert ledger.budgets.status("gpu", at=now).settled == 600.0
    first = through()
    assert first is not None and first == ledger.head()[0]
    for i in range(10):
        ledger.append(Entry.for_attempt(_id(f"u{i}"), "ran_now", charged_g=1.0, recorded_at=now))
    assert ledger.budgets.status("gpu", at=now).settled == 610.0  # the 10 after the checkpoint are summed
    assert through() == first  # a short lag is not worth a write
    assert ledger.verify().ok  # and verify agrees with the stored total
