"""The report in Prefect's UI: a markdown artifact ``greenflow-report-<period>`` (e.g. ``greenflow-report-2026-11``).

:func:`publish_report_artifact` builds the report with the core (:func:`greenflow.report.build_report`,
the same figures as ``greenflow report``) and publishes it as markdown: the totals with how sure each
one is (or why there is no number), SCI per functional unit, the breakdowns per team, workflow and
region, budgets and their refusals, and the evidence (verification, anchor, methods, unmeasured
attempts). Tables are capped (:data:`MAX_LINES` lines, :data:`MAX_UNMEASURED` attempts listed) so an
artifact stays small whatever the ledger holds; the JSON (``greenflow report --format json``) has them all.

A scope other than ``all`` is part of the key (``greenflow-report-2026-11-team-vision-<hash>``), so
reports of two teams for one month are two artifacts. ``flows/monthly_report.py`` is an example flow
that runs this on the 1st of every month for the month before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from greenflow.clock import utcnow
from greenflow.prefect.artifacts import artifact_key
from greenflow.prefect.connections import LedgerOption, resolve_ledger
from greenflow.report import Report, ReportPeriod, ReportScope, build_report

REPORT_PREFIX = "greenflow-report"
MAX_LINES = 25
"""At most this many lines per breakdown table (the rest are counted)."""
MAX_UNMEASURED = 20
"""At most this many unmeasured attempts listed (all are counted)."""
_CELL = 300  # characters of free text per table cell


@dataclass(frozen=True)
class PublishedReport:
    """What :func:`publish_report_artifact` published: the artifact's key, the report and its markdown."""

    key: str
    report: Report
    markdown: str


def last_month(now: datetime | None = None) -> ReportPeriod:
    """The calendar month before the one ``now`` (default: the current time, UTC) falls in."""
    first = (now or utcnow()).replace(day=1)
    return ReportPeriod.parse(f"{first - timedelta(days=1):%Y-%m}")


def report_key(period: ReportPeriod, scope: ReportScope | None = None) -> str:
    """``greenflow-report-<period>`` (lowercase, digits and dashes, as Prefect's keys must be), scope appended."""
    label = period.label.lower()
    if scope is not None and scope.scope.kind != "all":
        label = f"{label}-{scope}"
    return artifact_key(REPORT_PREFIX, label)


def report_markdown(report: Report) -> str:
    """The report as bounded markdown: totals, SCI, breakdowns, budgets, evidence."""
    data = report.to_dict()
    period, counts = data["period"], data["counts"]
    lines = [
        f"# greenflow report: {period['label']} · {data['scope']}",
        "",
        f"From {period['start']} to {period['end']} (end excluded), entries by the ledger's `recorded_at`. "
        f"{counts['entries']} entries: {counts['with_energy']} with energy, {counts['without_energy']} without "
        f"(listed below, never counted as 0), {counts['refused_by_budget']} refused by budgets. "
        f"Schema `{data['schema']}`, generated {data['generated_at']}.",
        "",
        "## Totals",
        "",
        "| figure | value | unit | how sure |",
        "|---|---:|---|---|",
    ]
    for name, figure in data["figures"].items():
        if figure["value"] is None:
            lines.append(f"| {name} | — | {figure['unit']} | no number: {_cell(figure['reason'])} |")
        else:
            lines.append(f"| {name} | {_num(figure['value'])} | {figure['unit']} | {_cell(figure['uncertainty'])} |")
    if data["sci"]:
        lines += ["", "## SCI per functional unit: (E·I + M) / R", ""]
        lines += ["| functional unit | entries | units | operational g | embodied g | gCO2e per unit |"]
        lines += ["|---|---:|---:|---:|---:|---:|"]
        for sci in data["sci"]:
            lines.append(
                f"| {_cell(sci['functional_unit'])} | {sci['entries']} | {_num(sci['units'])} | "
                f"{_num(sci['operational_g'])} | {_num(sci['embodied_g'])} | {_num(sci['sci_g_per_unit'])} |"
            )
    for dimension in ("team", "workflow", "region"):
        lines += _breakdown(dimension, data["breakdowns"].get(dimension, []))
    lines += _budgets(data["budgets"])
    lines += _evidence(data["evidence"])
    return "\n".join(lines) + "\n"


def _breakdown(dimension: str, rows: Sequence[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    out = ["", f"## By {dimension}", "", f"| {dimension} | entries | kWh | location-based g | saved g |"]
    out.append("|---|---:|---:|---:|---:|")
    for row in rows[:MAX_LINES]:
        out.append(
            f"| {_cell(row['key'])} | {row['entries']} | {_num(row['energy_kwh'])} | "
            f"{_num(row['location_based_g'])} | {_num(row['saved_g'])} |"
        )
    if len(rows) > MAX_LINES:
        out.append(f"\n{len(rows) - MAX_LINES} more {dimension} lines in the JSON report.")
    return out


def _budgets(budgets: Sequence[dict[str, Any]]) -> list[str]:
    if not budgets:
        return []
    out = ["", "## Budgets", "", "| budget | scope | limit | charged | refusals |", "|---|---|---:|---:|---:|"]
    for line in budgets[:MAX_LINES]:
        unit = line["unit"]
        charged = "—" if line["charged"] is None else f"{_num(line['charged'])} {unit}"
        limit = "—" if line["limit"] is None else f"{_num(line['limit'])} {unit}"
        out.append(f"| {_cell(line['name'])} | {_cell(line['scope'])} | {limit} | {charged} | {line['refusals']} |")
    return out


def _evidence(evidence: dict[str, Any]) -> list[str]:
    check, anchor = evidence["verification"], evidence["anchor"]
    if check.get("ok") is None:
        verified = f"not verified ({check.get('reason')})"
    elif check["ok"]:
        tip = f"tip seq {check['head_seq']} `{check['head_hash']}`"
        verified = f"the hash chain holds: {check['entries']} entries, {tip}"
    else:
        verified = f"**the hash chain is broken: {check['problem_count']} problems** (`greenflow ledger verify`)"
    anchored = anchor.get("detail") or anchor.get("reason") or ""
    out = ["", "## Evidence", "", f"- Verification: {verified}", f"- Anchor: {anchor['status']}: {_cell(anchored)}"]
    sources = evidence.get("intensity_sources") or []
    for source in sources[:MAX_LINES]:
        out.append(
            f"- Intensity, {_cell(source['region'])}: planned on {_cell(source['forecast_provider'])} "
            f"({_cell(source['forecast_signal'])}), actual from {_cell(source['intensity_source'])}, "
            f"{source['entries']} entries"
        )
    for method in evidence.get("methods") or []:
        kind = "estimated" if method["estimated"] else "measured"
        out.append(
            f"- Method {method['component']} {method['method']} ({kind}): "
            f"{_num(method['energy_kwh'])} kWh over {method['entries']} entries"
        )
    unmeasured = evidence.get("unmeasured_attempts") or []
    out.append(f"- Attempts with nothing measured: {len(unmeasured)}")
    for attempt in unmeasured[:MAX_UNMEASURED]:
        out.append(
            f"  - seq {attempt['seq']} {_cell(attempt['workflow_id'])} / {_cell(attempt['task_id'])} "
            f"(attempt {attempt['attempt']}, {attempt['decision']}): {_cell(attempt['reason'])}"
        )
    if len(unmeasured) > MAX_UNMEASURED:
        out.append(f"  - … and {len(unmeasured) - MAX_UNMEASURED} more in the JSON report")
    return out


def publish_report_artifact(
    period: ReportPeriod | str | None = None,
    scope: ReportScope | str | None = None,
    *,
    ledger: LedgerOption = None,
    anchor: str | Path | None = None,
    now: datetime | None = None,
) -> PublishedReport | None:
    """Build the report over ``period`` (default: last month) and ``scope`` and publish it as markdown.

    ``period`` is a :class:`ReportPeriod` or its text (``2026-11``, ``2026-Q4``, ``2026``). Bad values
    raise :class:`~greenflow.errors.InvalidInput`. Returns ``None`` outside a Prefect run (Prefect is
    retiring artifacts without a run).
    """
    from prefect.artifacts import MarkdownArtifact
    from prefect.context import FlowRunContext, TaskRunContext

    chosen = period if isinstance(period, ReportPeriod) else (ReportPeriod.parse(period) if period else last_month(now))
    where = scope if isinstance(scope, ReportScope) else ReportScope.parse(scope)
    if FlowRunContext.get() is None and TaskRunContext.get() is None:
        return None
    report = build_report(resolve_ledger(ledger), chosen, where, anchor=anchor, now=now)
    key = report_key(chosen, where)
    text = report_markdown(report)
    MarkdownArtifact(
        key=key,
        markdown=text,
        description=f"greenflow report {chosen.label}, scope {where} (greenflow report --period … for JSON/PDF)",
    ).create(_sync=True)  # type: ignore[call-arg]  # sync even inside async runs
    return PublishedReport(key, report, text)


def _num(value: Any) -> str:
    # Six significant digits: a month's 2e-7 kWh must not show as 0, and a total stays traceable.
    return "—" if value is None else f"{float(value):.6g}"


def _cell(text: Any) -> str:
    value = "—" if text is None else " ".join(str(text).split()).replace("|", "\\|")
    return value if len(value) <= _CELL else value[: _CELL - 1] + "…"
