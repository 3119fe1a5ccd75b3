"""How ledger values are shown: JSON shapes of the API, CSV cells, and the units people read.

Free text that a task or a provider wrote (errors, notes, policy inputs) passes through Airflow's
secrets masker (sensitive keys such as ``password`` or ``token`` are hidden) and has credentials in URLs
masked, so that a secret that reached an entry still does not reach the browser.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta
from typing import Any

from markupsafe import Markup
from sqlalchemy import Row

from greenflow.airflow.plugins.redaction import redact
from greenflow.clock import format_duration
from greenflow.ledger import Entry
from greenflow.units import format_energy, format_mass

METHOD_LABELS = {
    "nvml_energy_counter": "NVML energy counter",
    "nvml_power_sampling": "NVML power sampling",
    "rapl": "RAPL",
    "estimate": "estimate",
    "simulated": "simulated (a declared draw, not measured)",
}
# The table's narrow column: a counter is the norm, so only the weaker methods say more.
SHORT_METHOD_LABELS = {"nvml_energy_counter": "NVML", "nvml_power_sampling": "NVML sampled", "rapl": "RAPL"}
DECISION_LABELS = {
    "ran_now": "ran now",
    "deferred": "deferred",
    "skipped_budget": "skipped: budget",
    "degraded": "degraded",
    "failed": "failed",
    "interrupted": "interrupted",
}
COMPONENTS = ("gpu", "cpu", "dram")
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^/\s:@]*):(?P<secret>[^/\s@]+)@")
# Spreadsheets run cells that start with these as formulas: such text cells get a leading quote.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def mask_text(value: str | None) -> str | None:
    """``value`` with registered secrets and URL passwords masked."""
    if value is None:
        return None
    return _URL_CREDENTIALS.sub(r"\g<scheme>\g<user>:***@", str(redact(value)))


def mask_json(value: Any) -> Any:
    """A JSON value with sensitive keys and secrets masked (recursively)."""
    return _mask_strings(redact(value))


def _mask_strings(value: Any) -> Any:
    if isinstance(value, str):
        return _URL_CREDENTIALS.sub(r"\g<scheme>\g<user>:***@", value)
    if isinstance(value, dict):
        return {key: _mask_strings(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_mask_strings(item) for item in value]
    return value


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC, or ``None``."""
    return None if value is None else value.isoformat()


def number(value: Any) -> float | None:
    """A finite float, or ``None`` (JSON has no NaN)."""
    if value is None or isinstance(value, bool):
        return None
    result = float(value)
    return result if math.isfinite(result) else None


def clock_label(replayed: bool, speed: float | None) -> str:
    """``real``, or ``replay 3600x`` for an entry planned on a replayed trace (as ``greenflow ledger show``)."""
    if not replayed:
        return "real"
    return f"replay {speed:g}x" if speed is not None and math.isfinite(speed) and speed > 0 else "replay"


def entry_clock(entry: Entry) -> str:
    """:func:`clock_label` of a whole entry (its ``extra["replay"]``)."""
    replay = entry.extra.get("replay") if isinstance(entry.extra, dict) else None
    if not isinstance(replay, dict):
        return "real"
    speed = replay.get("speed")
    return clock_label(True, float(speed) if isinstance(speed, (int, float)) and not isinstance(speed, bool) else None)


def row_clock(row: Row[Any]) -> str:
    """:func:`clock_label` of a list row (its ``replayed`` and ``replay_speed`` columns)."""
    return clock_label(bool(row.replayed), number(row.replay_speed))


def entry_row_json(row: Row[Any]) -> dict[str, Any]:
    """One row of the entries list, as the JSON API returns it (masses in g, energy in kWh)."""
    return {
        "seq": row.seq,
        "entry_id": row.entry_id,
        "recorded_at": iso(row.recorded_at),
        "dag_id": row.workflow_id,
        "run_id": row.run_id,
        "task_id": row.task_id,
        "map_index": row.map_index,
        "attempt": row.attempt,
        "region": row.region,
        "decision": row.decision,
        "requested_at": iso(row.requested_at),
        "planned_start": iso(row.planned_start),
        "actual_start": iso(row.actual_start),
        "ended_at": iso(row.ended_at),
        "deferred_seconds": number(row.deferred_seconds),
        "clock": row_clock(row),
        "energy_kwh": number(row.energy_kwh),
        "energy": {
            name: {"kwh": number(getattr(row, f"energy_{name}_kwh")), "method": getattr(row, f"method_{name}")}
            for name in COMPONENTS
        },
        "intensity_g_per_kwh": number(row.intensity_g_per_kwh),
        "operational_g": number(row.operational_g),
        "embodied_g": number(row.embodied_g),
        "counterfactual_g": number(row.counterfactual_g),
        "saved_g": number(row.saved_g),
        "functional_unit": row.functional_unit,
        "functional_units": number(row.functional_units),
        "sci_g_per_unit": number(row.sci_g_per_unit),
        "budget": row.budget,
        "charged_g": number(row.charged_g),
        "error": mask_text(row.error),
    }


CSV_COLUMNS: tuple[str, ...] = (
    "seq",
    "entry_id",
    "recorded_at",
    "dag_id",
    "run_id",
    "task_id",
    "map_index",
    "attempt",
    "region",
    "decision",
    "requested_at",
    "planned_start",
    "actual_start",
    "ended_at",
    "deferred_seconds",
    "energy_kwh",
    "energy_gpu_kwh",
    "energy_cpu_kwh",
    "energy_dram_kwh",
    "method_gpu",
    "method_cpu",
    "method_dram",
    "intensity_g_per_kwh",
    "operational_g",
    "embodied_g",
    "counterfactual_g",
    "saved_g",
    "functional_unit",
    "functional_units",
    "sci_g_per_unit",
    "budget",
    "charged_g",
    "error",
    "entry_hash",
)


def csv_cells(row: Row[Any]) -> list[Any]:
    """One CSV line's cells, in :data:`CSV_COLUMNS` order (text cells safe to open in a spreadsheet)."""
    cells: list[Any] = []
    for name in CSV_COLUMNS:
        value = getattr(row, "workflow_id" if name == "dag_id" else name)
        if name == "error":
            value = mask_text(value)
        if isinstance(value, datetime):
            cells.append(value.isoformat())
        elif isinstance(value, str):
            cells.append("'" + value if value.startswith(_FORMULA_START) else value)
        elif value is None:
            cells.append("")
        else:
            cells.append(value)
    return cells


# -- one attempt in detail -----------------------------------------------------------------------------
def attempt_json(entry: Entry) -> dict[str, Any]:
    """Everything the task-instance view shows about one attempt, JSON-safe and masked."""
    plan = entry.extra.get("plan") if isinstance(entry.extra, dict) else None
    notes = entry.measurement_notes if isinstance(entry.measurement_notes, dict) else {}
    carbon = notes.get("carbon") if isinstance(notes.get("carbon"), dict) else None
    return {
        "seq": entry.seq,
        "entry_id": entry.entry_id,
        "attempt": entry.attempt,
        "map_index": entry.map_index,
        "decision": entry.decision,
        "recorded_at": iso(entry.recorded_at),
        "region": entry.region,
        "reason": mask_text(entry.extra.get("decision_reason")) if isinstance(entry.extra, dict) else None,
        "requested_at": iso(entry.requested_at),
        "planned_start": iso(entry.planned_start),
        "actual_start": iso(entry.actual_start),
        "ended_at": iso(entry.ended_at),
        "deferred_seconds": number(entry.deferred_seconds),
        "clock": entry_clock(entry),
        "window": _window(plan),
        "forecast": _forecast(entry),
        "energy": {
            "total_kwh": number(entry.energy_kwh),
            "active_kwh": number(entry.active_energy_kwh),
            "pue": number(entry.pue),
            "components": [
                {
                    "name": name,
                    "kwh": number(getattr(entry, f"energy_{name}_kwh")),
                    "method": getattr(entry, f"method_{name}"),
                    "reason": mask_text(notes.get(name)) if isinstance(notes.get(name), str) else None,
                }
                for name in COMPONENTS
            ],
        },
        "accounting": {
            "intensity_g_per_kwh": number(entry.intensity_g_per_kwh),
            "intensity_source": entry.intensity_source,
            "operational_g": number(entry.operational_g),
            "embodied_g": number(entry.embodied_g),
            "counterfactual_intensity_g_per_kwh": number(entry.counterfactual_intensity_g_per_kwh),
            "counterfactual_g": number(entry.counterfactual_g),
            "saved_g": number(entry.saved_g),
            "functional_unit": entry.functional_unit,
            "functional_units": number(entry.functional_units),
            "sci_g_per_unit": number(entry.sci_g_per_unit),
        },
        "run_intensity": _run_intensity(carbon),
        "power": _power(notes),
        "budget": {
            "name": entry.budget,
            "estimate_g": number(entry.estimate_g),
            "estimate_kwh": number(entry.estimate_kwh),
            "estimate_source": mask_text(entry.estimate_source),
            "charged_g": number(entry.charged_g),
            "charged_kwh": number(entry.charged_kwh),
        },
        "host": entry.host,
        "devices": mask_json(entry.devices),
        "policy": mask_json(entry.policy),
        "notes": mask_json({k: v for k, v in notes.items() if k != "carbon" and k not in COMPONENTS and k != "traces"}),
        "error": mask_text(entry.error),
    }


def _window(plan: Any) -> dict[str, Any] | None:
    if not isinstance(plan, dict) or not plan.get("start") or not plan.get("end"):
        return None
    return {
        "start": plan.get("start"),
        "end": plan.get("end"),
        "latest_start": plan.get("latest_start"),
        "expected_g_per_kwh": number(plan.get("expected_gco2_per_kwh")),
        "now_g_per_kwh": number(plan.get("now_gco2_per_kwh")),
        "savings_pct": number(plan.get("savings_pct")),
        "reason": mask_text(plan.get("reason")) if isinstance(plan.get("reason"), str) else None,
    }


def _forecast(entry: Entry) -> dict[str, Any] | None:
    data = entry.forecast if isinstance(entry.forecast, dict) else None
    if data is None and entry.forecast_provider is None:
        return None
    points = data.get("points", []) if data else []
    return {
        "provider": entry.forecast_provider,
        "signal": entry.forecast_signal,
        "emission_factor": entry.forecast_emission_factor,
        "generated_at": iso(entry.forecast_generated_at),
        "hash": entry.forecast_hash,
        "note": mask_text(entry.forecast_note),
        "points": [
            {
                "start": p.get("start"),
                "end": p.get("end"),
                "value": number(p.get("value")),
                "estimated": bool(p.get("estimated")),
            }
            for p in points
            if isinstance(p, dict)
        ],
    }


def _run_intensity(carbon: dict[str, Any] | None) -> dict[str, Any] | None:
    if carbon is None:
        return None
    raw = carbon.get("slots")
    slots: list[Any] = raw if isinstance(raw, list) else []
    return {
        "coverage": number(carbon.get("coverage")),
        "distribution": carbon.get("distribution"),
        "reason": mask_text(carbon.get("reason")) if isinstance(carbon.get("reason"), str) else None,
        "warnings": [mask_text(str(w)) for w in carbon.get("warnings") or []],
        "slots": [
            {
                "start": s.get("start"),
                "end": s.get("end"),
                "intensity_g_per_kwh": number(s.get("intensity_g_per_kwh")),
                "energy_kwh": number(s.get("energy_kwh")),
                "emissions_g": number(s.get("emissions_g")),
                "estimated": bool(s.get("estimated")),
            }
            for s in slots
            if isinstance(s, dict)
        ],
    }


def _power(notes: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Power traces when the entry kept them (``measurement_notes["traces"]``, the meter's own shape)."""
    traces = notes.get("traces")
    if not isinstance(traces, list):
        return None
    kept = []
    for trace in traces:
        if not isinstance(trace, dict) or not isinstance(trace.get("samples"), list):
            continue
        samples = [[str(s[0]), number(s[1])] for s in trace["samples"] if isinstance(s, (list, tuple)) and len(s) == 2]
        kept.append({"component": trace.get("component"), "device": trace.get("device"), "samples": samples})
    return kept or None


# -- units for people (Jinja filters) -------------------------------------------------------------------
def mass(grams: Any) -> str:
    """``1234.5`` → ``1.23 kg`` (g, kg, t); ``None`` → ``—``."""
    return format_mass(number(grams))


def energy(kwh: Any) -> str:
    """``0.0123`` → ``12.3 Wh`` (Wh, kWh, MWh); ``None`` → ``—``."""
    return format_energy(number(kwh))


def intensity(value: Any) -> str:
    """``212.4`` → ``212`` (gCO2e/kWh; the unit is in the column heading or next to it)."""
    v = number(value)
    return "—" if v is None else f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"


def hours_minutes(seconds: Any) -> str:
    """Seconds as ``h:mm``; ``None`` → ``—``."""
    v = number(seconds)
    return "—" if v is None else format_duration(timedelta(seconds=v))


def percent(share: Any) -> str:
    """``0.234`` → ``23%``."""
    v = number(share)
    return "—" if v is None else f"{v * 100:.0f}%"


def methods(row: Any) -> str:
    """The metering methods of an entry's components, briefly: ``GPU NVML · CPU RAPL``."""
    parts = []
    for name in COMPONENTS:
        method = getattr(row, f"method_{name}", None)
        if method:
            parts.append(f"{name.upper()} {SHORT_METHOD_LABELS.get(method, method)}")
    return " · ".join(parts)


def when(value: datetime | str | None, style: str = "datetime") -> Markup:
    """A ``<time>`` element: UTC in the markup, shown in the user's Airflow time zone by the page's script."""
    if value is None:
        return Markup("—")
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value.replace("Z", "+00:00"))
    text = moment.strftime("%Y-%m-%d %H:%M UTC")
    return Markup('<time datetime="{}" data-style="{}">{}</time>').format(moment.isoformat(), style, text)


def amount(value: Any, unit: str) -> str:
    """An amount in a budget's unit: grams of CO2e or kWh."""
    return mass(value) if unit == "gCO2e" else energy(value)


def method_label(method: str | None) -> str:
    """A metering method in words."""
    return METHOD_LABELS.get(method or "", method or "—")


def decision_label(decision: str | None) -> str:
    """A decision as words."""
    return DECISION_LABELS.get(decision or "", decision or "—")


def decision_badge(decision: str | None) -> Markup:
    """A coloured badge for a decision."""
    return Markup('<span class="badge decision-{}">{}</span>').format(decision or "none", decision_label(decision))


def figure(value: Any, unit: str) -> str:
    """A report figure in the units people read (g → kg → t, Wh → kWh → MWh, ratio as %); ``None`` → ``—``."""
    v = number(value)
    if v is None:
        return "—"
    if unit == "gCO2e":
        return mass(v)
    if unit == "kWh":
        return energy(v)
    if unit == "MWh":
        return energy(v * 1e3)
    if unit == "ratio":
        return f"{v * 100:.1f}%"
    if unit == "entries":
        return f"{v:,.0f}"
    return f"{v:.4g} {unit}"


def exact(value: Any) -> str:
    """A number as the report's JSON holds it, to six significant digits (``None`` → ``—``, never 0)."""
    v = number(value)
    return "—" if v is None else f"{v:.6g}"
