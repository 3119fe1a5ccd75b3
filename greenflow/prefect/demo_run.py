"""The demo's Prefect part, run as ``python -m greenflow.prefect.demo_run`` in its own process.

With ``PREFECT_API_URL`` unset Prefect starts a temporary local server (its database in the demo's
``PREFECT_HOME``). This process starts it at once, then waits for the parent's go-ahead (the Airflow run
shares the budget, so the two runs take turns and the story comes out the same every time), then runs
the example flow: its carbon-aware task waits in process for the green window. Prefect is imported only here.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

from greenflow.demo.events import emit


def start_server() -> str:
    """Start Prefect's temporary server (the first client call does it) and return its API URL."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        client.api_healthcheck()
        return str(client.api_url)


def wait_for(go: Path, timeout: float) -> None:
    """Block until the parent creates ``go``."""
    deadline = time.monotonic() + timeout
    while not go.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no go-ahead from the demo ({go}) within {timeout:.0f} s")
        time.sleep(0.1)


def load_flow(flow_file: Path) -> Any:
    """The ``training`` flow of the example file."""
    spec = importlib.util.spec_from_file_location("greenflow_demo_training_flow", flow_file)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot import {flow_file}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.training


def main(argv: list[str] | None = None) -> int:
    """Start the server, wait for the go-ahead, run the flow, write the result JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--flow-file", required=True, type=Path)
    parser.add_argument("--budget-limit", required=True)
    parser.add_argument("--go", required=True, type=Path)
    parser.add_argument("--result", required=True, type=Path)
    args = parser.parse_args(argv)
    started = time.monotonic()
    emit("server_starting")
    url = start_server()
    emit("server_ready", url=url, seconds=round(time.monotonic() - started, 1))
    training = load_flow(args.flow_file)
    emit("waiting_turn")
    wait_for(args.go, timeout=600)
    emit("flow_start", flow="greenflow-example-training", budget_limit=args.budget_limit)
    value = training(budget_limit=args.budget_limit)
    result = {
        "state": "success",
        "evaluated": bool(isinstance(value, dict) and value.get("metrics") is not None),
        "seconds": round(time.monotonic() - started, 1),
    }
    args.result.write_text(json.dumps(result, indent=2))
    emit("done", **result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
