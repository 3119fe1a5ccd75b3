"""HTML: the report as one self-contained page (Jinja2 template, charts inline); the PDF prints it."""

from __future__ import annotations

import math
from typing import Any

from greenflow.report.model import Report

# Headline figures in reading order, with the label a reader sees.
LABELS = {
    "energy_kwh": "Energy (metered IT)",
    "energy_mwh": "Energy (metered IT)",
    "facility_energy_kwh": "Facility energy (x PUE)",
    "measured_energy_kwh": "of which measured",
    "estimated_energy_kwh": "of which estimated",
    "unattributed_energy_kwh": "of which unattributed",
    "estimated_share": "Share not measured",
    "location_based_g": "Scope 2, location-based",
    "market_based_g": "Scope 2, market-based",
    "embodied_g": "Embodied (declared)",
    "counterfactual_g": "Counterfactual (start at once)",
    "saved_g": "Saved vs counterfactual",
    "deferral_saved_g": "of which by deferral",
    "budget_refusals": "Work refused by budgets",
}


def number(value: Any, digits: int = 4) -> str:
    """A figure for people: significant digits, thousands separators; ``None`` is an em dash, never 0."""
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if value == 0:
        return "0"
    if isinstance(value, int) or (float(value).is_integer() and abs(value) < 1e15):
        return f"{int(value):,}"
    magnitude = math.floor(math.log10(abs(value)))
    decimals = max(0, digits - 1 - magnitude)
    return f"{value:,.{decimals}f}" if decimals <= 8 else f"{value:.{digits - 1}e}"


def render_html(report: Report) -> str:
    """The report as a self-contained HTML document (no external requests)."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    from greenflow.report.charts import daily_chart, intensity_chart

    environment = Environment(
        loader=PackageLoader("greenflow.report", "templates"), autoescape=select_autoescape(["html", "j2"])
    )
    environment.filters["num"] = number
    environment.filters["pct"] = lambda v: "—" if v is None else f"{v:.1%}"
    template = environment.get_template("report.html.j2")
    data = report.to_dict()
    return template.render(
        r=data,
        labels=LABELS,
        daily_chart=daily_chart(report),
        intensity_chart=intensity_chart(report),
    )
