"""The ledger on real SQLite and PostgreSQL: migrations, appends, idempotency, filters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect

from greenflow.errors import InvalidInput
from greenflow.ledger import Entry, EntryFilter, Identity, Ledger
from greenflow.ledger.database import current_revision, head_revision


def _entry(task: str = "train", attempt: int = 1, **fields: object) -> Entry:
    return Entry.for_attempt(Identity("airflow", "train_llm", "run-1", task, attempt), "ran_now", **fields)


def test_schema_is_created_from_an_empty_database(ledger_url: str) -> None:
    ledger = Ledger(ledger_url)
    assert current_revision(ledger.engine) == head_revision()
    with ledger.engine.connect() as connection:
        tables = set(inspect(connection).get_table_names())
    assert {"ledger_entries", "ledger_head", "budgets", "budget_reservations", "forecast_cache"} <= tables
    assert ledger.head() == (0, "0" * 64)
    ledger.close()


def test_append_assigns_sequence_and_links_hashes(ledger: Ledger) -> None:
    first = ledger.append(_entry("a", energy_kwh=1.5))
    second = ledger.append(_entry("b", energy_kwh=None, measurement_notes={"gpu": "no GPU on this host"}))
    assert (first.seq, second.seq) == (1, 2)
    assert first.prev_hash == "0" * 64
    assert second.prev_hash == first.entry_hash
    assert ledger.head() == (2, second.entry_hash)
    stored = ledger.get(second.entry_id)
    assert stored is not None
    assert stored.energy_kwh is None  # not measured stays None, never 0
    assert stored.measurement_notes == {"gpu": "no GPU on this host"}


def test_retried_write_of_the_same_attempt_does_not_duplicate(ledger: Ledger) -> None:
    first = ledger.append(_entry(energy_kwh=0.5))
    again = ledger.append(_entry(energy_kwh=0.9))  # same identity: a retried write
    assert again.entry_id == first.entry_id
    assert again.energy_kwh == 0.5
    assert ledger.count() == 1
    retry = ledger.append(_entry(attempt=2, energy_kwh=0.9))  # a new attempt is a new entry
    assert retry.seq == 2


def test_round_trip_keeps_every_field(ledger: Ledger) -> None:
    moment = datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)
    original = _entry(
        requested_at=moment,
        planned_start=moment + timedelta(hours=3),
        deferred_seconds=10800.0,
        policy={"min_savings_pct": 5.0, "deadline": "2024-05-02T00:00:00+00:00"},
        forecast={"points": [{"start": "2024-05-01T12:00:00Z", "value": 120.5}]},
        devices=[{"uuid": "GPU-1234", "kwh": 0.25}],
        energy_gpu_kwh=0.25,
        method_gpu="nvml_energy_counter",
        tags=("gpu", "llm"),
        team="research",
    )
    stored = ledger.append(original)
    assert ledger.get(stored.entry_id) == stored
    assert stored.requested_at == moment
    assert stored.tags == ("gpu", "llm")


def test_filters_order_and_paging(ledger: Ledger) -> None:
    for task in ("a", "b", "c"):
        ledger.append(_entry(task, energy_kwh=float(ord(task))))
    ledger.append(Entry.for_attempt(Identity("prefect", "etl", "r", "x"), "deferred"))
    assert [e.task_id for e in ledger.entries(EntryFilter(workflow_id="train_llm"))] == ["a", "b", "c"]
    assert [e.task_id for e in ledger.entries(EntryFilter(decision="deferred"))] == ["x"]
    assert [e.task_id for e in ledger.entries(limit=2, offset=1)] == ["b", "c"]
    assert [e.task_id for e in ledger.entries(order_by="energy_kwh", descending=True, limit=1)] == ["c"]
    future = datetime.now(UTC) + timedelta(days=1)
    assert ledger.count(EntryFilter(since=future)) == 0
    with pytest.raises(InvalidInput, match="sort key 'energy; DROP'"):
        ledger.entries(order_by="energy; DROP")


def test_naive_datetimes_are_rejected() -> None:
    with pytest.raises(InvalidInput, match="naive"):
        _entry(requested_at=datetime(2024, 1, 1, 12, 0))  # noqa: DTZ001 - the point of the test
    with pytest.raises(InvalidInput, match="naive"):
        EntryFilter(since=datetime(2024, 1, 1))  # noqa: DTZ001


def test_unknown_decision_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="decision='maybe'"):
        Entry.for_attempt(Identity("cli", "w", "r", "t"), "maybe")  # type: ignore[arg-type]


def test_history_returns_measured_successful_attempts(ledger: Ledger) -> None:
    ledger.append(_entry("train", 1, energy_kwh=1.0))
    ledger.append(
        Entry.for_attempt(Identity("airflow", "train_llm", "run-1", "train", 2), "failed", energy_kwh=0.2, error="boom")
    )
    ledger.append(_entry("train", 3, energy_kwh=None))
    ledger.append(_entry("train", 4, energy_kwh=2.0))
    assert [e.energy_kwh for e in ledger.history("train_llm", "train")] == [2.0, 1.0]


def test_integer_figures_verify_after_the_database_returns_floats(ledger: Ledger) -> None:
    ledger.append(_entry(energy_kwh=2, operational_g=300, pue=1))
    assert ledger.verify().ok
