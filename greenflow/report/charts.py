"""The report's charts, drawn by matplotlib as SVG (embedded as data URIs in the HTML and the PDF).

Uses matplotlib's object API (``matplotlib.figure.Figure``), never pyplot: no global state, no GUI
backend, safe in a web server's threads.
"""

from __future__ import annotations

import base64
import io
from datetime import datetime
from typing import Any

from greenflow.report.model import Report

_MASS_UNITS = ((1e6, "t"), (1e3, "kg"), (1.0, "g"))


def _mass_scale(values: list[float]) -> tuple[float, str]:
    biggest = max((abs(v) for v in values), default=0.0)
    for factor, unit in _MASS_UNITS:
        if biggest >= factor:
            return factor, unit
    return 1.0, "g"


def _data_uri(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def daily_chart(report: Report) -> str | None:
    """Bars of location-based emissions and savings per day; ``None`` when no day has either."""
    from matplotlib.figure import Figure

    days = [d for d in report.charts.get("daily", []) if d["location_based_g"] is not None or d["saved_g"] is not None]
    if not days:
        return None
    emitted = [d["location_based_g"] or 0.0 for d in days]
    saved = [d["saved_g"] or 0.0 for d in days]
    factor, unit = _mass_scale(emitted + saved)
    figure = Figure(figsize=(8, 3.2))
    axes = figure.subplots()
    positions = list(range(len(days)))
    axes.bar([p - 0.2 for p in positions], [v / factor for v in emitted], width=0.4, label="emitted (location-based)",
             color="#5b6770")  # fmt: skip
    axes.bar([p + 0.2 for p in positions], [v / factor for v in saved], width=0.4, label="saved vs starting at once",
             color="#2e8b57")  # fmt: skip
    step = max(1, len(days) // 12)
    axes.set_xticks(positions[::step], [d["day"][5:] for d in days][::step])
    axes.set_ylabel(f"{unit} CO2e")
    axes.set_title("Daily emissions and savings (location-based)")
    axes.axhline(0, color="black", linewidth=0.5)
    axes.legend(loc="upper left", fontsize="small")
    return _data_uri(figure)


def intensity_chart(report: Report) -> str | None:
    """Each run's grid intensity over time, by region (deferred runs marked); ``None`` without runs."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num
    from matplotlib.figure import Figure

    runs = report.charts.get("runs", [])
    if not runs:
        return None
    figure = Figure(figsize=(8, 3.2))
    axes = figure.subplots()
    for region in sorted({r["region"] for r in runs}):
        for deferred, marker in ((False, "o"), (True, "^")):
            points = [r for r in runs if r["region"] == region and (r["decision"] == "deferred") == deferred]
            if points:
                axes.scatter(
                    [float(date2num(datetime.fromisoformat(p["at"]))) for p in points],  # type: ignore[no-untyped-call]
                    [p["intensity_g_per_kwh"] for p in points],
                    marker=marker,
                    s=18,
                    label=f"{region} {'deferred' if deferred else 'ran at once'}",
                )
    axes.set_ylabel("gCO2e/kWh")
    axes.set_title(
        "Grid intensity each run was charged at" + (" (thinned)" if report.charts.get("runs_thinned") else "")
    )
    axes.legend(loc="upper left", fontsize="small")
    locator = AutoDateLocator()  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    return _data_uri(figure)
