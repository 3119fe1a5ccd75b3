"""The ledger in Prefect's UI: bounded, keyed artifacts. The SQLAlchemy ledger stays the source of truth.

Per flow run (keyed per flow, so each run adds a version linked to that run):

* ``greenflow-run-<flow>``: a table of the run's ledger entries (task, region, decision, deferred,
  kWh, gCO2e, saved), at most :data:`MAX_RUN_ROWS` rows;
* ``greenflow-summary-<flow>``: markdown with the totals, the savings and the windows chosen.

Shared:

* ``greenflow-ledger``: the :data:`RECENT_ROWS` most recent entries of the whole ledger;
* ``greenflow-budget-<budget>``: a progress artifact, the share of the budget spent or reserved.

Every artifact has a fixed upper size (rows capped, text cut), so publishing after every run never
bloats Prefect's database with ledger-sized payloads. Artifacts are only made inside Prefect runs.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from greenflow.ledger import BudgetStatus, Entry, EntryFilter
from greenflow.prefect.connections import LedgerOption, resolve_ledger

if TYPE_CHECKING:
    from prefect import Flow
    from prefect.client.schemas.objects import FlowRun, State
    from prefect.flows import FlowStateHook

MAX_RUN_ROWS = 200
"""At most this many entries in a flow run's table (the ledger has them all)."""
RECENT_ROWS = 50
"""Rows of the ``greenflow-ledger`` table."""
MAX_WINDOWS = 20
"""At most this many chosen windows listed in a run's summary."""
LEDGER_KEY = "greenflow-ledger"
_CELL = 160  # characters of free text per table cell
_KEY_PART = 60  # characters of a name inside an artifact key


@dataclass(frozen=True)
class PublishedArtifacts:
    """The keys written by :func:`publish_run_artifacts`."""

    run_table: str
    summary: str
    ledger: str
    budgets: tuple[str, ...]
    rows: int
    truncated: bool


# -- keys --------------------------------------------------------------------------------------------
def artifact_key(prefix: str, name: str) -> str:
    """``prefix-<name>`` as Prefect accepts keys (lowercase letters, digits, dashes), stable per name.

    A name that had to be changed to fit gets a short hash, so two names never share a key.
    """
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:_KEY_PART].strip("-") or "unnamed"
    if slug != name:
        slug = f"{slug}-{hashlib.sha256(name.encode()).hexdigest()[:6]}"
    return f"{prefix}-{slug}"


def run_table_key(flow_name: str) -> str:
    """Key of a flow's per-run entries table."""
    return artifact_key("greenflow-run", flow_name)


def summary_key(flow_name: str) -> str:
    """Key of a flow's per-run markdown summary."""
    return artifact_key("greenflow-summary", flow_name)


def budget_key(budget: str) -> str:
    """Key of a budget's progress artifact."""
    return artifact_key("greenflow-budget", budget)


# -- rows and summaries ------------------------------------------------------------------------------
def entry_row(entry: Entry) -> dict[str, Any]:
    """One table row; numbers not measured stay ``None`` and the note says why."""
    return {
        "task": entry.task_id,
        "attempt": entry.attempt,
        "region": entry.region,
        "decision": entry.decision,
        "deferred": _deferred(entry.deferred_seconds),
        "kWh": _significant(entry.energy_kwh),
        "gCO2e": _significant(entry.operational_g),
        "saved gCO2e": _significant(entry.saved_g),
        "planned start": entry.planned_start.isoformat() if entry.planned_start else None,
        "note": _cut(_note(entry)),
    }


def ledger_row(entry: Entry) -> dict[str, Any]:
    """A row of the shared ``greenflow-ledger`` table."""
    return {
        "seq": entry.seq,
        "recorded": entry.recorded_at.isoformat() if entry.recorded_at else None,
        "workflow": _cut(entry.workflow_id),
        "run": _cut(entry.run_id),
        **entry_row(entry),
        "budget": entry.budget,
    }


def summary_markdown(flow_name: str, run_id: str, entries: Sequence[Entry], *, truncated: bool = False) -> str:
    """The run's totals, savings and chosen windows, as markdown of bounded size."""
    lines = [f"# greenflow: {flow_name}", "", f"Flow run `{run_id}`: {len(entries)} ledger entries."]
    if truncated:
        lines.append(f"Only the first {MAX_RUN_ROWS} are summarised here; `greenflow ledger` has them all.")
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry.decision] = counts.get(entry.decision, 0) + 1
    measured = [e for e in entries if e.energy_kwh is not None]
    accounted = [e for e in entries if e.operational_g is not None]
    compared = [e for e in entries if e.saved_g is not None and e.counterfactual_g is not None]
    lines += [
        "",
        "| | |",
        "|---|---|",
        f"| decisions | {', '.join(f'{k} {v}' for k, v in sorted(counts.items())) or 'none'} |",
        f"| energy | {_total([e.energy_kwh for e in measured], 'kWh')} "
        f"({len(measured)} of {len(entries)} attempts measured) |",
        f"| emissions | {_total([e.operational_g for e in accounted], 'gCO2e')} |",
    ]
    if compared:
        saved = sum(e.saved_g or 0.0 for e in compared)
        baseline = sum(e.counterfactual_g or 0.0 for e in compared)
        share = f" ({saved / baseline:.0%} of running at request time)" if baseline > 0 else ""
        lines.append(f"| saved by shifting | {saved:.4g} gCO2e{share} |")
    else:
        lines.append("| saved by shifting | not known: no attempt had both a measurement and a counterfactual |")
    windows = [e for e in entries if e.planned_start is not None and e.region is not None]
    if windows:
        lines += ["", "## Windows chosen", "", "| task | region | start | expected gCO2e/kWh | at request | saving |"]
        lines.append("|---|---|---|---|---|---|")
        for entry in windows[:MAX_WINDOWS]:
            plan = (entry.extra or {}).get("plan") or {}
            start = entry.planned_start.isoformat() if entry.planned_start else "—"
            lines.append(
                f"| {_cut(entry.task_id, 60)} | {entry.region} | {start} "
                f"| {_num(plan.get('expected_gco2_per_kwh'))} | {_num(plan.get('now_gco2_per_kwh'))} "
                f"| {_pct(plan.get('savings_pct'))} |"
            )
        if len(windows) > MAX_WINDOWS:
            lines.append(f"\n{len(windows) - MAX_WINDOWS} more in the ledger.")
    unmeasured = {_note(e) for e in entries if e.energy_kwh is None and _note(e)}
    if unmeasured:
        lines += ["", "## Not measured", ""]
        lines += [f"- {_cut(note, 300)}" for note in sorted(unmeasured)[:10]]
    replayed = any((e.extra or {}).get("replay") for e in entries)
    if replayed:
        lines += ["", "_Times are a replayed trace's, not real time._"]
    return "\n".join(lines) + "\n"


# -- publishing --------------------------------------------------------------------------------------
def publish_run_artifacts(
    flow_run_id: str | None = None, *, flow_name: str | None = None, ledger: LedgerOption = None
) -> PublishedArtifacts | None:
    """Publish the run's table and summary, the recent-ledger table and its budgets' progress.

    Defaults to the current flow run; returns ``None`` outside any Prefect run (nothing to attach to).
    """
    from prefect.artifacts import MarkdownArtifact, TableArtifact
    from prefect.context import FlowRunContext, TaskRunContext

    flow_ctx = FlowRunContext.get()
    task_ctx = TaskRunContext.get()
    if flow_run_id is None:
        if flow_ctx is not None and flow_ctx.flow_run is not None:
            flow_run_id = str(flow_ctx.flow_run.id)
        elif task_ctx is not None and task_ctx.task_run.flow_run_id is not None:
            flow_run_id = str(task_ctx.task_run.flow_run_id)
        else:
            return None
    if flow_name is None and flow_ctx is not None and flow_ctx.flow is not None:
        flow_name = flow_ctx.flow.name
    book = resolve_ledger(ledger)
    entries = book.entries(EntryFilter(run_id=flow_run_id), limit=MAX_RUN_ROWS + 1)
    truncated = len(entries) > MAX_RUN_ROWS
    entries = entries[:MAX_RUN_ROWS]
    name = flow_name or (entries[0].workflow_id if entries else "flow")
    table_key, text_key = run_table_key(name), summary_key(name)
    TableArtifact(
        key=table_key,
        table=[entry_row(e) for e in entries],
        description=f"greenflow ledger entries of flow run {flow_run_id}"
        + (f" (first {MAX_RUN_ROWS})" if truncated else ""),
        flow_run_id=_uuid(flow_run_id),
    ).create(_sync=True)  # type: ignore[call-arg]  # sync even inside async runs
    MarkdownArtifact(
        key=text_key,
        markdown=summary_markdown(name, flow_run_id, entries, truncated=truncated),
        description=f"greenflow summary of flow run {flow_run_id}",
        flow_run_id=_uuid(flow_run_id),
    ).create(_sync=True)  # type: ignore[call-arg]  # sync even inside async runs
    recent = book.entries(limit=RECENT_ROWS, order_by="seq", descending=True)
    TableArtifact(
        key=LEDGER_KEY,
        table=[ledger_row(e) for e in recent],
        description=f"the {RECENT_ROWS} most recent greenflow ledger entries (the full ledger: `greenflow ledger`)",
        flow_run_id=_uuid(flow_run_id),
    ).create(_sync=True)  # type: ignore[call-arg]  # sync even inside async runs
    budgets = sorted({e.budget for e in entries if e.budget})
    keys = []
    for budget in budgets:
        published = publish_budget_artifact(book.budgets.status(budget), flow_run_id=flow_run_id)
        if published:
            keys.append(published)
    return PublishedArtifacts(table_key, text_key, LEDGER_KEY, tuple(keys), len(entries), truncated)


def publish_budget_artifact(status: BudgetStatus, *, flow_run_id: str | None = None) -> str | None:
    """The budget's progress (share spent or reserved) as ``greenflow-budget-<name>``; only inside a run."""
    from prefect.artifacts import ProgressArtifact
    from prefect.context import FlowRunContext, TaskRunContext

    if flow_run_id is None and FlowRunContext.get() is None and TaskRunContext.get() is None:
        return None
    key = budget_key(status.budget.name)
    over = " (over the limit)" if status.share_spent > 1 else ""
    ProgressArtifact(
        key=key,
        progress=min(status.share_spent * 100.0, 100.0),
        description=(
            f"budget {status.budget.name}: {status.format(status.spent)} of {status.format(status.budget.limit.value)} "
            f"spent or reserved{over}, {status.format(status.remaining)} left until {status.period_end.isoformat()}"
        ),
        flow_run_id=_uuid(flow_run_id) if flow_run_id else None,
    ).create(_sync=True)  # type: ignore[call-arg]  # sync even inside async runs
    return key


def ledger_artifacts_hook(flow: Flow[..., Any], flow_run: FlowRun, state: State[Any]) -> None:
    """A flow hook (``on_completion`` / ``on_failure``) that publishes the run's artifacts."""
    publish_run_artifacts(str(flow_run.id), flow_name=flow.name)


def with_ledger_artifacts(flow: Flow[Any, Any], *, ledger: LedgerOption = None) -> Flow[Any, Any]:
    """The flow with the artifact hook added after its own hooks (``with_options`` alone would replace them)."""
    hook = _hook(ledger)
    return flow.with_options(
        on_completion=[*flow.on_completion_hooks, hook],
        on_failure=[*flow.on_failure_hooks, hook],
    )


def _hook(ledger: LedgerOption) -> FlowStateHook[Any, Any]:
    if ledger is None:
        return ledger_artifacts_hook

    def hook(flow: Flow[Any, Any], flow_run: FlowRun, state: State[Any]) -> None:
        publish_run_artifacts(str(flow_run.id), flow_name=flow.name, ledger=ledger)

    return hook


# -- formatting --------------------------------------------------------------------------------------
def _note(entry: Entry) -> str:
    notes = entry.measurement_notes or {}
    if "reason" in notes:
        return str(notes["reason"])
    parts = [f"{k}: {v}" for k, v in notes.items() if k in ("gpu", "cpu") and v]
    if entry.error:
        parts.insert(0, entry.error)
    return "; ".join(parts)


def _cut(text: str | None, limit: int = _CELL) -> str | None:
    if text is None:
        return None
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _deferred(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    total = round(seconds)
    return f"{total // 3600}:{(total % 3600) // 60:02d}"


def _significant(value: float | None) -> float | None:
    # Four significant digits, not fixed decimals: a short run's 2e-7 kWh must not show as 0.
    return None if value is None else float(f"{value:.4g}")


def _total(values: Sequence[float | None], unit: str) -> str:
    known = [v for v in values if v is not None]
    return f"{sum(known):.4g} {unit}" if known else "not measured"


def _num(value: Any) -> str:
    return "—" if value is None else f"{float(value):.0f}"


def _pct(value: Any) -> str:
    return "—" if value is None else f"{float(value):.0f}%"


def _uuid(value: str) -> Any:
    from uuid import UUID

    return UUID(value)
