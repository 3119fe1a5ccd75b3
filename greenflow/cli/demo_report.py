"""What the demo prints at the end: the ledger, the budget, what deferring saved, the verification, next steps.

Every figure comes from the ledger entries the runs wrote; simulated energy (the stand-ins' declared GPU
draw) and estimates are labelled as such, and a value that was not measured is shown as not measured
(with the entry's reason), never as zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from rich.markup import escape

from greenflow.cli import budget as budget_cli
from greenflow.cli import ledger as ledger_cli
from greenflow.cli.context import using_ledger
from greenflow.cli.output import console, print_table
from greenflow.demo.layout import DemoLayout
from greenflow.demo.parts import SIMULATED_GPU_W
from greenflow.ledger import Entry, Ledger
from greenflow.units import format_mass

_RAN = ("deferred", "ran_now")
_METERS = ("nvml_energy_counter", "nvml_power_sampling", "rapl")


def print_report(layout: DemoLayout, parts: Sequence[str], seconds: float) -> bool:
    """Print the report for the demo ledger; ``True`` when its chain verifies."""
    ledger = Ledger(layout.ledger_url)
    try:
        # The ledger views read the CLI's ledger option: point them at the demo's ledger for the report only.
        with using_ledger(layout.ledger_url):
            entries = ledger.entries()
            console.print()
            console.rule("The ledger")
            ledger_cli.show(
                workflow=None, run=None, task=None, decision=None, since=None, until=None, limit=50, as_json=False
            )
            _replay_note(entries)

            console.print()
            console.rule("The budget")
            budget_cli.budget_status(name=None, as_json=False)
            _refusals(entries)

            console.print()
            console.rule("What deferring saved")
            _savings(entries)

            console.print()
            console.rule("The interruptible job")
            _interruptible(entries, layout)

            console.print()
            console.rule("Verification")
            verification = ledger.verify()
            ledger_cli._print_report(verification)
    finally:
        ledger.close()
    console.print()
    console.rule("Next")
    _next_steps(layout, parts)
    console.print(f"\ndemo finished in {seconds:.0f} s (wall clock)")
    return verification.ok


def _replay_note(entries: Sequence[Entry]) -> None:
    replays = [e for e in entries if isinstance(e.extra.get("replay"), dict)]
    if not replays:
        console.print("no entry is a replay: its times are real")
        return
    speeds = sorted({float(e.extra["replay"].get("speed") or 0) for e in replays})
    speed_text = ", ".join(f"{s:g}x (one trace hour = {3600 / s:g} real s)" for s in speeds if s)
    console.print(
        f"{len(replays)} of {len(entries)} entries are replays (recorded in each entry as "
        f"extra.replay, speed {speed_text}): their requested/planned/start times are the trace's "
        "June 2022 clock, not real time; `recorded` is real time. The other entries are budget gates, "
        "which run on real time."
    )


def _refusals(entries: Sequence[Entry]) -> None:
    refused = [e for e in entries if e.decision == "skipped_budget"]
    if not refused:
        console.print("the budget refused nothing this time")
    for entry in refused:
        console.print(
            f"[yellow]refused[/] {escape(entry.orchestrator)} {escape(entry.workflow_id)}.{escape(entry.task_id)}: "
            f"{escape(entry.error or 'budget spent')}; the work behind it did not run"
        )
    over = [
        e
        for e in entries
        if e.decision in _RAN and e.charged_g is not None and e.estimate_g and e.charged_g > e.estimate_g * 1.05
    ]
    if over:
        runs = ", ".join(
            f"{escape(e.task_id)} ({e.orchestrator}) {format_mass(e.charged_g)} against {format_mass(e.estimate_g)}"
            for e in over
            if e.charged_g is not None and e.estimate_g is not None
        )
        console.print(
            f"charged more than they reserved: {runs}. A budget admits work on its estimate and then charges "
            "what the run emitted, so estimates below the real figure can take a budget past its limit; "
            "later work is then refused."
        )
    kept = [e for e in entries if e.decision in _RAN and e.energy_kwh is None and e.charged_g is not None]
    for entry in kept:
        console.print(
            f"{escape(entry.task_id)} ({entry.orchestrator}) measured nothing, so the budget keeps its "
            f"{escape(entry.estimate_source or 'estimate')}: {format_mass(entry.charged_g)} charged (an ESTIMATE)"
        )


def _ran(entry: Entry) -> bool:
    """Work that ran: a whole run, or one segment of an interruptible one (a paused segment too)."""
    return entry.region is not None and (
        entry.decision in _RAN or (entry.decision == "interrupted" and isinstance(entry.extra.get("segment"), dict))
    )


def _segment(entry: Entry) -> dict[str, Any] | None:
    raw = entry.extra.get("segment")
    return raw if isinstance(raw, dict) else None


def _interruptible(entries: Sequence[Entry], layout: DemoLayout) -> None:
    """Each interruptible attempt: its segments, where it resumed from its checkpoint, what it saved."""
    attempts: dict[str, list[Entry]] = {}
    for entry in entries:
        segment = _segment(entry)
        if segment is not None and _ran(entry):
            attempts.setdefault(str(segment.get("link")), []).append(entry)
    if not attempts:
        console.print("no interruptible job ran")
        return
    for segments in attempts.values():
        segments.sort(key=lambda e: int((_segment(e) or {}).get("index", 0)))
        first = segments[0]
        console.print(
            f"{escape(first.workflow_id)}.{escape(first.task_id)} ({first.orchestrator}, `greenflow run "
            f"--interruptible`): {len(segments)} segment(s), one linked ledger entry each",
            highlight=False,
        )
        print_table(
            None,
            ["segment", "planned (trace)", "ran (trace)", "how it ended", "energy", "emissions", "saved"],
            [_segment_row(e) for e in segments],
        )
    resumes = _resumes(layout)
    for index, step in resumes:
        console.print(
            f"segment {index + 1} resumed from its checkpoint at step {step} (the job saved it on SIGTERM at the "
            "previous segment's end: flows/checkpointed_training.py)"
        )
    if not resumes:
        console.print("[yellow]the job did not resume from a checkpoint[/] (see its log in the demo directory)")
    for segments in attempts.values():
        measured = [e for e in segments if e.saved_g is not None and e.operational_g is not None]
        if len(measured) != len(segments):
            console.print("its saving is unknown: a segment has no emissions figure")
            continue
        saved = sum(e.saved_g or 0.0 for e in measured)
        emitted = sum(e.operational_g or 0.0 for e in measured)
        label = " [bold](SIMULATED energy)[/]" if any(_simulated(e) for e in segments) else ""
        share = f" ({saved / (emitted + saved):.0%})" if emitted + saved > 0 else ""
        console.print(
            f"saved vs running in one piece now: {_mass(saved)}{share}{label}: it emitted {_mass(emitted)} in its "
            f"segments, {_mass(emitted + saved)} had it run at once from the requested start (each segment's "
            "share of the work at the trace's intensity then)"
        )


def _segment_row(entry: Entry) -> list[Any]:
    segment = _segment(entry) or {}
    planned = f"{_iso_trace(segment.get('planned_start'))}-{_iso_trace(segment.get('planned_end'), short=True)}"
    ran = f"{_trace(entry.actual_start)}-{_hm(entry.ended_at)}"
    if entry.decision == "interrupted":
        ended = f"paused: {segment.get('stopped') or 'stopped'}"
    else:
        ended = f"work done ({entry.decision})" + (", ran past its plan" if segment.get("past_plan") else "")
    return [
        f"{int(segment.get('index', 0)) + 1}/{segment.get('of', '?')}",
        planned,
        ran,
        ended,
        _energy(entry),
        None if entry.operational_g is None else _mass(entry.operational_g),
        None if entry.saved_g is None else _mass(entry.saved_g),
    ]


def _resumes(layout: DemoLayout) -> list[tuple[int, int]]:
    """(segment index, step) of every "resumed from step N" line of the fine-tune's own log."""
    try:
        lines = (layout.finetune_dir / "training.log").read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        index, _, text = line.partition(" ")
        if text.startswith("resumed from step ") and index.isdigit():
            found.append((int(index), int(text.rsplit(" ", 1)[1])))
    return found


def _iso_trace(value: object, *, short: bool = False) -> str:
    if not isinstance(value, str):
        return "?"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return "?"
    return _hm(moment) if short else (_trace(moment) or "?")


def _hm(moment: datetime | None) -> str:
    return "?" if moment is None else f"{moment:%H:%M}"


def _savings(entries: Sequence[Entry]) -> None:
    ran = [e for e in entries if _ran(e)]
    if not ran:
        console.print("no carbon-aware task ran")
        return
    print_table(
        None,
        [
            "orchestrator",
            "task",
            "decision",
            "asked (trace)",
            "started (trace)",
            "gCO2e/kWh if at once",
            "gCO2e/kWh in its window",
            "per kWh",
            "energy",
            "emissions",
            "saved",
        ],
        [_saving_row(e) for e in ran],
    )
    console.print(
        "gCO2e/kWh: the trace's intensity over the run (had it started when asked vs when it did); "
        "'forecast' marks the plan's figures where no energy was measured to account against."
    )
    simulated = [e for e in ran if _simulated(e)]
    if simulated:
        console.print(
            f"[bold]SIMULATED[/]: the GPU energy of {_tasks(simulated)} is simulated, not measured: a declared "
            f"{SIMULATED_GPU_W:g} W GPU x the trace time each stand-in task represents (it runs that long on the "
            "replay clock), the energy a real GPU job of that draw and length would use; emissions and savings "
            "are that energy at the trace's real intensities."
        )
    estimated = [e for e in ran if "estimate" in (e.method_gpu, e.method_cpu, e.method_dram)]
    if estimated:
        console.print(
            f"[bold]ESTIMATE[/]: energy of {_tasks(estimated)} includes an estimate, not a measurement "
            "(see each entry's measurement_notes)."
        )
    for entry in [e for e in ran if e.energy_kwh is None]:
        reasons = "; ".join(
            f"{name}: {reason}" for name, reason in entry.measurement_notes.items() if isinstance(reason, str)
        )
        console.print(
            f"not measured: {escape(entry.task_id)} ({entry.orchestrator}): {escape(reasons or 'no reason given')}"
        )
    measured = [e for e in ran if e.saved_g is not None]
    if measured:
        total = sum(e.saved_g or 0.0 for e in measured)
        label = " [bold](SIMULATED energy)[/]" if any(_simulated(e) for e in measured) else ""
        links = {str(seg.get("link")) for e in measured if (seg := _segment(e)) is not None}
        runs = len([e for e in measured if _segment(e) is None]) + len(links)
        console.print(
            f"saved in total: {_mass(total)}{label} over {runs} run(s) with energy figures "
            "(counterfactual = the same energy at the intensity of the requested start, location-based)"
        )


def _simulated(entry: Entry) -> bool:
    return "simulated" in (entry.method_gpu, entry.method_cpu, entry.method_dram)


def _tasks(entries: Sequence[Entry]) -> str:
    return ", ".join(sorted({f"{e.task_id} ({e.orchestrator})" for e in entries}))


def _saving_row(entry: Entry) -> list[Any]:
    raw = entry.extra.get("plan")
    plan: dict[str, Any] = raw if isinstance(raw, dict) else {}
    at_once: float | None = entry.counterfactual_intensity_g_per_kwh
    in_window: float | None = entry.intensity_g_per_kwh
    source = ""
    if at_once is None or in_window is None:
        at_once, in_window, source = plan.get("now_gco2_per_kwh"), plan.get("expected_gco2_per_kwh"), " (forecast)"
    per_kwh = None
    if at_once is not None and in_window is not None and at_once > 0:
        per_kwh = f"{in_window - at_once:+.0f} g ({(in_window - at_once) / at_once:+.0%})"
    return [
        entry.orchestrator,
        entry.task_id,
        entry.decision,
        _trace(entry.requested_at),
        _trace(entry.actual_start),
        None if at_once is None else f"{at_once:.0f}{source}",
        None if in_window is None else f"{in_window:.0f}{source}",
        per_kwh,
        _energy(entry),
        None if entry.operational_g is None else _mass(entry.operational_g),
        None if entry.saved_g is None else _mass(entry.saved_g),
    ]


def _energy(entry: Entry) -> str:
    if entry.energy_kwh is None:
        return "not measured"
    # A number that is not a meter reading says so in capitals: it must never read as measured.
    labels = [
        (name.upper() + " " + method.upper()) if method not in _METERS else method
        for name, method in (("gpu", entry.method_gpu), ("cpu", entry.method_cpu), ("dram", entry.method_dram))
        if method
    ]
    label = f" ({', '.join(labels)})" if labels else ""
    wh = entry.energy_kwh * 1000
    if wh >= 1000:
        text = f"{entry.energy_kwh:.3g} kWh"
    else:
        text = f"{wh:.3g} Wh" if wh >= 1 or wh == 0 else f"{wh * 1000:.3g} mWh"
    return text + label


def _mass(grams: float) -> str:
    if abs(grams) < 1e-6:  # float noise of two sums over the same energy (a run that started when asked)
        return "0 g"
    if abs(grams) >= 1:
        return format_mass(grams)
    if abs(grams) >= 1e-3:
        return f"{grams * 1e3:.3g} mg"
    return f"{grams * 1e6:.3g} µg"


def _trace(moment: datetime | None) -> str | None:
    return None if moment is None else f"{moment:%m-%d %H:%M}"


def _next_steps(layout: DemoLayout, parts: Sequence[str]) -> None:
    ledger = f"greenflow --ledger {layout.ledger_url}"
    console.print(f"the ledger stays in {layout.ledger_path}; look at it again with:")
    console.print(f"  {ledger} ledger show", highlight=False)
    console.print(f"  {ledger} ledger verify", highlight=False)
    console.print(f"  {ledger} budget status", highlight=False)
    console.print(f"  {ledger} ledger export --format csv -o demo-ledger.csv", highlight=False)
    console.print("open the UIs (each runs until Ctrl-C):")
    if "airflow" in parts:
        console.print(
            "  make airflow-ui    Airflow at http://127.0.0.1:8080 with the example DAGs; its Carbon Ledger page "
            "reads this ledger (login in .airflow/simple_auth_manager_passwords.json.generated)"
        )
    if "prefect" in parts:
        console.print(
            "  make prefect-ui    Prefect at http://127.0.0.1:4200; then run "
            f"`PREFECT_API_URL=http://127.0.0.1:4200/api GREENFLOW_LEDGER_URL={layout.ledger_url} "
            ".venv/bin/python flows/training.py` to see a flow run and its ledger artifacts",
            highlight=False,
        )
    console.print(f"full Airflow and Prefect logs of this demo: {layout.logs}/")
