"""Market-based Scope 2: the period's energy matched hour by hour to the instruments valid that hour.

Rules (docs/reports.md states them for readers):

- energy: each attempt's facility energy (metered x PUE), in its region. It is spread evenly over the
  hours between ``actual_start`` and ``ended_at`` when both lie inside the report's period; otherwise
  (a replayed trace's times, a missing start) it sits in the hour of ``recorded_at``;
- supply: an instrument's MWh are spread evenly over its validity, so each hour holds
  ``MWh x 1000 / validity hours`` kWh (pro rata for a partial hour). An hour's unused supply is lost:
  hourly matching does not carry it to other hours;
- matching: in each region-hour the instruments are applied oldest first (recorded order) until the
  energy is covered; what is left is charged at the region's residual-mix factor, which the user must
  declare (``greenflow instruments residual``). Without it, and energy left unmatched, there is no
  market-based figure, only the reason;
- instruments cover all of the ledger's energy in a region-hour, whatever the report's scope: a scoped
  report gets its pro-rata share of each hour's matched energy, so two teams cannot both claim a PPA;
- an instrument or residual factor whose stored hash no longer matches its content was changed outside
  greenflow: the figure is withheld with that reason.

Market-based figures never enter a comparison with location-based ones; savings stay location-based.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from greenflow.ledger import Ledger
from greenflow.report.attempt import ReportAttempt
from greenflow.report.instruments import Instrument, InstrumentStore, Stored, describe
from greenflow.report.model import Figure
from greenflow.report.period import ReportPeriod

HOUR = timedelta(hours=1)
Hourly = dict[tuple[str, datetime], float]
UNCERTAINTY = (
    "market-based (GHG Protocol Scope 2): facility energy matched hourly to the declared instruments, the rest at "
    "the declared residual-mix factor; not comparable with location_based_g, and savings stay location-based"
)


def hourly_energy(attempts: Sequence[ReportAttempt], period: ReportPeriod) -> tuple[Hourly, int]:
    """Facility kWh per (region, hour start); also how many attempts with energy had no region."""
    energy: Hourly = defaultdict(float)
    no_region = 0
    for attempt in attempts:
        kwh = attempt.facility_energy_kwh
        if kwh is None:
            continue
        if not attempt.region:
            no_region += 1
            continue
        start, end = attempt.actual_start, attempt.ended_at
        if start is None or end is None or end <= start or not (period.contains(start) and end <= period.end):
            energy[(attempt.region, _hour(attempt.recorded_at))] += kwh
            continue
        total = (end - start).total_seconds()
        hour = _hour(start)
        while hour < end:
            overlap = (min(end, hour + HOUR) - max(start, hour)).total_seconds()
            if overlap > 0:
                energy[(attempt.region, hour)] += kwh * overlap / total
            hour += HOUR
    return dict(energy), no_region


def supply_in_hour(instrument: Instrument, hour: datetime) -> float:
    """kWh the instrument holds for the hour starting at ``hour``."""
    overlap = (min(instrument.valid_to, hour + HOUR) - max(instrument.valid_from, hour)).total_seconds()
    return instrument.kwh_per_hour() * overlap / 3600 if overlap > 0 else 0.0


def market_based(
    ledger: Ledger, period: ReportPeriod, attempts: Sequence[ReportAttempt], all_attempts: Sequence[ReportAttempt]
) -> tuple[Figure, dict[str, Any]]:
    """The market-based figure for ``attempts`` (the report's scope) and the section explaining it.

    ``all_attempts`` are the period's attempts in every scope (the same list when the scope is ``all``).
    """
    store = InstrumentStore(ledger)
    mine, no_region = hourly_energy(attempts, period)
    everyone = mine if all_attempts is attempts else hourly_energy(all_attempts, period)[0]
    regions = sorted({region for region, _hour in mine})
    residuals = store.residuals()
    instruments = {region: store.instruments(region) for region in regions}
    lines: list[dict[str, Any]] = []
    problems: list[str] = []
    total = 0.0
    for region in regions:
        line, problem = _region(region, mine, everyone, instruments[region], residuals.get(region))
        lines.append(line)
        if problem:
            problems.append(problem)
        elif line["market_based_g"] is not None:
            total += line["market_based_g"]
    if no_region:
        problems.append(f"{no_region} entries with energy have no region, so no instrument or residual mix applies")
    section = {
        "method": "hourly matching; instruments oldest first; volume spread evenly over validity; residual mix "
        "declared by the user",
        "regions": lines,
        "residual_mix": {r: s.value.content() | {"intact": s.intact} for r, s in sorted(residuals.items())},
    }
    if not regions and not no_region:
        return Figure(None, "gCO2e", UNCERTAINTY, reason="no entry in the period and scope has energy"), section
    if problems:
        return Figure(None, "gCO2e", UNCERTAINTY, reason="; ".join(problems)), section
    return Figure(total, "gCO2e", UNCERTAINTY + _matched_note(lines)), section


def _region(
    region: str,
    mine: Hourly,
    everyone: Hourly,
    stored: Sequence[Stored[Instrument]],
    residual: Any,
) -> tuple[dict[str, Any], str | None]:
    tampered = [s for s in stored if not s.intact]
    usable = [s.value for s in stored if s.intact]  # hashing once, not once per hour
    hours = sorted(hour for r, hour in mine if r == region)
    matched_mine = 0.0
    instrument_g = 0.0
    used: dict[str, float] = defaultdict(float)
    for hour in hours:
        demand_all = everyone.get((region, hour), 0.0)
        share = mine[(region, hour)] / demand_all if demand_all > 0 else 0.0
        remaining = demand_all
        for item in usable:
            if remaining <= 0:
                break
            take = min(remaining, supply_in_hour(item, hour))
            if take > 0:
                remaining -= take
                used[item.instrument_id] += take * share
                matched_mine += take * share
                instrument_g += take * share * item.factor_g_per_kwh
    energy = sum(mine[(region, hour)] for hour in hours)
    unmatched = energy - matched_mine
    unmatched = 0.0 if unmatched <= 1e-9 * max(energy, 1e-12) else unmatched  # float noise of a full match
    line: dict[str, Any] = {
        "region": region,
        "facility_energy_kwh": energy,
        "matched_kwh": matched_mine,
        "unmatched_kwh": unmatched,
        "instrument_g": instrument_g,
        "residual_factor_g_per_kwh": None,
        "residual_source": None,
        "residual_g": None,
        "market_based_g": None,
        "instruments": [
            row | {"matched_kwh_in_scope": used.get(row["instrument_id"], 0.0)} for row in describe(stored)
        ],
    }
    if tampered:
        names = ", ".join(s.value.instrument_id for s in tampered)
        return line, f"{region}: instrument(s) {names} changed outside greenflow (hash mismatch)"
    if residual is not None:
        if not residual.intact:
            return line, f"{region}: the residual-mix factor changed outside greenflow (hash mismatch)"
        line["residual_factor_g_per_kwh"] = residual.value.factor_g_per_kwh
        line["residual_source"] = residual.value.source
        line["residual_g"] = unmatched * residual.value.factor_g_per_kwh
    elif unmatched > 0:
        return line, (
            f"{region}: {unmatched:.6g} kWh not covered by instruments and no residual-mix factor declared "
            f"(greenflow instruments residual --region {region} --factor G_PER_KWH --source ...)"
        )
    else:
        line["residual_g"] = 0.0
    line["market_based_g"] = instrument_g + line["residual_g"]
    return line, None


def _matched_note(lines: Sequence[dict[str, Any]]) -> str:
    energy = sum(line["facility_energy_kwh"] for line in lines)
    matched = sum(line["matched_kwh"] for line in lines)
    share = matched / energy if energy > 0 else 0.0
    return f"; {share:.1%} of the facility energy matched to instruments"


def _hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)
