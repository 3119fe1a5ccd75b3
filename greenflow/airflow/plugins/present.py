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
        "segment": row_segment(row),
    }


def row_segment(row: Row[Any]) -> dict[str, Any] | None:
    """A list row's segment (``index``, ``of``, ``final``, ``label``) when it is one of an interruptible attempt."""
    if row.segment_index is None:
        return None
    return {
        "index": row.segment_index,
        "of": row.segment_of,
        "final": bool(row.segment_final),
        "label": segment_label(row.segment_index, row.segment_of),
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
    # An interruptible attempt's segment (empty for an attempt in one entry): added last, so that existing
    # columns keep their positions.
    "segment_index",
    "segment_of",
    "segment_final",
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
def segment_info(entry: Entry) -> dict[str, Any] | None:
    """``extra["segment"]`` of an interruptible attempt's segment entry, else ``None``."""
    segment = entry.extra.get("segment") if isinstance(entry.extra, dict) else None
    return segment if isinstance(segment, dict) and isinstance(segment.get("link"), str) else None


def segment_label(index: Any, of: Any) -> str:
    """``segment 2/3`` (counting from 1); past the plan: ``segment 4, past the 3 planned``."""
    if not isinstance(index, int) or isinstance(index, bool):
        return "segment"
    if isinstance(of, int) and not isinstance(of, bool) and index >= of:
        return f"segment {index + 1}, past the {of} planned"
    return f"segment {index + 1}/{of}" if isinstance(of, int) else f"segment {index + 1}"


def attempts_json(entries: list[Entry]) -> list[dict[str, Any]]:
    """One item per attempt of a task instance (entries oldest first), JSON-safe and masked.

    The entries of an interruptible attempt's segments (linked by ``extra["segment"]["link"]``) are one
    attempt: see :func:`segmented_attempt_json`. Any other entry is an attempt of its own.
    """
    groups: list[list[Entry]] = []
    by_link: dict[str, list[Entry]] = {}
    for entry in entries:
        info = segment_info(entry)
        if info is None:
            groups.append([entry])
        elif info["link"] in by_link:
            by_link[info["link"]].append(entry)
        else:
            by_link[info["link"]] = group = [entry]
            groups.append(group)
    return [
        segmented_attempt_json(group) if segment_info(group[0]) is not None else attempt_json(group[0])
        for group in groups
    ]


def segmented_attempt_json(entries: list[Entry]) -> dict[str, Any]:
    """An interruptible attempt from its segments' entries (oldest first): one item with the attempt's totals.

    Its ``seq``, ``entry_id``, ``decision``, plan and forecast are its latest entry's (the final one once
    the work is done; ``in_progress`` until then); ``actual_start`` is the first segment's. Energy,
    emissions, savings and charges are the sums of the segments' own (each counted once); intensities are
    energy-weighted; the SCI is the attempt's (all its emissions over the units its final entry declares).
    ``segments`` lists every segment's entry.
    """
    last = entries[-1]
    item = attempt_json(last)
    final = segment_info(last) or {}
    item["in_progress"] = not final.get("final", False)
    item["actual_start"] = iso(entries[0].actual_start)
    item["segments"] = [_segment_row(entry) for entry in entries]
    kwh = [entry.energy_kwh for entry in entries]
    item["energy"]["total_kwh"] = _sum(kwh)
    item["energy"]["active_kwh"] = _sum(entry.active_energy_kwh for entry in entries)
    for component in item["energy"]["components"]:
        component["kwh"] = _sum(getattr(entry, f"energy_{component['name']}_kwh") for entry in entries)
    operational = _sum(entry.operational_g for entry in entries)
    embodied = _sum(entry.embodied_g for entry in entries)
    units = _sum(entry.functional_units for entry in entries)
    accounting = item["accounting"]
    accounting.update(
        intensity_g_per_kwh=_weighted([(e.intensity_g_per_kwh, e.energy_kwh) for e in entries]),
        operational_g=operational,
        embodied_g=embodied,
        counterfactual_intensity_g_per_kwh=_weighted(
            [(e.counterfactual_intensity_g_per_kwh, e.energy_kwh) for e in entries]
        ),
        counterfactual_g=_sum(entry.counterfactual_g for entry in entries),
        saved_g=_sum(entry.saved_g for entry in entries),
        functional_units=units,
        sci_g_per_unit=None if operational is None or not units else (operational + (embodied or 0.0)) / units,
    )
    item["budget"]["charged_g"] = _sum(entry.charged_g for entry in entries)
    item["budget"]["charged_kwh"] = _sum(entry.charged_kwh for entry in entries)
    item["run_intensity"] = _joined_run_intensity(entries)
    item["power"] = _joined_power(entries)
    return item


def _segment_row(entry: Entry) -> dict[str, Any]:
    """One segment's entry, as the Carbon tab's segment table lists it."""
    info = segment_info(entry) or {}
    return {
        "seq": entry.seq,
        "entry_id": entry.entry_id,
        "index": info.get("index"),
        "of": info.get("of"),
        "label": segment_label(info.get("index"), info.get("of")),
        "planned_start": info.get("planned_start"),
        "planned_end": info.get("planned_end"),
        "stop_at": info.get("stop_at"),
        "final": bool(info.get("final")),
        "past_plan": mask_text(info["past_plan"]) if isinstance(info.get("past_plan"), str) else None,
        "stopped": mask_text(info["stopped"]) if isinstance(info.get("stopped"), str) else None,
        "exit_code": info.get("exit_code") if isinstance(info.get("exit_code"), int) else None,
        "decision": entry.decision,
        "actual_start": iso(entry.actual_start),
        "ended_at": iso(entry.ended_at),
        "energy_kwh": number(entry.energy_kwh),
        "intensity_g_per_kwh": number(entry.intensity_g_per_kwh),
        "operational_g": number(entry.operational_g),
        "counterfactual_g": number(entry.counterfactual_g),
        "saved_g": number(entry.saved_g),
        "charged_g": number(entry.charged_g),
        "error": mask_text(entry.error),
    }


def _sum(values: Any) -> float | None:
    """Sum of the finite numbers among ``values``; ``None`` when there is none (never 0 for "not measured")."""
    numbers = [v for v in (number(value) for value in values) if v is not None]
    return sum(numbers) if numbers else None


def _weighted(pairs: list[tuple[Any, Any]]) -> float | None:
    """Mean of the values weighted by energy (plain mean when no energy was measured); ``None`` without values."""
    known = [(v, w) for v, w in ((number(value), number(weight)) for value, weight in pairs) if v is not None]
    weighted = [(v, w) for v, w in known if w is not None and w > 0]
    if weighted:
        return sum(v * w for v, w in weighted) / sum(w for _v, w in weighted)
    return sum(v for v, _w in known) / len(known) if known else None


def _joined_run_intensity(entries: list[Entry]) -> dict[str, Any] | None:
    """The intensity during every segment's run: their slots in order, coverage weighted by energy."""
    parts = [(_run_intensity(_carbon(entry)), entry.energy_kwh) for entry in entries]
    known = [(part, kwh) for part, kwh in parts if part is not None]
    if not known:
        return None
    warnings: list[str | None] = []
    for part, _kwh in known:
        warnings.extend(w for w in part["warnings"] if w not in warnings)
    return {
        "coverage": _weighted([(part["coverage"], kwh) for part, kwh in known]),
        "distribution": known[-1][0]["distribution"],
        "reason": "; ".join(str(part["reason"]) for part, _kwh in known if part["reason"]) or None,
        "warnings": warnings,
        "slots": [slot for part, _kwh in known for slot in part["slots"]],
    }


def _carbon(entry: Entry) -> dict[str, Any] | None:
    notes = entry.measurement_notes if isinstance(entry.measurement_notes, dict) else {}
    carbon = notes.get("carbon")
    return carbon if isinstance(carbon, dict) else None


def _joined_power(entries: list[Entry]) -> list[dict[str, Any]] | None:
    """Every segment's power traces, one trace per device with the segments' samples in order."""
    joined: dict[tuple[Any, Any], dict[str, Any]] = {}
    for entry in entries:
        notes = entry.measurement_notes if isinstance(entry.measurement_notes, dict) else {}
        for trace in _power(notes) or []:
            key = (trace["component"], trace["device"])
            if key in joined:
                joined[key]["samples"].extend(trace["samples"])
            else:
                joined[key] = {**trace, "samples": list(trace["samples"])}
    return list(joined.values()) or None


def attempt_json(entry: Entry) -> dict[str, Any]:
    """Everything the task-instance view shows about one attempt, JSON-safe and masked.

    An attempt in one entry; an interruptible attempt's segments go through :func:`attempts_json`.
    """
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
        "segments": None,
        "in_progress": False,
    }


def _window(plan: Any) -> dict[str, Any] | None:
    if not isinstance(plan, dict) or not plan.get("start") or not plan.get("end"):
        return None
    raw = plan.get("segments")
    # An interruptible attempt's plan lists its segments (the whole-job plan is the one-segment case).
    segments = (
        [
            {
                "index": s.get("index", i),
                "start": s.get("start"),
                "end": s.get("end"),
                "work_seconds": number(s.get("work_seconds")),
                "overhead_seconds": number(s.get("overhead_seconds")),
                "expected_g_per_kwh": number(s.get("expected_gco2_per_kwh")),
            }
            for i, s in enumerate(raw)
            if isinstance(s, dict) and s.get("start") and s.get("end")
        ]
        if isinstance(raw, list)
        else None
    )
    return {
        "start": plan.get("start"),
        "end": plan.get("end"),
        "latest_start": plan.get("latest_start"),
        "expected_g_per_kwh": number(plan.get("expected_gco2_per_kwh")),
        "now_g_per_kwh": number(plan.get("now_gco2_per_kwh")),
        "whole_job_g_per_kwh": number(plan.get("whole_job_gco2_per_kwh")),
        "savings_pct": number(plan.get("savings_pct")),
        "reason": mask_text(plan.get("reason")) if isinstance(plan.get("reason"), str) else None,
        "segments": segments,
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


def row_badge(row: Any) -> Markup:
    """A list row's decision badge; a segment paused as planned reads ``paused``, not as a red interruption."""
    if getattr(row, "segment_index", None) is not None and not row.segment_final and row.decision == "interrupted":
        return Markup(
            '<span class="badge decision-paused" title="recorded as interrupted: this segment stopped at its '
            'planned end and the next segment resumes the work">paused</span>'
        )
    return decision_badge(row.decision)


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
