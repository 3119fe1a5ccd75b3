"""A ledger entry as greenflow's code and users see it: a frozen record of one task attempt.

The row layout lives in ``models.py``; this module owns the content, its canonical form and its hash.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, get_args

from greenflow import bounds
from greenflow.clock import require_aware
from greenflow.errors import InvalidInput
from greenflow.intensity.forecast import canonical_json

Orchestrator = Literal["airflow", "prefect", "cli"]
Decision = Literal["ran_now", "deferred", "skipped_budget", "degraded", "failed", "interrupted"]
Method = Literal["nvml_energy_counter", "nvml_power_sampling", "rapl", "estimate", "simulated"]
DECISIONS: tuple[str, ...] = get_args(Decision)
# Chained events that are not task attempts: a budget's definition and its changes. They share the one
# hash chain (so `ledger verify` covers them) but never count as attempts (see EntryFilter, history).
BudgetEvent = Literal["budget_set", "budget_deleted"]
EVENT_DECISIONS: tuple[str, ...] = get_args(BudgetEvent)
ORCHESTRATORS: tuple[str, ...] = get_args(Orchestrator)
GENESIS_HASH = "0" * 64

# Fields that are the chain's own bookkeeping, not content: the hash covers everything else.
_CHAIN_FIELDS = frozenset({"seq", "prev_hash", "entry_hash"})


@dataclass(frozen=True)
class Identity:
    """Which task attempt an entry is about; a retried write of the same attempt must not duplicate."""

    orchestrator: Orchestrator
    workflow_id: str
    run_id: str
    task_id: str
    attempt: int = 1
    map_index: int | None = None

    def __post_init__(self) -> None:
        if self.orchestrator not in ORCHESTRATORS:
            raise InvalidInput(
                f"orchestrator={self.orchestrator!r} is unknown", fix=f"use one of {', '.join(ORCHESTRATORS)}"
            )
        bounds.check_identity(
            workflow_id=self.workflow_id,
            run_id=self.run_id,
            task_id=self.task_id,
            attempt=self.attempt,
            map_index=self.map_index,
        )

    @property
    def idempotency_key(self) -> str:
        """SHA-256 of the identity: unique per attempt, fixed length whatever the ids' lengths."""
        return hashlib.sha256(canonical_json(dataclasses.asdict(self)).encode()).hexdigest()


@dataclass(frozen=True)
class Entry:
    """One ledger entry. ``None`` means "not measured / not applicable", with a reason in the notes."""

    # identity
    orchestrator: Orchestrator
    workflow_id: str
    run_id: str
    task_id: str
    attempt: int
    decision: Decision | BudgetEvent
    idempotency_key: str
    map_index: int | None = None
    team: str | None = None
    tags: tuple[str, ...] = ()
    entry_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    recorded_at: datetime | None = None

    # the decision (times in the task's clock: a replayed trace's time in a replay, see extra["replay"])
    requested_at: datetime | None = None
    """When this attempt asked to run: the task's request for a first attempt (also when it resumed after
    waiting), the retry's own request for a retry. A retry's deadline stays anchored to the first request,
    kept in ``extra["first_requested_at"]``."""
    planned_start: datetime | None = None
    """The start the decision chose (at most the latest start that meets the deadline)."""
    actual_start: datetime | None = None
    """When the work started."""
    ended_at: datetime | None = None
    """When the work ended."""
    deferred_seconds: float | None = None
    """How long this attempt waited for its window: ``planned_start - requested_at``, 0 when it ran at once.
    ``decision`` is ``deferred`` exactly when it is above 0 (for entries of work that ran)."""
    policy: dict[str, Any] = field(default_factory=dict)
    region: str | None = None
    forecast_provider: str | None = None
    forecast_signal: str | None = None
    forecast_emission_factor: str | None = None
    forecast_generated_at: datetime | None = None
    forecast_hash: str | None = None
    forecast: dict[str, Any] | None = None
    forecast_note: str | None = None

    # the measurement
    energy_gpu_kwh: float | None = None
    energy_cpu_kwh: float | None = None
    energy_dram_kwh: float | None = None
    method_gpu: Method | None = None
    method_cpu: Method | None = None
    method_dram: Method | None = None
    energy_kwh: float | None = None
    active_energy_kwh: float | None = None
    measurement_notes: dict[str, Any] = field(default_factory=dict)
    devices: list[Any] = field(default_factory=list)
    host: str | None = None
    pue: float | None = None

    # the accounting (SCI = (E·I + M) / R, location-based)
    intensity_g_per_kwh: float | None = None
    intensity_source: str | None = None
    operational_g: float | None = None
    embodied_g: float | None = None
    functional_unit: str | None = None
    functional_units: float | None = None
    sci_g_per_unit: float | None = None
    counterfactual_intensity_g_per_kwh: float | None = None
    """Mean intensity of the home region had the attempt started at ``requested_at`` (its own request)."""
    counterfactual_g: float | None = None
    """That intensity x the attempt's facility energy."""
    saved_g: float | None = None
    """``counterfactual_g - operational_g``: what waiting (and moving) saved this attempt; negative if it cost."""

    # budgets
    budget: str | None = None
    reservation_id: str | None = None
    estimate_g: float | None = None
    estimate_kwh: float | None = None
    estimate_source: str | None = None
    charged_g: float | None = None
    charged_kwh: float | None = None

    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    # chain bookkeeping, filled in when the entry is appended
    seq: int | None = None
    prev_hash: str | None = None
    entry_hash: str | None = None

    def __post_init__(self) -> None:
        if self.decision not in DECISIONS and self.decision not in EVENT_DECISIONS:
            raise InvalidInput(f"decision={self.decision!r} is unknown", fix=f"use one of {', '.join(DECISIONS)}")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, datetime):
                object.__setattr__(self, f.name, require_aware(value, f.name))
            elif f.name in _FLOAT_FIELDS and isinstance(value, int) and not isinstance(value, bool):
                # The database gives floats back: hash 2.0 whether the caller wrote 2 or 2.0.
                object.__setattr__(self, f.name, float(value))
        object.__setattr__(self, "tags", tuple(self.tags))
        if self.seq is None:
            # A new entry: everything in it must fit the ledger. Stored entries (seq set) are read back as
            # they are, whatever an older greenflow let in: `ledger verify` judges them, not this check.
            self._check_bounds()

    def _check_bounds(self) -> None:
        bounds.check_identity(
            workflow_id=self.workflow_id,
            run_id=self.run_id,
            task_id=self.task_id,
            attempt=self.attempt,
            map_index=self.map_index,
        )
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, datetime):
                bounds.check_time(value, f.name)
            elif isinstance(value, str) and f.name in _FREE_TEXT:
                # Free text describes what happened (an error, a note): losing the entry over a stray
                # byte would be worse than keeping it with that byte escaped.
                object.__setattr__(self, f.name, bounds.storable_text(value))
            elif isinstance(value, str):
                bounds.check_entry_text(value, f.name)
            elif f.name in _FLOAT_FIELDS:
                low, high = _FLOAT_RANGES.get(f.name, (0.0, bounds.MAX_GRAMS))
                bounds.check_number(value, f.name, low=low, high=high, fix=f"{f.name} must be in [{low:g}, {high:g}]")
            elif isinstance(value, (dict, list)):
                bounds.check_json(value, f.name)
        for tag in self.tags:
            bounds.check_text(tag, "tag", limit=bounds.TAG_LENGTH)

    @classmethod
    def for_attempt(cls, identity: Identity, decision: Decision, **fields: Any) -> Entry:
        """An entry for ``identity`` with the decision and any other fields (which may override the key)."""
        values: dict[str, Any] = {
            "orchestrator": identity.orchestrator,
            "workflow_id": identity.workflow_id,
            "run_id": identity.run_id,
            "task_id": identity.task_id,
            "attempt": identity.attempt,
            "map_index": identity.map_index,
            "idempotency_key": identity.idempotency_key,
        }
        return cls(decision=decision, **{**values, **fields})

    @property
    def is_event(self) -> bool:
        """True for a chained event (a budget definition), false for a task attempt."""
        return self.decision in EVENT_DECISIONS

    @property
    def identity(self) -> Identity:
        """The attempt this entry is about."""
        return Identity(
            orchestrator=self.orchestrator,
            workflow_id=self.workflow_id,
            run_id=self.run_id,
            task_id=self.task_id,
            attempt=self.attempt,
            map_index=self.map_index,
        )

    def replace(self, **changes: Any) -> Entry:
        """A copy with ``changes`` applied (entries are immutable)."""
        return dataclasses.replace(self, **changes)

    def content(self) -> dict[str, Any]:
        """The hashed content: every field but the chain's bookkeeping, JSON-safe."""
        return hashed_content({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of every field (the ``--json`` and export shape)."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}


def hashed_content(values: dict[str, Any]) -> dict[str, Any]:
    """The part of an entry's values the hash covers, JSON-safe (works on raw, unvalidated rows too)."""
    # Most values are already JSON-safe: a set lookup on their class skips the isinstance checks
    # (a third of `ledger verify`'s time per entry went to them).
    return {
        name: value if value.__class__ in _JSON_PLAIN else _jsonable(value)
        for name, value in values.items()
        if name not in _CHAIN_FIELDS
    }


def chain_hash(prev_hash: str, content: dict[str, Any]) -> str:
    """SHA-256 over the previous hash and the canonical JSON of an entry's content."""
    return hashlib.sha256((prev_hash + canonical_json(content)).encode()).hexdigest()


_JSON_PLAIN = frozenset({str, int, float, bool, type(None), dict, list})


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple):
        return list(value)
    return value


ENTRY_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Entry))
_FLOAT_FIELDS = frozenset(f.name for f in dataclasses.fields(Entry) if str(f.type).startswith("float"))
# Unbounded text columns (Text) that describe rather than identify: escaped, never refused.
_FREE_TEXT = frozenset({"error", "forecast_note", "estimate_source"})
# Range of each float field; the others are grams in [0, 1 Gt].
_FLOAT_RANGES: dict[str, tuple[float, float]] = {
    "deferred_seconds": (0.0, bounds.MAX_SECONDS),
    "pue": (1.0, bounds.MAX_PUE),
    "intensity_g_per_kwh": (0.0, bounds.MAX_INTENSITY),
    "counterfactual_intensity_g_per_kwh": (0.0, bounds.MAX_INTENSITY),
    "functional_units": (0.0, bounds.MAX_GRAMS),
    "sci_g_per_unit": (0.0, sys.float_info.max),  # per unit: a fraction of a unit can be dear
    "saved_g": (-bounds.MAX_GRAMS, bounds.MAX_GRAMS),  # negative when waiting cost
    "active_energy_kwh": (-bounds.MAX_KWH, bounds.MAX_KWH),
    **{
        name: (0.0, bounds.MAX_KWH)
        for name in (
            "energy_gpu_kwh",
            "energy_cpu_kwh",
            "energy_dram_kwh",
            "energy_kwh",
            "estimate_kwh",
            "charged_kwh",
        )
    },
}
