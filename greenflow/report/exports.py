"""Exports others read: SCI in the Green Software Foundation's terms, and one run's evidence as JSON.

- :func:`sci_export`: per functional unit, the SCI equation's terms (E, I, M, R) and the result, with the
  software boundary, the time period and how each term was quantified (ISO/IEC 21031:2024 asks a report
  to state these). SCI is location-based by definition: market-based instruments never lower it.
- :func:`run_evidence`: what a model card or an EU AI Act technical file can cite for one run (energy
  per component with its method, hardware, region, intensity and its source, emissions, and the
  ledger position with the anchor that covers it). The BoAmps schema (Boavizta) is not available
  offline, so greenflow does not emit it.
"""

from __future__ import annotations

from typing import Any

from greenflow.ledger import Entry
from greenflow.report.figures import METERED_METHODS
from greenflow.report.model import Report

SCI_SCHEMA = "greenflow.sci/1"
RUN_SCHEMA = "greenflow.run-evidence/1"
BOAMPS = "not emitted: the BoAmps schema (Boavizta AI energy) is not available offline to validate against"


def sci_export(report: Report) -> dict[str, Any]:
    """The report's SCI lines as the terms of ``SCI = (E x I + M) per R``."""
    data = report.to_dict()
    share = data["figures"]["estimated_share"]["value"]
    units = []
    for line in report.sci:
        intensity = line.operational_g / line.energy_kwh if line.energy_kwh else None
        units.append(
            {
                "functional_unit": line.functional_unit,
                "R": line.units,
                "E_kwh": line.energy_kwh,
                "I_g_per_kwh": intensity,
                "I_note": "energy-weighted location-based grid intensity of the runs (E x I = Σ operational_g)",
                "E_times_I_g": line.operational_g,
                "M_g": line.embodied_g,
                "M_note": "embodied emissions the runs declared (time- and resource-share is the user's)"
                if line.embodied_g is not None
                else "no run declared embodied emissions: M not included",
                "sci_g_per_R": line.sci_g_per_unit,
                "runs": line.entries,
                "runs_left_out_without_emissions": line.excluded,
            }
        )
    return {
        "schema": SCI_SCHEMA,
        "specification": "Green Software Foundation Software Carbon Intensity (ISO/IEC 21031:2024)",
        "software_boundary": f"ledger entries in scope {data['scope']}: the metered GPU/CPU/DRAM energy of each "
        "run, times the facility's PUE where declared",
        "time_period": data["period"],
        "method": "location-based (the SCI excludes market-based instruments)",
        "quantification": {
            "energy": "measured by NVML/RAPL where the method says so, else estimated",
            "estimated_share_of_energy": share,
            "intensity": "the grid intensity over each run, from the source recorded per entry "
            "(see the report's evidence.intensity_sources)",
        },
        "units": units,
        "ledger": {
            "verification": data["evidence"]["verification"].get("ok"),
            "head_seq": data["evidence"]["verification"].get("head_seq"),
            "head_hash": data["evidence"]["verification"].get("head_hash"),
            "anchor": data["evidence"]["anchor"],
        },
    }


def run_evidence(entry: Entry, *, verified: bool | None, anchor: dict[str, Any]) -> dict[str, Any]:
    """One run's evidence (``greenflow.run-evidence/1``); ``None`` values are "not measured / not declared"."""
    components = {
        name: {
            "energy_kwh": getattr(entry, f"energy_{name}_kwh"),
            "method": getattr(entry, f"method_{name}"),
            "note": (entry.measurement_notes or {}).get(name),
        }
        for name in ("gpu", "cpu", "dram")
    }
    anchored_seq = anchor.get("seq")
    covered = (
        anchor.get("status") == "matches" and isinstance(anchored_seq, int) and entry.seq is not None
        and entry.seq <= anchored_seq
    )  # fmt: skip
    return {
        "schema": RUN_SCHEMA,
        "run": {
            "orchestrator": entry.orchestrator,
            "workflow_id": entry.workflow_id,
            "run_id": entry.run_id,
            "task_id": entry.task_id,
            "attempt": entry.attempt,
            "map_index": entry.map_index,
            "team": entry.team,
            "decision": entry.decision,
            "started": entry.actual_start.isoformat() if entry.actual_start else None,
            "ended": entry.ended_at.isoformat() if entry.ended_at else None,
        },
        "energy": {
            "total_kwh": entry.energy_kwh,
            "total_reason": None if entry.energy_kwh is not None else "nothing measured (see components' notes)",
            "components": components,
            "estimated": any(c["method"] not in (None, *METERED_METHODS) for c in components.values()),
            "pue": entry.pue,
        },
        "hardware": {"host": entry.host, "devices": entry.devices},
        "region": entry.region,
        "intensity": {
            "g_per_kwh": entry.intensity_g_per_kwh,
            "source": entry.intensity_source,
            "forecast_provider": entry.forecast_provider,
            "forecast_signal": entry.forecast_signal,
        },
        "emissions": {
            "operational_g": entry.operational_g,
            "embodied_g": entry.embodied_g,
            "method": "location-based",
            "functional_unit": entry.functional_unit,
            "functional_units": entry.functional_units,
            "sci_g_per_unit": entry.sci_g_per_unit,
            "counterfactual_g": entry.counterfactual_g,
            "saved_g": entry.saved_g,
        },
        "ledger": {
            "entry_id": entry.entry_id,
            "seq": entry.seq,
            "entry_hash": entry.entry_hash,
            "recorded_at": entry.recorded_at.isoformat() if entry.recorded_at else None,
            "chain_verified": verified,
            "anchor": anchor,
            "covered_by_anchor": covered,
        },
        "boamps": BOAMPS,
    }
