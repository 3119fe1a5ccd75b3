"""The ledger's tables (SQLAlchemy 2 typed ORM). Alembic migrations in ``migrations/`` mirror this file.

``ledger_entries`` is append-only and hash-chained; ``ledger_head`` holds the chain's tip (and is the
row every appender locks, which is what serialises the chain on PostgreSQL). ``budgets`` and
``budget_reservations`` are operational state: the audit record of what a budget counted is the
``charged_*`` columns of the entries themselves, and every budget definition is a chained entry
(decision ``budget_set``); ``ledger verify`` recomputes both tables from the chain (``budget_audit``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Float, Index, Integer, String, Text, TypeDecorator
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite has no time zones: store naive UTC, read back aware)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} reached the ledger; use aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL wants a 64-bit key for a long-lived ledger.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    """Declarative base of the ledger schema."""

    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[Any]: JSON()}


class EntryRow(Base):
    """One ledger entry: a task attempt that used energy or was decided about."""

    __tablename__ = "ledger_entries"

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    entry_id: Mapped[str] = mapped_column(String(36), unique=True)
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    recorded_at: Mapped[datetime]

    # identity
    orchestrator: Mapped[str] = mapped_column(String(16))
    workflow_id: Mapped[str] = mapped_column(String(250))
    run_id: Mapped[str] = mapped_column(String(250))
    task_id: Mapped[str] = mapped_column(String(250))
    attempt: Mapped[int] = mapped_column(Integer)
    map_index: Mapped[int | None] = mapped_column(Integer)
    team: Mapped[str | None] = mapped_column(String(120))
    tags: Mapped[str] = mapped_column(Text, default="")  # ",a,b," so that LIKE '%,a,%' matches one tag

    # the decision
    decision: Mapped[str] = mapped_column(String(32))
    requested_at: Mapped[datetime | None]
    planned_start: Mapped[datetime | None]
    actual_start: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    deferred_seconds: Mapped[float | None] = mapped_column(Float)
    policy: Mapped[dict[str, Any]]
    region: Mapped[str | None] = mapped_column(String(120))
    forecast_provider: Mapped[str | None] = mapped_column(String(64))
    forecast_signal: Mapped[str | None] = mapped_column(String(16))
    forecast_emission_factor: Mapped[str | None] = mapped_column(String(16))
    forecast_generated_at: Mapped[datetime | None]
    forecast_hash: Mapped[str | None] = mapped_column(String(64))
    forecast: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    forecast_note: Mapped[str | None] = mapped_column(Text)

    # the measurement
    energy_gpu_kwh: Mapped[float | None] = mapped_column(Float)
    energy_cpu_kwh: Mapped[float | None] = mapped_column(Float)
    energy_dram_kwh: Mapped[float | None] = mapped_column(Float)
    method_gpu: Mapped[str | None] = mapped_column(String(32))
    method_cpu: Mapped[str | None] = mapped_column(String(32))
    method_dram: Mapped[str | None] = mapped_column(String(32))
    energy_kwh: Mapped[float | None] = mapped_column(Float)
    active_energy_kwh: Mapped[float | None] = mapped_column(Float)
    measurement_notes: Mapped[dict[str, Any]]
    devices: Mapped[list[Any]]
    host: Mapped[str | None] = mapped_column(String(255))
    pue: Mapped[float | None] = mapped_column(Float)

    # the accounting
    intensity_g_per_kwh: Mapped[float | None] = mapped_column(Float)
    intensity_source: Mapped[str | None] = mapped_column(String(64))
    operational_g: Mapped[float | None] = mapped_column(Float)
    embodied_g: Mapped[float | None] = mapped_column(Float)
    functional_unit: Mapped[str | None] = mapped_column(String(120))
    functional_units: Mapped[float | None] = mapped_column(Float)
    sci_g_per_unit: Mapped[float | None] = mapped_column(Float)
    counterfactual_intensity_g_per_kwh: Mapped[float | None] = mapped_column(Float)
    counterfactual_g: Mapped[float | None] = mapped_column(Float)
    saved_g: Mapped[float | None] = mapped_column(Float)

    # budgets
    budget: Mapped[str | None] = mapped_column(String(120))
    reservation_id: Mapped[str | None] = mapped_column(String(36))
    estimate_g: Mapped[float | None] = mapped_column(Float)
    estimate_kwh: Mapped[float | None] = mapped_column(Float)
    estimate_source: Mapped[str | None] = mapped_column(Text)
    charged_g: Mapped[float | None] = mapped_column(Float)
    charged_kwh: Mapped[float | None] = mapped_column(Float)

    error: Mapped[str | None] = mapped_column(Text)
    extra: Mapped[dict[str, Any]]

    # tamper evidence
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_ledger_entries_recorded_at", "recorded_at"),
        Index("ix_ledger_entries_workflow", "workflow_id", "task_id", "recorded_at"),
        Index("ix_ledger_entries_decision", "decision", "recorded_at"),
        # Migration 0002: keyset pagination of the Airflow UI, (sort key, seq) per sort key, and its filters.
        Index("ix_ledger_entries_recorded_seq", "recorded_at", "seq"),
        Index("ix_ledger_entries_workflow_recorded", "workflow_id", "recorded_at", "seq"),
        Index("ix_ledger_entries_task_instance", "workflow_id", "run_id", "task_id"),
        Index("ix_ledger_entries_actual_start_seq", "actual_start", "seq"),
        Index("ix_ledger_entries_energy_seq", "energy_kwh", "seq"),
        Index("ix_ledger_entries_operational_seq", "operational_g", "seq"),
        Index("ix_ledger_entries_saved_seq", "saved_g", "seq"),
        Index("ix_ledger_entries_deferred_seq", "deferred_seconds", "seq"),
    )


class HeadRow(Base):
    """The tip of the hash chain (one row, id 1): the last seq and its hash."""

    __tablename__ = "ledger_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigId)
    entry_hash: Mapped[str] = mapped_column(String(64))


class BudgetRow(Base):
    """A carbon or energy budget."""

    __tablename__ = "budgets"

    name: Mapped[str] = mapped_column(String(120), primary_key=True)
    scope_kind: Mapped[str] = mapped_column(String(16))
    scope_value: Mapped[str | None] = mapped_column(String(250))
    period: Mapped[str] = mapped_column(String(16))
    period_hours: Mapped[float | None] = mapped_column(Float)
    timezone: Mapped[str] = mapped_column(String(64))
    unit: Mapped[str] = mapped_column(String(8))
    limit_value: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # Migration 0003. Bumped by every `set`: a worker that cached the definition (to compute the period's
    # bounds before the one-statement reservation on PostgreSQL) learns from it that the cache is stale.
    revision: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # A checkpoint of the settled part of `spent`: what entries up to seq `usage_through_seq` charged in
    # the period [usage_period_start, usage_period_end). Entries are append-only and committed in seq
    # order, so a reservation sums only the entries after it instead of every entry of the period.
    # NULL when unknown (a new or redefined budget, a rolling period): then the whole period is summed.
    usage_period_start: Mapped[datetime | None]
    usage_period_end: Mapped[datetime | None]
    usage_through_seq: Mapped[int | None] = mapped_column(BigId)
    usage_settled: Mapped[float | None] = mapped_column(Float)


class ReservationRow(Base):
    """An amount held against a budget by a task attempt between its start and its settlement."""

    __tablename__ = "budget_reservations"

    reservation_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    budget: Mapped[str] = mapped_column(String(120))
    idempotency_key: Mapped[str] = mapped_column(String(64))
    identity: Mapped[dict[str, Any]]
    amount: Mapped[float] = mapped_column(Float)
    estimate_source: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))  # open, settled, released, expired
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    settled_at: Mapped[datetime | None]
    entry_id: Mapped[str | None] = mapped_column(String(36))
    # What the holder reported so far (heartbeats): used if it dies before settling.
    progress_kwh: Mapped[float | None] = mapped_column(Float)
    progress_g: Mapped[float | None] = mapped_column(Float)
    # Migration 0004. An attempt holds against every budget covering it: one row per budget, all sharing
    # the group id, which is the reservation id of the row of the budget the attempt named.
    group_id: Mapped[str | None] = mapped_column(String(36))
    # SHA-256 of the row's canonical content (greenflow.ledger.settlement.reservation_digest), rewritten
    # by every change greenflow makes: `ledger verify` reports a row edited by hand.
    digest: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_reservations_budget_status", "budget", "status"),
        Index("ix_reservations_group", "group_id"),
        Index("uq_reservations_budget_key", "budget", "idempotency_key", unique=True),
    )


class ForecastCacheRow(Base):
    """A forecast shared by every worker on this ledger, with a lease so one process refreshes it."""

    __tablename__ = "forecast_cache"

    cache_key: Mapped[str] = mapped_column(String(250), primary_key=True)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    fetched_at: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(120))
    lease_until: Mapped[datetime | None]
