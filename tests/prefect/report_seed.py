"""A month of Prefect entries for the report artifact's tests, and their totals recomputed by hand."""

from __future__ import annotations

from datetime import datetime, timedelta

from greenflow.ledger import Entry, Identity, Ledger


def seed_month(ledger: Ledger, at: datetime) -> list[Entry]:
    """Three measured attempts of two teams, one deferred, and one attempt with nothing measured."""
    rows = [
        ("train", "vision", "deferred", 4.25, 120.0, 260.0),
        ("train", "vision", "ran_now", 1.5, 200.0, 200.0),
        ("score", "search", "ran_now", 0.75, 310.0, 310.0),
    ]
    entries = []
    for i, (flow_name, team, decision, kwh, intensity, counter) in enumerate(rows):
        entries.append(
            Entry.for_attempt(
                Identity("prefect", flow_name, f"run-{i}", f"{flow_name}-0"),
                decision,  # type: ignore[arg-type]
                recorded_at=at + timedelta(hours=i),
                region="ES",
                team=team,
                energy_kwh=kwh,
                energy_gpu_kwh=kwh,
                method_gpu="nvml_energy_counter",
                intensity_g_per_kwh=intensity,
                operational_g=kwh * intensity,
                counterfactual_intensity_g_per_kwh=counter,
                counterfactual_g=kwh * counter,
                saved_g=kwh * (counter - intensity),
            )
        )
    entries.append(
        Entry.for_attempt(
            Identity("prefect", "train", "run-9", "train-0"),
            "failed",
            recorded_at=at + timedelta(hours=5),
            region="ES",
            team="vision",
            measurement_notes={"gpu": "no NVIDIA GPU: the NVML library is not found"},
        )
    )
    return [ledger.append(entry) for entry in entries]


def totals(entries: list[Entry]) -> dict[str, float]:
    """The totals recomputed from the entries (not through greenflow.report)."""
    measured = [e for e in entries if e.energy_kwh is not None]
    return {
        "energy_kwh": sum(e.energy_kwh or 0.0 for e in measured),
        "location_based_g": sum(e.operational_g or 0.0 for e in measured),
        "saved_g": sum(e.saved_g or 0.0 for e in measured),
    }
