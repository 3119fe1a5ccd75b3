"""Nested budgets: an attempt holds against every budget covering it, all or none (issue 14, item 1)."""

from __future__ import annotations

import multiprocessing
import random
from datetime import UTC, datetime, timedelta

import pytest

from greenflow.errors import BudgetExceeded, InvalidInput
from greenflow.ledger import Budget, Entry, Identity, Ledger

T0 = datetime(2024, 6, 10, 12, 0, tzinfo=UTC)


def _id(task: str, workflow: str = "train", attempt: int = 1) -> Identity:
    return Identity("cli", workflow, "run-1", task, attempt)


def test_a_second_run_naming_the_wide_budget_is_refused_by_the_narrow_one(ledger: Ledger) -> None:
    ledger.budgets.set(Budget.parse("team-ml", "30g", "day", scope="tag:ml"))
    ledger.budgets.set(Budget.parse("dag-ml", "100g", "day", scope="tag:ml"))
    first = ledger.budgets.reserve("dag-ml", _id("t1"), 25.0, estimate_source="declared", tags=("ml",))
    assert first.holds == ("dag-ml", "team-ml")
    ledger.append(Entry.for_attempt(_id("t1"), "ran_now", charged_g=25.0, tags=("ml",)), settle=first.reservation_id)
    with pytest.raises(BudgetExceeded, match=r"budget 'team-ml' \(it covers this attempt too, which named 'dag-ml'\)"):
        ledger.budgets.reserve("dag-ml", _id("t1", attempt=2), 25.0, estimate_source="declared", tags=("ml",))
    for name, limit in (("team-ml", 30.0), ("dag-ml", 100.0)):
        status = ledger.budgets.status(name)
        assert status.spent == 25.0 <= limit
    assert ledger.verify().ok


def test_settle_release_and_expiry_act_on_every_hold(ledger: Ledger) -> None:
    ledger.budgets.set(Budget.parse("org", "1kg", "month"))
    ledger.budgets.set(Budget.parse("team", "500g", "month", scope="team:vision"))
    ledger.budgets.set(Budget.parse("energy", "10kWh", "month", scope="team:vision"))
    now = datetime.now(UTC)

    def reserve(task: str, ttl: timedelta = timedelta(hours=1)) -> str:
        return ledger.budgets.reserve(
            "team", _id(task), 100.0, estimate_source="x", team="vision", amounts={"kWh": 0.5}, ttl=ttl, at=now
        ).reservation_id

    def reserved() -> tuple[float, float, float]:
        return tuple(ledger.budgets.status(n, at=now, settle_expired=False).reserved for n in ("org", "team", "energy"))  # type: ignore[return-value]

    ledger.budgets.release(reserve("a"))
    assert reserved() == (0.0, 0.0, 0.0)
    settled = reserve("b")
    assert reserved() == (100.0, 100.0, 0.5)
    ledger.append(
        Entry.for_attempt(_id("b"), "ran_now", charged_g=80.0, charged_kwh=0.4, team="vision"), settle=settled
    )
    assert reserved() == (0.0, 0.0, 0.0)
    assert [ledger.budgets.status(n, at=now).settled for n in ("org", "team", "energy")] == [80.0, 80.0, 0.4]
    dying = reserve("c", ttl=timedelta(seconds=1))
    ledger.budgets.heartbeat(dying, extend_to=now + timedelta(minutes=5), progress_g=30.0)
    later = now + timedelta(minutes=6)
    [interrupted] = ledger.budgets.reap_expired(later)
    assert (interrupted.charged_g, interrupted.charged_kwh) == (30.0, 0.5)  # kWh: nothing reported, the hold
    assert [ledger.budgets.status(n, at=later).spent for n in ("org", "team", "energy")] == [110.0, 110.0, 0.9]
    assert ledger.verify().ok


def test_a_covering_budget_in_another_unit_needs_the_estimate_in_that_unit(ledger: Ledger) -> None:
    ledger.budgets.set(Budget.parse("grams", "1kg", "month"))
    ledger.budgets.set(Budget.parse("energy", "10kWh", "month"))
    with pytest.raises(InvalidInput, match=r"budget 'energy' .* counts kWh"):
        ledger.budgets.reserve("grams", _id("a"), 10.0, estimate_source="x")
    assert ledger.budgets.status("grams").reserved == 0.0


def test_a_budget_created_elsewhere_is_held_against_at_once(ledger_url: str) -> None:
    worker, admin = Ledger(ledger_url), Ledger(ledger_url)
    admin.budgets.set(Budget.parse("wf", "1kg", "day", scope="workflow:train"))
    worker.budgets.reserve("wf", _id("a"), 20.0, estimate_source="x")  # the worker caches the definitions
    admin.budgets.set(Budget.parse("org", "30g", "day"))  # a new, wider budget from another machine
    with pytest.raises(BudgetExceeded, match="budget 'org'"):
        worker.budgets.reserve("wf", _id("b"), 40.0, estimate_source="x")
    worker.budgets.reserve("wf", _id("c"), 25.0, estimate_source="x")
    # Holds taken before "org" existed do not count against it (they were not made against it).
    assert (admin.budgets.status("org").spent, admin.budgets.status("wf").spent) == (25.0, 45.0)
    worker.close()
    admin.close()


def test_the_binding_status_is_the_spent_wider_budget(ledger: Ledger) -> None:
    from greenflow.ledger.budgets import Attempt

    ledger.budgets.set(Budget.parse("team-ml", "30g", "day", scope="tag:ml"))
    ledger.budgets.set(Budget.parse("dag-ml", "100g", "day", scope="workflow:dag"))
    ledger.append(Entry.for_attempt(_id("a", workflow="other"), "ran_now", charged_g=30.0, tags=("ml",)))
    assert not ledger.budgets.status("dag-ml").exhausted
    binding = ledger.budgets.binding_status("dag-ml", Attempt("dag", tags=("ml",)))
    assert (binding.budget.name, binding.exhausted) == ("team-ml", True)
    assert ledger.budgets.binding_status("dag-ml", Attempt("dag")).budget.name == "dag-ml"
    # Without the attempt: the budgets with the same scope (or scope all) count everything dag-ml counts.
    ledger.budgets.set(Budget.parse("ml-wide", "40g", "day", scope="tag:ml"))
    assert ledger.budgets.binding_status("team-ml").budget.name == "team-ml"
    assert ledger.budgets.binding_status("ml-wide").budget.name == "team-ml"
    assert ledger.budgets.binding_status("dag-ml").budget.name == "dag-ml"


# -- the race: 32 processes, overlapping budgets ----------------------------------------------------
LIMITS = {"org": 1500.0, "team-a": 400.0, "tag-ml": 300.0, "wf-x": 500.0, "dag-ml": 2000.0}


def _overlap_worker(
    url: str, index: int, barrier: multiprocessing.synchronize.Barrier, results: multiprocessing.Queue
) -> None:  # type: ignore[type-arg]
    rng = random.Random(index)
    ledger = Ledger(url, create_if_empty=False)
    barrier.wait()
    refused: dict[str, int] = {}
    for attempt in range(1, 4):
        workflow = rng.choice(("x", "y"))
        team = rng.choice(("a", "b", None))
        tags = rng.choice(((), ("ml",), ("ml", "gpu")))
        name = rng.choice(("dag-ml", "org", "wf-x" if workflow == "x" else "org", "team-a" if team == "a" else "org"))
        identity = Identity("cli", workflow, f"p{index}", "job", attempt)
        try:
            reservation = ledger.budgets.reserve(name, identity, 45.0, estimate_source="race", team=team, tags=tags)
        except BudgetExceeded as refusal:
            binding = refusal.status.budget.name  # type: ignore[attr-defined]
            refused[binding] = refused.get(binding, 0) + 1
            continue
        fate = rng.random()
        if fate < 0.6:
            entry = Entry.for_attempt(identity, "ran_now", charged_g=rng.uniform(20.0, 45.0), team=team, tags=tags)
            ledger.append(entry, settle=reservation.reservation_id)
        elif fate < 0.8:
            ledger.budgets.release(reservation.reservation_id)
    results.put(refused)
    ledger.close()


def test_32_processes_with_overlapping_budgets_never_overspend_any(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    ledger.budgets.set(Budget.parse("org", f"{LIMITS['org']}g", "month"))
    ledger.budgets.set(Budget.parse("team-a", f"{LIMITS['team-a']}g", "month", scope="team:a"))
    ledger.budgets.set(Budget.parse("tag-ml", f"{LIMITS['tag-ml']}g", "month", scope="tag:ml"))
    ledger.budgets.set(Budget.parse("wf-x", f"{LIMITS['wf-x']}g", "month", scope="workflow:x"))
    ledger.budgets.set(Budget.parse("dag-ml", f"{LIMITS['dag-ml']}g", "month", scope="tag:ml"))
    ledger.engine.dispose()
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(32)
    results: multiprocessing.Queue[dict[str, int]] = context.Queue()
    processes = [context.Process(target=_overlap_worker, args=(ledger_url, i, barrier, results)) for i in range(32)]
    for process in processes:
        process.start()
    refused: dict[str, int] = {}
    for _ in processes:
        for name, count in results.get(timeout=300).items():
            refused[name] = refused.get(name, 0) + count
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0  # no deadlock, no crash
    for name, limit in LIMITS.items():
        assert ledger.budgets.status(name).spent <= limit + 1e-9, name
    assert refused.get("tag-ml", 0) > 0  # the narrow budget was binding for attempts naming wider ones
    assert ledger.verify().ok
    ledger.close()
