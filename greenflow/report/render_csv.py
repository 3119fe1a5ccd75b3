"""CSV: one row per breakdown line (the total first), columns as in the JSON's breakdown lines.

Empty cells are ``None`` ("no entry of the line had a number"), never 0.
"""

from __future__ import annotations

import csv
import io

from greenflow.report.model import BreakdownLine, Report

COLUMNS = (
    "period_start",
    "period_end",
    "scope",
    "dimension",
    "key",
    "entries",
    "refused",
    "unmeasured",
    "energy_kwh",
    "facility_energy_kwh",
    "estimated_kwh",
    "location_based_g",
    "embodied_g",
    "saved_g",
    "attempts",  # last, so that the columns before keep their positions
)


def render_csv(report: Report) -> str:
    """The report's breakdowns as CSV text."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for lines in report.breakdowns.values():
        for line in lines:
            writer.writerow(_row(report, line))
    return buffer.getvalue()


def _row(report: Report, line: BreakdownLine) -> list[object]:
    values = line.to_dict()
    fixed = [report.period.start.isoformat(), report.period.end.isoformat(), report.scope]
    return fixed + ["" if values[name] is None else values[name] for name in COLUMNS[3:]]
