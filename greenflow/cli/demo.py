"""``greenflow demo``: the whole story offline in about a minute (the script is :mod:`greenflow.cli.demo_story`).

The example training DAG through Airflow's ``dag.test()`` and the example Prefect flow, both replaying
real grid data: each training task defers to the green window and resumes, a shared carbon budget that
the first runs exhaust skips the Prefect evaluation, an interruptible fine-tune (``greenflow run
--interruptible``) runs in two green segments and resumes from its checkpoint, then the ledger, the
budget, what deferring saved and the ledger's verification are printed, with the commands to open the UIs.
"""

from __future__ import annotations

from pathlib import Path

import typer

from greenflow.cli.output import handle_errors


@handle_errors
def demo(
    directory: Path = typer.Option(
        Path(".demo"),
        "--dir",
        help="Where the demo keeps its ledger, Airflow/Prefect homes and logs (emptied first).",
    ),
    timeout: float = typer.Option(300.0, "--timeout", min=10.0, help="Seconds each part may take."),
) -> None:
    """Run the example DAG and flow carbon-aware, offline, into a fresh demo ledger (about a minute)."""
    from greenflow.cli.demo_story import DemoOptions, run_demo

    code = run_demo(DemoOptions(root=directory, part_timeout_s=timeout))
    if code:
        raise typer.Exit(code=code)
