"""The demo's script: fresh directory and ledger, the Airflow part, the Prefect part, then the report.

The two runs share one ledger and one budget (``example-training-daily``, 240 g a day). Every stand-in
GPU task gets a simulated 300 W GPU over the trace time it represents (labelled ``simulated``), so the
figures are those of real jobs: the Airflow run goes first and spends ~140 g (training 2 h, ~0.6 kWh, and
evaluation 30 min), which leaves room for the Prefect training's 50 g reservation; that training spends
~110 g more, and the Prefect evaluation (20 g) no longer fits: the gate skips it. Prefect's temporary
server starts while the Airflow task waits for its window, and the flow starts when the Airflow run has
ended, so the story is the same on every run. Alongside the Prefect flow, an interruptible fine-tune
(``greenflow run --interruptible`` of ``flows/checkpointed_training.py``, no budget) runs in two green
segments of the same trace and resumes from its checkpoint in the second.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from rich.markup import escape

from greenflow.cli import demo_report as report
from greenflow.cli.output import console
from greenflow.demo.layout import DemoLayout, find_examples
from greenflow.demo.parts import (
    REPLAY_SPEED,
    PartPlan,
    RunningPart,
    airflow_plan,
    finetune_plan,
    installed,
    prefect_plan,
    simulation_note,
)
from greenflow.demo.progress import LogFollower, LogParser, Progress, describe_wait
from greenflow.ledger import Ledger

# Between the two bounds of the story: the Airflow run's spend (A, ~136 g when its training defers, ~175 g
# when a loaded host starts it late) + the Prefect training's 50 g reservation <= limit, and A + that
# training's ~110 g + the evaluation's 20 g > limit. 240 g holds for A in (110 g, 190 g].
BUDGET_LIMIT = "240g"
# Seconds between "still waiting" lines while a task waits for its window.
_TICK_SECONDS = 3.0
_POLL_SECONDS = 0.2


@dataclass(frozen=True)
class DemoOptions:
    """What ``greenflow demo`` was asked to do."""

    root: Path
    part_timeout_s: float = 300.0


@dataclass
class _Watch:
    """The parent's view of one running part: its log, what it waits for, when it last said so."""

    part: RunningPart
    follower: LogFollower
    parser: LogParser
    wait: Progress | None = None
    last_tick: float = 0.0
    ended: bool = False
    events: list[dict[str, object]] = field(default_factory=list)


def run_demo(options: DemoOptions) -> int:
    """Run the whole demo; 0 when every part that ran succeeded and the ledger verifies."""
    began = time.monotonic()
    layout = DemoLayout(options.root.resolve())
    examples = find_examples(Path.cwd(), Path(__file__).resolve().parents[1])
    layout.prepare_fresh()
    Ledger(layout.ledger_url).close()  # the schema once, here, rather than inside a task's first call

    with_airflow, with_prefect = installed("airflow"), installed("prefect")
    _intro(layout, with_airflow, with_prefect)
    plans: dict[str, PartPlan] = {}
    if with_airflow:
        plans["airflow"] = airflow_plan(layout, examples, BUDGET_LIMIT)
    if with_prefect:
        plans["prefect"] = prefect_plan(layout, examples, BUDGET_LIMIT)
    plans["finetune"] = finetune_plan(layout, examples)
    for plan in plans.values():
        console.print(f"  {plan.name}: {plan.note}")
    console.print()

    watches: dict[str, _Watch] = {}
    try:
        _run_parts(layout, plans, watches, began, options.part_timeout_s)
    finally:
        for watch in watches.values():
            watch.part.stop()
    failed = [name for name, watch in watches.items() if watch.part.returncode != 0]
    for name in failed:
        watch = watches[name]
        console.print(
            f"\n[red]the {name} part failed[/] (exit {watch.part.returncode}); last lines of {watch.part.log}:"
        )
        for line in watch.part.tail():
            console.print(f"  {escape(line)}", highlight=False)
    verified = report.print_report(layout, list(plans), time.monotonic() - began)
    return 0 if verified and not failed else 1


def _intro(layout: DemoLayout, with_airflow: bool, with_prefect: bool) -> None:
    console.rule("greenflow demo: carbon-aware GPU work, offline")
    console.print(f"demo directory: {layout.root} (rebuilt on every run)")
    console.print(f"ledger: {layout.ledger_path} (SQLite)")
    console.print(
        "grid data: the `trace` provider replays real Spanish grid intensity (Electricity Maps, ES, June 2022), "
        "no API key, no GPU needed"
    )
    console.print(
        f"replay clock: one trace hour = {3600 / REPLAY_SPEED:g} real second(s) ({REPLAY_SPEED:g}x); "
        "trace times are labelled (trace), and the ledger entries record the replay"
    )
    console.print(f"{simulation_note()}")
    console.print(
        f"budget: example-training-daily, {BUDGET_LIMIT} a day, shared by the Airflow DAG and the Prefect flow"
    )
    for name, present, extra in (("Airflow", with_airflow, "airflow"), ("Prefect", with_prefect, "prefect")):
        if not present:
            console.print(
                f"[yellow]{name} is not installed[/]: its part is left out "
                f"(install it with `pip install 'greenflow-carbon[{extra}]'`)"
            )
    if not (with_airflow and with_prefect):
        console.print("[yellow]with one orchestrator the budget act may not close the evaluation gate[/]")
    console.print(f"full logs: {layout.logs}/")


def _run_parts(
    layout: DemoLayout, plans: dict[str, PartPlan], watches: dict[str, _Watch], began: float, timeout: float
) -> None:
    def start(name: str) -> None:
        part = RunningPart.start(plans[name], layout.log(name), layout.root)
        watches[name] = _Watch(part, LogFollower(layout.log(name)), LogParser(name))

    if "airflow" in plans:
        start("airflow")
    elif "prefect" in plans:
        start("prefect")
    while True:
        airflow = watches.get("airflow")
        for watch in list(watches.values()):
            for line in watch.follower.new_lines():
                progress = watch.parser.feed(line)
                if progress is not None:
                    _show(watch, progress, began)
            if not watch.ended and watch.part.returncode is not None:
                watch.ended = True
                for line in watch.follower.new_lines():  # what it wrote just before it ended
                    progress = watch.parser.feed(line)
                    if progress is not None:
                        _show(watch, progress, began)
            _tick(watch, began)
            if not watch.ended and time.monotonic() - watch.part.started > timeout:
                _say(began, watch.part.plan.name, None, f"[red]no end after {timeout:.0f} s: stopping it[/]")
                watch.part.stop()
        # Prefect's server starts while the Airflow task waits (idle CPU); its flow after the Airflow run.
        if "prefect" in plans and "prefect" not in watches and (airflow is None or airflow.ended or airflow.wait):
            start("prefect")
        if "prefect" in watches and (airflow is None or airflow.ended) and not layout.prefect_go.exists():
            layout.prefect_go.touch()
        # The interruptible fine-tune (no orchestrator, no budget) alongside the Prefect flow, which mostly
        # waits: the demo takes barely longer, and its 1 s first segment is not starved of CPU by the
        # Airflow run or Prefect's server start-up.
        prefect = watches.get("prefect")
        prefect_starting = "prefect" in plans and (prefect is None or not (prefect.ended or _flow_started(prefect)))
        if "finetune" not in watches and (airflow is None or airflow.ended) and not prefect_starting:
            start("finetune")
        if all(w.ended for w in watches.values()) and set(watches) == set(plans):
            return
        time.sleep(_POLL_SECONDS)


def _flow_started(watch: _Watch) -> bool:
    return any(event.get("event") == "flow_start" for event in watch.events)


def _show(watch: _Watch, progress: Progress, began: float) -> None:
    name = watch.part.plan.name
    if progress.event is not None:
        watch.events.append(progress.event)
        text = _event_text(name, progress.event)
        if text:
            _say(began, name, None, text)
        return
    if progress.wait_wall is not None:
        watch.wait, watch.last_tick = progress, time.monotonic()
        _say(began, name, progress.task, f"{escape(progress.text)}, {describe_wait(progress, datetime.now(UTC))}")
        return
    if watch.wait is not None and progress.task == watch.wait.task:
        watch.wait = None
    _say(began, name, progress.task, escape(progress.text))


def _tick(watch: _Watch, began: float) -> None:
    wait = watch.wait
    if wait is None or wait.wait_wall is None or watch.ended:
        return
    now = datetime.now(UTC)
    if (now - wait.wait_wall).total_seconds() > 2:
        watch.wait = None
        return
    if time.monotonic() - watch.last_tick >= _TICK_SECONDS:
        watch.last_tick = time.monotonic()
        _say(began, watch.part.plan.name, wait.task, f"[dim]… still waiting {describe_wait(wait, now)}[/]")


def _event_text(part: str, event: dict[str, object]) -> str | None:
    kind = event["event"]
    if part == "airflow":
        texts = {
            "migrating": "setting up: `airflow db migrate` (SQLite metadata DB in the demo directory)",
            "migrated": f"metadata DB ready in {event.get('seconds')} s",
            "dag_test": f"dag.test() {event.get('dag_id')} with conf {event.get('conf')}",
            "done": f"DAG run {event.get('state')} after {event.get('seconds')} s: {_states(event.get('tasks'))}",
        }
    else:
        texts = {
            "server_starting": "starting Prefect's temporary local server (PREFECT_API_URL unset)",
            "server_ready": f"server ready at {event.get('url')} after {event.get('seconds')} s",
            "waiting_turn": "the flow waits for the Airflow run to end (both draw on one budget)",
            "flow_start": f"flow greenflow-example-training starts with budget_limit={event.get('budget_limit')}",
            "done": (
                f"flow finished after {event.get('seconds')} s; evaluation "
                f"{'ran' if event.get('evaluated') else 'skipped by the budget gate'}"
            ),
        }
    text = texts.get(str(kind))
    return escape(text) if text else None


def _states(tasks: object) -> str:
    if not isinstance(tasks, dict):
        return ""
    return ", ".join(f"{task} {state}" for task, state in tasks.items())


def _say(began: float, part: str, task: str | None, text: str) -> None:
    console.print(
        f"[dim]{time.monotonic() - began:5.1f}s[/] [cyan]{part:<7}[/] {escape(task or ''):<18} {text}",
        highlight=False,
        soft_wrap=True,
    )
