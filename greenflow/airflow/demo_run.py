"""The demo's Airflow part, run as ``python -m greenflow.airflow.demo_run`` in its own process.

The parent sets ``AIRFLOW_HOME`` (SQLite metadata database, a DAGs folder holding the example training
DAG), the ledger URL and the metering environment; this process migrates the metadata database and
runs the DAG with ``dag.test()``, in which Airflow runs the carbon-aware task's trigger in-process: the
task really defers to the green window and resumes. Airflow is imported only here.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from greenflow.demo.events import emit

DAG_ID = "greenflow_example_training"


def migrate() -> float:
    """``airflow db migrate`` on the part's SQLite metadata database; returns the seconds it took."""
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, env=os.environ.copy(), timeout=600)
    return time.monotonic() - started


def warm_up() -> None:
    """Build Airflow's in-process execution API before the run starts.

    ``dag.test()`` builds it when the first task starts (seconds of imports), after the run's start
    time is fixed: the example's replay clock starts with the run, so those seconds would be trace
    hours eaten from the night before the green window. Best effort: without it the demo only waits less.
    """
    try:
        from airflow.api_fastapi.execution_api.app import InProcessExecutionAPI

        InProcessExecutionAPI().app  # noqa: B018 - the property builds and caches the app's imports
    except Exception as error:  # an internal API: a change in it must not stop the demo
        emit("warm_up_skipped", error=f"{type(error).__name__}: {error}")


def run_dag(dags_folder: Path, budget_limit: str) -> dict[str, Any]:
    """Parse the DAGs folder and ``dag.test()`` the example with ``budget_limit``; task states and the run."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(dags_folder))
    if bag.import_errors:
        raise RuntimeError(f"the example DAG does not import: {bag.import_errors}")
    dag = bag.get_dag(DAG_ID)
    if dag is None:
        raise RuntimeError(f"{DAG_ID} is not in {dags_folder}")
    warm_up()
    emit("dag_test", dag_id=DAG_ID, conf={"budget_limit": budget_limit})
    run = dag.test(run_conf={"budget_limit": budget_limit})
    states = {ti.task_id: (str(ti.state) if ti.state else None) for ti in run.get_task_instances()}
    return {"dag_id": DAG_ID, "run_id": run.run_id, "state": str(run.state), "tasks": states}


def main(argv: list[str] | None = None) -> int:
    """Migrate, run the DAG, write the result JSON; exit 1 if the run did not succeed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--budget-limit", required=True)
    parser.add_argument("--result", required=True, type=Path)
    args = parser.parse_args(argv)
    started = time.monotonic()
    emit("migrating", airflow_home=os.environ.get("AIRFLOW_HOME"))
    emit("migrated", seconds=round(migrate(), 1))
    dags_folder = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    result = run_dag(dags_folder, args.budget_limit)
    result["seconds"] = round(time.monotonic() - started, 1)
    args.result.write_text(json.dumps(result, indent=2))
    emit("done", **result)
    return 0 if result["state"] == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
