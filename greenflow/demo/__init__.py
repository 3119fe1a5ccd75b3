"""``greenflow demo``: the whole story offline in about a minute, on the repository's example DAG and flow.

The parent process (the ``greenflow demo`` command, :mod:`greenflow.cli.demo_story`) never imports
Airflow or Prefect: each orchestrator runs in its own subprocess, driven by its adapter
(:mod:`greenflow.airflow.demo_run`, :mod:`greenflow.prefect.demo_run`), with its logs captured to files
in the demo directory; the parent prints concise progress from those logs (:mod:`.progress`) and, at
the end, the ledger, the budget, what deferring saved and the verification
(:mod:`greenflow.cli.demo_report`). This package holds what the command and the adapters' subprocesses
share (layout, parts, events, progress) and imports neither the CLI nor an orchestrator. Nothing is
imported here, so the subprocesses start light.
"""
