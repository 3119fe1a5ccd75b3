"""The part of a ledger entry a report reads, as a small frozen record.

A report reads tens of thousands of entries: it loads only these columns (not the stored forecasts,
power traces or plans), and :meth:`ReportAttempt.from_entry` builds the same record from a full
:class:`~greenflow.ledger.Entry` so that callers holding entries can use the computation directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from greenflow.ledger import Entry

COMPONENTS = ("gpu", "cpu", "dram")
REFUSED = "skipped_budget"


@dataclass(frozen=True, slots=True)
class ReportAttempt:
    """One ledger entry as a report sees it; ``None`` is "not measured / not declared", never 0."""

    seq: int
    entry_id: str
    recorded_at: datetime
    workflow_id: str
    run_id: str
    task_id: str
    attempt: int
    decision: str
    team: str | None = None
    tags: tuple[str, ...] = ()
    region: str | None = None
    actual_start: datetime | None = None
    ended_at: datetime | None = None
    deferred_seconds: float | None = None
    forecast_provider: str | None = None
    forecast_signal: str | None = None
    intensity_source: str | None = None
    energy_gpu_kwh: float | None = None
    energy_cpu_kwh: float | None = None
    energy_dram_kwh: float | None = None
    method_gpu: str | None = None
    method_cpu: str | None = None
    method_dram: str | None = None
    energy_kwh: float | None = None
    pue: float | None = None
    intensity_g_per_kwh: float | None = None
    operational_g: float | None = None
    embodied_g: float | None = None
    functional_unit: str | None = None
    functional_units: float | None = None
    counterfactual_g: float | None = None
    saved_g: float | None = None
    budget: str | None = None
    charged_g: float | None = None
    charged_kwh: float | None = None
    error: str | None = None
    reason: str | None = None
    """Why nothing was measured (from the entry's measurement notes or error); only for unmeasured entries."""
    segment_link: str | None = None
    """The attempt's link when this entry is one segment of an interruptible attempt (``extra["segment"]``)."""
    segment_index: int | None = None
    segment_final: bool = False

    @classmethod
    def from_entry(cls, entry: Entry) -> ReportAttempt:
        """The report's view of a full ledger entry (which must have been appended: it has a seq)."""
        assert entry.seq is not None and entry.recorded_at is not None, "only recorded entries are reported"
        return cls(
            **{name: getattr(entry, name) for name in LOADED_FIELDS},
            reason=unmeasured_reason(entry.measurement_notes, entry.error) if entry.energy_kwh is None else None,
            **segment_fields(entry.extra.get("segment") if isinstance(entry.extra, dict) else None),
        )

    @property
    def opens_attempt(self) -> bool:
        """True for the entry an attempt is counted by: its only entry, or its first segment's.

        An interruptible attempt leaves one entry per segment; counting it at its first segment counts it
        once, and in the period it started in (so the attempts of consecutive periods add up).
        """
        return self.segment_link is None or self.segment_index == 0

    @property
    def refused(self) -> bool:
        """A budget refused the work: it never ran."""
        return self.decision == REFUSED

    @property
    def unmeasured(self) -> bool:
        """An attempt that was not refused but has no energy: listed with its reason, never counted as 0."""
        return not self.refused and self.energy_kwh is None

    @property
    def facility_energy_kwh(self) -> float | None:
        """Metered energy x PUE (1 when no PUE was declared)."""
        return None if self.energy_kwh is None else self.energy_kwh * (self.pue or 1.0)

    def components(self) -> list[tuple[str, float, str | None]]:
        """(component, kWh, method) for each component with a number."""
        values = (
            ("gpu", self.energy_gpu_kwh, self.method_gpu),
            ("cpu", self.energy_cpu_kwh, self.method_cpu),
            ("dram", self.energy_dram_kwh, self.method_dram),
        )
        return [(name, kwh, method) for name, kwh, method in values if kwh is not None]


_SEGMENT_FIELDS = ("segment_link", "segment_index", "segment_final")
LOADED_FIELDS: tuple[str, ...] = tuple(
    name for name in ReportAttempt.__dataclass_fields__ if name not in ("reason", *_SEGMENT_FIELDS)
)


def segment_fields(segment: object) -> dict[str, Any]:
    """The :class:`ReportAttempt` segment fields from an entry's ``extra["segment"]`` (none when it is not one)."""
    if not isinstance(segment, dict) or not isinstance(segment.get("link"), str):
        return {}
    index = segment.get("index")
    return {
        "segment_link": segment["link"],
        "segment_index": index if isinstance(index, int) and not isinstance(index, bool) else None,
        "segment_final": segment.get("final") is True,
    }


def unmeasured_reason(notes: object, error: str | None) -> str:
    """The entry's own words for why it has no energy: its notes' reason, component reasons, or error."""
    parts: list[str] = []
    if isinstance(notes, dict):
        if isinstance(notes.get("reason"), str):
            parts.append(notes["reason"])
        parts.extend(f"{c}: {notes[c]}" for c in COMPONENTS if isinstance(notes.get(c), str))
    if error:
        parts.append(f"error: {error}")
    return "; ".join(parts) if parts else "no reason recorded in the entry"
