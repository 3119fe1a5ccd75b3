"""One-line summaries of greenflow decisions and ledger entries for Airflow task logs.

Only what the core already decided and measured: nothing here computes. Secrets never appear (specs
and entries hold none).
"""

from __future__ import annotations

from greenflow.ledger import Entry
from greenflow.lifecycle import Decision
from greenflow.units import format_energy, format_mass

_METERS = ("nvml_energy_counter", "nvml_power_sampling", "rapl")


def describe_decision(decision: Decision) -> str:
    """``defer: start 2022-06-01T11:00+00:00 in ES (latest 2022-06-01T14:00+00:00): <reason>``."""
    where = f" in {decision.region}" if decision.region else ""
    text = (
        f"{decision.action}: start {decision.start_at.isoformat()}{where} "
        f"(latest {decision.latest_start.isoformat()}): {decision.reason}"
    )
    if decision.forecast_note:
        text += f" [forecast: {decision.forecast_note}]"
    if decision.replay_speed:
        text += f" [replayed trace at {decision.replay_speed:g}x; times are the trace's]"
    return text


def _unmetered(entry: Entry) -> str:
    """`` (GPU simulated)``: the components whose number is not a meter reading, so it never reads as measured."""
    labels = [
        f"{name.upper()} {method}"
        for name, method in (("gpu", entry.method_gpu), ("cpu", entry.method_cpu), ("dram", entry.method_dram))
        if method is not None and method not in _METERS
    ]
    return f" ({', '.join(labels)})" if labels else ""


def describe_entry(entry: Entry) -> str:
    """Energy, emissions and what could not be measured, with the entry id."""
    parts = [f"ledger entry {entry.entry_id} ({entry.decision})"]
    if entry.energy_kwh is not None:
        parts.append(f"energy {format_energy(entry.energy_kwh)}{_unmetered(entry)}")
    else:
        parts.append("energy not measured")
    if entry.operational_g is not None:
        intensity = f" at {entry.intensity_g_per_kwh:.0f} gCO2e/kWh" if entry.intensity_g_per_kwh else ""
        parts.append(f"emissions {format_mass(entry.operational_g)}{intensity}")
    if entry.saved_g is not None:
        # Below a microgram the difference is the float noise of two sums over the same energy, not a saving.
        saved = entry.saved_g if abs(entry.saved_g) >= 1e-6 else 0.0
        parts.append(f"saved vs. starting at once {format_mass(saved)}")
    if entry.charged_g is not None and entry.budget:
        parts.append(f"charged {format_mass(entry.charged_g)} to budget {entry.budget}")
    reasons = [f"{name}: {reason}" for name, reason in entry.measurement_notes.items() if isinstance(reason, str)]
    if reasons:
        parts.append("not measured: " + "; ".join(reasons))
    if entry.error:
        parts.append(f"error: {entry.error}")
    return ", ".join(parts)
