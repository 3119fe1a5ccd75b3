"""The computation: totals, splits, SCI and breakdowns from the attempts of a period, in plain sums.

Rules every figure follows (docs/reports.md restates them for readers):

- energy is the metered (IT) energy ``energy_kwh``; facility energy is that x PUE (1 when undeclared);
- a component's energy is *measured* when its method is a meter (NVML, RAPL), *estimated* otherwise
  (``estimate``; ``simulated``, a declared draw for stand-in work, never a measurement); energy in
  ``energy_kwh`` that no component accounts for is *unattributed*
  and counts as not measured;
- attempts with no energy (and not refused by a budget) are listed, never counted as 0: a total over
  them says how much of the work it covers instead;
- location-based emissions are the entries' ``operational_g``; savings are ``saved_g`` against each
  entry's own counterfactual (start at once in its home region), location-based by construction.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from greenflow.report.attempt import ReportAttempt
from greenflow.report.model import BreakdownLine, Figure, SciLine

NO_KEY = "(none)"
# The methods that read a meter; any other method (estimate, simulated, one this version does not know)
# is counted as estimated, so nothing is presented as measured that was not.
METERED_METHODS = frozenset({"nvml_energy_counter", "nvml_power_sampling", "rapl"})
# Float noise below this share of an entry's energy is not "unattributed" energy.
_NOISE = 1e-9


def split_energy(attempt: ReportAttempt) -> tuple[float, float, float]:
    """(measured, estimated, unattributed) kWh of one attempt with energy."""
    assert attempt.energy_kwh is not None
    measured = estimated = 0.0
    for kwh, method in (
        (attempt.energy_gpu_kwh, attempt.method_gpu),
        (attempt.energy_cpu_kwh, attempt.method_cpu),
        (attempt.energy_dram_kwh, attempt.method_dram),
    ):
        if kwh is None or method is None:
            continue
        if method in METERED_METHODS:
            measured += kwh
        else:
            estimated += kwh
    rest = attempt.energy_kwh - measured - estimated
    return measured, estimated, (0.0 if abs(rest) <= _NOISE * max(attempt.energy_kwh, 1e-12) else rest)


def optional_sum(values: Iterable[float | None]) -> float | None:
    """Sum of the values that are numbers; ``None`` when none is (never 0 for "nothing known")."""
    numbers = [v for v in values if v is not None]
    return sum(numbers) if numbers else None


def counts(attempts: Sequence[ReportAttempt]) -> dict[str, int]:
    """How many entries, refused, ran, measured, unmeasured."""
    refused = sum(1 for a in attempts if a.refused)
    measured = sum(1 for a in attempts if a.energy_kwh is not None)
    return {
        "entries": len(attempts),
        "refused_by_budget": refused,
        "ran_or_attempted": len(attempts) - refused,
        "with_energy": measured,
        "without_energy": sum(1 for a in attempts if a.unmeasured),
        "with_location_based_emissions": sum(1 for a in attempts if a.operational_g is not None),
    }


def energy_tables(attempts: Sequence[ReportAttempt]) -> tuple[dict[str, float], dict[str, float]]:
    """kWh by method (``unrecorded`` for unattributed energy) and by component (``unattributed``)."""
    by_method: dict[str, float] = defaultdict(float)
    by_component: dict[str, float] = defaultdict(float)
    for attempt in attempts:
        if attempt.energy_kwh is None:
            continue
        for component, kwh, method in attempt.components():
            by_method[method or "unrecorded"] += kwh
            by_component[component] += kwh
        rest = split_energy(attempt)[2]
        if rest:
            by_method["unrecorded"] += rest
            by_component["unattributed"] += rest
    return dict(sorted(by_method.items())), dict(sorted(by_component.items()))


def totals(attempts: Sequence[ReportAttempt]) -> dict[str, Figure]:
    """The headline figures (location-based only; market-based figures are added by the instruments)."""
    with_energy = [a for a in attempts if a.energy_kwh is not None]
    unmeasured = [a for a in attempts if a.unmeasured]
    missing = _missing_note(unmeasured)
    figures: dict[str, Figure] = {}
    if not with_energy:
        reason = "no entry in the period and scope has measured or estimated energy" + missing
        for name, unit in (
            ("energy_kwh", "kWh"),
            ("energy_mwh", "MWh"),
            ("facility_energy_kwh", "kWh"),
            ("measured_energy_kwh", "kWh"),
            ("estimated_energy_kwh", "kWh"),
            ("unattributed_energy_kwh", "kWh"),
            ("estimated_share", "ratio"),
        ):
            figures[name] = Figure(None, unit, "none: there is no number", reason=reason)
    else:
        splits = [split_energy(a) for a in with_energy]
        energy = sum(a.energy_kwh for a in with_energy if a.energy_kwh is not None)
        measured = sum(s[0] for s in splits)
        estimated = sum(s[1] for s in splits)
        unattributed = sum(s[2] for s in splits)
        share = (estimated + unattributed) / energy if energy > 0 else None
        basis = (
            f"sum of energy_kwh over {len(with_energy)} entries; {_pct(share)} of it is estimated "
            f"(method 'estimate' or 'simulated') or unattributed to a metered component{missing}"
        )
        figures["energy_kwh"] = Figure(energy, "kWh", basis)
        figures["energy_mwh"] = Figure(energy / 1000, "MWh", basis)
        facility = sum(a.facility_energy_kwh or 0.0 for a in with_energy)
        declared_pue = sum(1 for a in with_energy if a.pue is not None)
        figures["facility_energy_kwh"] = Figure(
            facility,
            "kWh",
            f"energy x PUE; {declared_pue} of {len(with_energy)} entries declared a PUE, the others count at PUE 1",
        )
        figures["measured_energy_kwh"] = Figure(measured, "kWh", "components metered by NVML or RAPL" + missing)
        figures["estimated_energy_kwh"] = Figure(
            estimated,
            "kWh",
            "components with method 'estimate' (TDP x utilisation or a declared figure) or 'simulated'",
        )
        figures["unattributed_energy_kwh"] = Figure(
            unattributed, "kWh", "energy_kwh not accounted for by any component's number (no method recorded)"
        )
        figures["estimated_share"] = (
            Figure(share, "ratio", "(estimated + unattributed) / energy_kwh")
            if share is not None
            else Figure(None, "ratio", "none", reason="the total energy is 0 kWh")
        )
    figures["location_based_g"] = _location_based(with_energy, missing)
    figures["embodied_g"] = _embodied(attempts)
    figures.update(_savings(attempts))
    refused = sum(1 for a in attempts if a.refused)
    figures["budget_refusals"] = Figure(
        float(refused), "entries", "count of entries with decision skipped_budget (work a budget refused)"
    )
    return figures


def _location_based(with_energy: Sequence[ReportAttempt], missing: str) -> Figure:
    covered = [a for a in with_energy if a.operational_g is not None]
    if not covered:
        return Figure(
            None,
            "gCO2e",
            "none",
            reason="no entry with energy has a grid intensity (operational_g is empty on all of them)" + missing,
        )
    facility = sum(a.facility_energy_kwh or 0.0 for a in with_energy)
    covered_facility = sum(a.facility_energy_kwh or 0.0 for a in covered)
    coverage = covered_facility / facility if facility > 0 else 1.0
    left_out = [a.seq for a in with_energy if a.operational_g is None]
    estimated_intensity = sum(1 for a in covered if (a.intensity_source or "").startswith("forecast"))
    return Figure(
        sum(a.operational_g for a in covered if a.operational_g is not None),
        "gCO2e",
        f"sum of operational_g (facility energy x grid intensity over the run) of {len(covered)} entries; "
        f"coverage {_pct(coverage)} of facility energy"
        + (f"; left out (energy but no intensity): seq {_seqs(left_out)}" if left_out else "")
        + (f"; {estimated_intensity} entries used a forecast, not actual intensity" if estimated_intensity else "")
        + missing,
        coverage=coverage,
    )


def _embodied(attempts: Sequence[ReportAttempt]) -> Figure:
    declared = [a.embodied_g for a in attempts if a.embodied_g is not None and not a.refused]
    if not declared:
        return Figure(None, "gCO2e", "none", reason="no entry in the period declares embodied emissions (embodied_g)")
    return Figure(
        sum(declared),
        "gCO2e",
        f"sum of the embodied_g {len(declared)} entries declared (the user's figure, not measured)",
    )


def _savings(attempts: Sequence[ReportAttempt]) -> dict[str, Figure]:
    known = [a for a in attempts if a.saved_g is not None and a.counterfactual_g is not None]
    if not known:
        reason = "no entry has a counterfactual (intensity had the attempt started at once)"
        return {
            "counterfactual_g": Figure(None, "gCO2e", "none", reason=reason),
            "saved_g": Figure(None, "gCO2e", "none", reason=reason),
            "deferral_saved_g": Figure(None, "gCO2e", "none", reason=reason),
        }
    deferred = [a for a in known if a.decision == "deferred"]
    note = (
        f"location-based, over {len(known)} entries with a counterfactual; the counterfactual is the home "
        "region's mean intensity had the attempt started at its request, itself a forecast or an actual series"
    )
    return {
        "counterfactual_g": Figure(sum(a.counterfactual_g or 0.0 for a in known), "gCO2e", note),
        "saved_g": Figure(sum(a.saved_g or 0.0 for a in known), "gCO2e", note),
        "deferral_saved_g": (
            Figure(
                sum(a.saved_g or 0.0 for a in deferred),
                "gCO2e",
                f"saved_g of the {len(deferred)} deferred entries (negative: waiting cost)",
            )
            if deferred
            else Figure(None, "gCO2e", "none", reason="no deferred entry has a counterfactual in the period")
        ),
    }


def savings_by_decision(attempts: Sequence[ReportAttempt]) -> dict[str, float]:
    """saved_g summed per decision (ran_now, deferred, interrupted, …), entries with a number only."""
    out: dict[str, float] = defaultdict(float)
    for attempt in attempts:
        if attempt.saved_g is not None:
            out[attempt.decision] += attempt.saved_g
    return dict(sorted(out.items()))


def sci_lines(attempts: Sequence[ReportAttempt]) -> tuple[SciLine, ...]:
    """SCI per declared functional unit: (Σ operational + Σ embodied) / Σ units over entries with emissions."""
    groups: dict[str, list[ReportAttempt]] = defaultdict(list)
    for attempt in attempts:
        if attempt.functional_unit and attempt.functional_units and attempt.functional_units > 0:
            groups[attempt.functional_unit].append(attempt)
    lines = []
    for unit, members in sorted(groups.items()):
        counted = [a for a in members if a.operational_g is not None]
        if not counted:
            continue
        operational = sum(a.operational_g or 0.0 for a in counted)
        embodied = optional_sum(a.embodied_g for a in counted)
        units = sum(a.functional_units or 0.0 for a in counted)
        lines.append(
            SciLine(
                functional_unit=unit,
                entries=len(counted),
                units=units,
                energy_kwh=sum(a.facility_energy_kwh or 0.0 for a in counted),
                operational_g=operational,
                embodied_g=embodied,
                sci_g_per_unit=(operational + (embodied or 0.0)) / units,
                excluded=len(members) - len(counted),
            )
        )
    return tuple(lines)


DIMENSIONS = ("total", "team", "workflow", "region", "month", "day")


def breakdowns(attempts: Sequence[ReportAttempt]) -> dict[str, tuple[BreakdownLine, ...]]:
    """One line for the total, then one per team, workflow, region, month and day (keys sorted).

    One pass per dimension over contributions computed once per attempt: a year of a busy ledger is
    hundreds of thousands of attempts.
    """
    contributions = [_contribution(a) for a in attempts]
    days = [a.recorded_at.date().isoformat() for a in attempts]
    keys: dict[str, list[str]] = {
        "total": ["all"] * len(attempts),
        "team": [a.team or NO_KEY for a in attempts],
        "workflow": [a.workflow_id for a in attempts],
        "region": [a.region or NO_KEY for a in attempts],
        "month": [day[:7] for day in days],
        "day": days,
    }
    out: dict[str, tuple[BreakdownLine, ...]] = {}
    for dimension in DIMENSIONS:
        groups: dict[str, list[tuple[float, ...]]] = defaultdict(list)
        for key, contribution in zip(keys[dimension], contributions, strict=True):
            groups[key].append(contribution)
        # Column sums run in C (sum over zip): a year of entries is hundreds of thousands of rows.
        out[dimension] = tuple(
            _line(dimension, key, [sum(column) for column in zip(*members, strict=True)])
            for key, members in sorted(groups.items())
        )
    return out


# A contribution: entries, refused, unmeasured, then (sum, count) for energy, facility energy, estimated
# energy, location-based, embodied and saved; a count of 0 makes the line's figure None, not 0.
_WIDTH = 15


def _contribution(attempt: ReportAttempt) -> tuple[float, ...]:
    energy = attempt.energy_kwh
    if energy is not None:
        _measured, estimated, unattributed = split_energy(attempt)
        energy_part: tuple[float, ...] = (
            energy, 1.0, energy * (attempt.pue or 1.0), 1.0, estimated + unattributed, 1.0
        )  # fmt: skip
    else:
        energy_part = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    embodied = attempt.embodied_g if not attempt.refused else None
    return (
        1.0,
        1.0 if attempt.refused else 0.0,
        1.0 if attempt.unmeasured else 0.0,
        *energy_part,
        *_pair(attempt.operational_g),
        *_pair(embodied),
        *_pair(attempt.saved_g),
    )


def _pair(value: float | None) -> tuple[float, float]:
    return (0.0, 0.0) if value is None else (value, 1.0)


def _line(dimension: str, key: str, totals: Sequence[float]) -> BreakdownLine:
    def known(index: int) -> float | None:
        return totals[index] if totals[index + 1] else None

    return BreakdownLine(
        dimension=dimension,
        key=key,
        entries=int(totals[0]),
        refused=int(totals[1]),
        unmeasured=int(totals[2]),
        energy_kwh=known(3),
        facility_energy_kwh=known(5),
        estimated_kwh=known(7),
        location_based_g=known(9),
        embodied_g=known(11),
        saved_g=known(13),
    )


def chart_series(
    day_lines: Sequence[BreakdownLine], attempts: Sequence[ReportAttempt], *, max_runs: int = 2000
) -> dict[str, Any]:
    """Daily emissions and savings (from the day breakdown), and each run's intensity (at most ``max_runs``)."""
    runs = [a for a in attempts if a.intensity_g_per_kwh is not None]
    step = max(1, len(runs) // max_runs)
    return {
        "daily": [
            {"day": line.key, "location_based_g": line.location_based_g, "saved_g": line.saved_g} for line in day_lines
        ],
        "runs": [
            {
                "at": (a.actual_start or a.recorded_at).isoformat(),
                "region": a.region or NO_KEY,
                "intensity_g_per_kwh": a.intensity_g_per_kwh,
                "decision": a.decision,
            }
            for a in runs[::step]
        ],
        "runs_thinned": step > 1,
    }


def _missing_note(unmeasured: Sequence[ReportAttempt]) -> str:
    if not unmeasured:
        return ""
    return f"; {len(unmeasured)} attempts without energy are not in it (listed in evidence.unmeasured_attempts)"


def _pct(share: float | None) -> str:
    return "n/a" if share is None else f"{share:.1%}"


def _seqs(seqs: Sequence[int], limit: int = 20) -> str:
    shown = ", ".join(str(s) for s in seqs[:limit])
    return shown + (f" and {len(seqs) - limit} more" if len(seqs) > limit else "")
