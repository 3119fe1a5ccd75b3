"""``greenflow demo``: the ledger and budgets end to end, offline, in a throw-away ledger.

Three example GPU jobs reserve against a small daily budget, settle to what they used, and the fourth
is refused because the budget is spent. Then the chain is verified, and a tampered copy of the ledger
shows what ``greenflow ledger verify`` reports. The energy figures are labelled example estimates:
this demo measures nothing (``greenflow run`` does).
"""

from __future__ import annotations

import shutil
import socket
import tempfile
from datetime import timedelta
from pathlib import Path

import typer
from sqlalchemy import text

from greenflow.cli import budget as budget_cli
from greenflow.cli import ledger as ledger_cli
from greenflow.cli.context import state
from greenflow.cli.output import console, handle_errors
from greenflow.clock import utcnow
from greenflow.errors import BudgetExceeded
from greenflow.ledger import Budget, Entry, Identity, Ledger

# (task, energy kWh, intensity planned, intensity had it run at once, deferred hours)
_JOBS = [
    ("train", 0.42, 180.0, 260.0, 3.0),
    ("finetune", 0.25, 150.0, 150.0, 0.0),
    ("batch_inference", 0.30, 170.0, 240.0, 2.0),
]


@handle_errors
def demo(
    keep: bool = typer.Option(False, "--keep", help="Keep the demo ledger and print its path."),
) -> None:
    """Show the ledger and budgets at work in a temporary ledger (nothing else is touched)."""
    workdir = Path(tempfile.mkdtemp(prefix="greenflow-demo-"))
    url = f"sqlite:///{workdir / 'ledger.db'}"
    state.ledger_url = url
    ledger = Ledger(url)
    console.rule("greenflow demo: ledger and carbon budgets")
    console.print(f"ledger: {workdir / 'ledger.db'} (SQLite, WAL)")
    ledger.budgets.set(Budget.parse("demo-gpu-daily", "200g", "day"))
    console.print("budget demo-gpu-daily: 200 g CO2e per day\n")

    now = utcnow()
    run_id = f"demo-{now:%Y%m%dT%H%M}"
    for task, kwh, intensity, counterfactual, deferred_h in [*_JOBS, ("evaluate", 0.2, 200.0, 200.0, 0.0)]:
        identity = Identity("cli", "demo_training", run_id, task)
        estimate_g = kwh * intensity
        try:
            reservation = ledger.budgets.reserve(
                "demo-gpu-daily", identity, estimate_g, estimate_source="demo: example estimate"
            )
        except BudgetExceeded as refused:
            console.print(f"[yellow]{task}: refused[/] — {refused.message}")
            ledger.append(
                Entry.for_attempt(
                    identity,
                    "skipped_budget",
                    budget="demo-gpu-daily",
                    requested_at=now,
                    estimate_g=estimate_g,
                    estimate_source="demo: example estimate",
                    host=socket.gethostname(),
                    error=refused.message,
                    measurement_notes={"gpu": "not run: budget spent"},
                )
            )
            continue
        operational = kwh * intensity
        ledger.append(
            Entry.for_attempt(
                identity,
                "deferred" if deferred_h else "ran_now",
                requested_at=now,
                planned_start=now + timedelta(hours=deferred_h),
                actual_start=now + timedelta(hours=deferred_h),
                ended_at=now + timedelta(hours=deferred_h + 1),
                deferred_seconds=deferred_h * 3600,
                region="GB",
                energy_gpu_kwh=kwh,
                method_gpu="estimate",
                energy_kwh=kwh,
                measurement_notes={"gpu": "demo: example figure, not measured", "cpu": "not measured in the demo"},
                host=socket.gethostname(),
                intensity_g_per_kwh=intensity,
                intensity_source="demo: example figure",
                operational_g=operational,
                counterfactual_intensity_g_per_kwh=counterfactual,
                counterfactual_g=kwh * counterfactual,
                saved_g=kwh * (counterfactual - intensity),
                budget="demo-gpu-daily",
                estimate_g=estimate_g,
                estimate_source="demo: example estimate",
                charged_g=operational,
                charged_kwh=kwh,
                extra={"demo": True},
            ),
            settle=reservation.reservation_id,
        )
        console.print(
            f"[green]{task}[/]: {kwh} kWh at {intensity:.0f} g/kWh, saved {kwh * (counterfactual - intensity):.0f} g"
        )

    console.print()
    ledger_cli.show(None, None, None, None, None, None, 50, False)
    budget_cli.budget_status(None, False)
    ledger_cli._print_report(ledger.verify())

    tampered = workdir / "tampered.db"
    shutil.copy(workdir / "ledger.db", tampered)
    copy = Ledger(f"sqlite:///{tampered}")
    with copy.engine.begin() as connection:
        connection.execute(text("UPDATE ledger_entries SET energy_kwh = 0.01 WHERE task_id = 'train'"))
    console.print("\nafter someone edits the train entry's energy in a copy of the ledger:")
    ledger_cli._print_report(copy.verify())
    copy.close()
    ledger.close()
    if keep:
        console.print(f"\nkept: {workdir} (GREENFLOW_LEDGER_URL={url})")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
