"""A generated ledger with every kind of entry a report must handle, in two teams and two regions.

Shared by tests/report and tests/cli (``from tests.report.mixed_ledger import ...``).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from greenflow.ledger import Budget, Entry, Identity, Ledger

NOVEMBER = datetime(2026, 11, 1, tzinfo=UTC)
TEAMS = {"vision": "GB", "nlp": "FR"}


def make_entry(rng: random.Random, n: int, at: datetime, team: str, kind: str) -> Entry:
    workflow = f"{team}_{'train' if n % 3 else 'eval'}"
    identity = Identity("airflow", workflow, f"run-{n}", f"task-{n % 4}")
    region = TEAMS[team] if n % 7 else ("FR" if TEAMS[team] == "GB" else "GB")
    fields: dict[str, Any] = {
        "team": team,
        "tags": ("gpu", team) if n % 2 else (team,),
        "region": region,
        "recorded_at": at,
        "actual_start": at - timedelta(minutes=30),
        "ended_at": at,
        "forecast_provider": "carbon-intensity-uk" if region == "GB" else "electricitymaps",
        "forecast_signal": "average" if region == "GB" else "lifecycle",
        "budget": "monthly" if team == "vision" else None,
    }
    if kind == "refused":
        return Entry.for_attempt(
            identity,
            "skipped_budget",
            **(fields | {"budget": "monthly"}),
            measurement_notes={"reason": "not run: the budget could not cover its estimate"},
        )
    if kind == "unmeasured":
        return Entry.for_attempt(
            identity,
            "ran_now",
            **fields,
            measurement_notes={"gpu": "no GPU selected", "cpu": "no RAPL"},
            error="boom" if n % 2 else None,
        )
    gpu = rng.uniform(0.5, 3.0)
    cpu = rng.uniform(0.05, 0.4)
    dram = rng.uniform(0.01, 0.05) if kind != "estimated" else None
    pue = 1.2 if team == "vision" else None
    energy = gpu + cpu + (dram or 0.0)
    methods: dict[str, Any] = {
        "method_gpu": "estimate" if kind == "estimated" else "nvml_energy_counter",
        "method_cpu": "estimate" if kind in ("estimated", "cpu_estimated") else "rapl",
        "method_dram": None if dram is None else "rapl",
    }
    components: dict[str, Any] = {"energy_gpu_kwh": gpu, "energy_cpu_kwh": cpu, "energy_dram_kwh": dram}
    if kind == "unattributed":  # an entry written by hand: a total with no per-component numbers
        components = {"energy_gpu_kwh": None, "energy_cpu_kwh": None, "energy_dram_kwh": None}
        methods = {"method_gpu": None, "method_cpu": None, "method_dram": None}
    intensity = rng.uniform(40, 90) if region == "FR" else rng.uniform(120, 260)
    facility = energy * (pue or 1.0)
    operational = None if kind == "no_intensity" else facility * intensity
    deferred = kind == "deferred"
    counterfactual = None if operational is None else operational * (rng.uniform(1.1, 1.6) if deferred else 1.0)
    units = float(rng.randint(1, 20)) if n % 3 else None
    embodied = 150.0 if team == "vision" and n % 2 else None
    return Entry.for_attempt(
        identity,
        "deferred" if deferred else "ran_now",
        **fields,
        deferred_seconds=3600.0 if deferred else 0.0,
        energy_kwh=energy,
        pue=pue,
        intensity_g_per_kwh=None if operational is None else intensity,
        intensity_source=None if operational is None else ("actual" if n % 2 else "forecast (no actuals)"),
        operational_g=operational,
        embodied_g=embodied,
        functional_unit="1k images" if team == "vision" and units else ("1M tokens" if units else None),
        functional_units=units,
        counterfactual_g=counterfactual,
        saved_g=None if counterfactual is None or operational is None else counterfactual - operational,
        charged_g=None if operational is None else operational + (embodied or 0.0),
        **components,
        **methods,
    )


KINDS = ("measured", "measured", "deferred", "estimated", "cpu_estimated", "unmeasured", "refused", "no_intensity")


def write_mixed_ledger(url: str, *, per_team: int = 40, seed: int = 17) -> Ledger:
    """Entries through November 2026 (and a few just outside it) for teams vision (GB) and nlp (FR)."""
    rng = random.Random(seed)
    ledger = Ledger(url)
    ledger.budgets.set(Budget.parse("monthly", "5kg", "month", "team:vision"))
    n = 0
    for team in TEAMS:
        for i in range(per_team):
            n += 1
            kind = "unattributed" if i == 5 else KINDS[i % len(KINDS)]
            at = NOVEMBER + timedelta(days=rng.randint(0, 29), hours=rng.randint(0, 23), minutes=rng.randint(0, 59))
            ledger.append(make_entry(rng, n, at, team, kind))
        for outside in (NOVEMBER - timedelta(minutes=1), NOVEMBER + timedelta(days=30)):  # Oct 31, Dec 1
            n += 1
            ledger.append(make_entry(rng, n, outside, team, "measured"))
    return ledger
