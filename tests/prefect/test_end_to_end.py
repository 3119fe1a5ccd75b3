"""End to end: a real ``prefect server start`` on 127.0.0.1 and a process worker, nothing faked.

* A deployment run of the example ``flows/green_deployment.py`` starts, plans, gives its process back and
  sits ``Scheduled`` (``AwaitingGreenWindow``) at the green window with no process holding it; the worker
  picks it up at the window and it runs, is metered and recorded, and publishes its artifacts.
* A run that spends a budget emits ``greenflow.budget.exhausted``; the automation greenflow creates
  pauses the work pool (a hard gate: the next run stays ``Scheduled``), and once the pool is resumed
  the next run is refused by the budget and recorded as ``skipped_budget``.

The trace is replayed at 1200x (20 minutes of grid time per second), so a deferral from the small hours
to midday takes ~30 s of real time, longer than a flow process takes to start on a busy machine.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from greenflow.ledger import Budget, EntryFilter, Ledger

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("prefect-live"), pytest.mark.timeout(480)]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@dataclass
class LivePrefect:
    """A running Prefect server and the environment that points at it."""

    api_url: str
    env: dict[str, str]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a process this test started, and its children (it leads its own process group)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def live_prefect(private_home: Callable[[str], dict[str, str]]) -> Iterator[LivePrefect]:
    """``prefect server start`` on a free port (healthy in ~25 s), with its own PREFECT_HOME."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        **private_home("greenflow-e2e-prefect-"),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PREFECT_API_URL": api_url,
        "PREFECT_UI_API_URL": api_url,
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "0",
    }
    log = open(Path(env["PREFECT_HOME"]) / "server.log", "wb")  # noqa: SIM115 - lives as long as the server
    server = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, f"prefect server exited; see {log.name}"
            assert time.monotonic() < deadline, f"prefect server not healthy in 120 s; see {log.name}"
            time.sleep(0.5)
        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            yield LivePrefect(api_url, env)
    finally:
        _stop(server)
        log.close()


@pytest.fixture
def start_worker(live_prefect: LivePrefect) -> Iterator[Callable[[str], subprocess.Popen[bytes]]]:
    """``start_worker(pool)``: a process worker on the live server, sharing this test's ledger."""
    started: list[subprocess.Popen[bytes]] = []

    def start(pool: str) -> subprocess.Popen[bytes]:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.actions import WorkPoolCreate

        with get_client(sync_client=True) as client:
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
        env = {**live_prefect.env, "GREENFLOW_LEDGER_URL": os.environ["GREENFLOW_LEDGER_URL"]}
        log = open(Path(live_prefect.env["PREFECT_HOME"]) / f"worker-{pool}.log", "wb")  # noqa: SIM115
        worker = subprocess.Popen(
            [str(BIN / "prefect"), "worker", "start", "--pool", pool, "--type", "process"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started.append(worker)
        return worker

    yield start
    for worker in started:
        _stop(worker)


def _flow_run(flow_run_id: UUID) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id)


def _wait_for(flow_run_id: UUID, done: Callable[[Any], bool], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        run = _flow_run(flow_run_id)
        if done(run):
            return run
        assert time.monotonic() < deadline, f"flow run not {what} in {timeout} s: {run.state!r}"
        time.sleep(0.3)


def _processes_holding(flow_run_id: UUID) -> list[int]:
    """PIDs of processes running this flow run (their environment names it, as a worker's children do)."""
    marker = f"PREFECT__FLOW_RUN_ID={flow_run_id}".encode()
    holders = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    holders.append(int(entry.name))
            except OSError:
                continue  # gone, or not ours to read
    return holders


def test_a_deployment_run_waits_scheduled_at_the_window_without_a_process_then_runs(
    live_prefect: LivePrefect, start_worker: Callable[[str], Any]
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.deployments import run_deployment
    from prefect.flows import Flow

    from greenflow.prefect import GREEN_WINDOW_STATE

    start_worker("green-pool")
    nightly = Flow.from_source(source=str(ROOT / "flows"), entrypoint="green_deployment.py:nightly_training")
    nightly.deploy(name="green", work_pool_name="green-pool", print_next_steps=False, ignore_warnings=True)  # type: ignore[union-attr]
    replay = {
        "GREENFLOW_REPLAY_STARTED_AT": datetime.now(UTC).isoformat(),
        "GREENFLOW_REPLAY_SPEED": "1200",
        "GREENFLOW_CPU_TDP_W": "65",  # no GPU, no RAPL here: a labelled CPU estimate
    }
    created = run_deployment("greenflow-example-nightly-training/green", timeout=0, job_variables={"env": replay})
    flow_run_id = created.id  # type: ignore[union-attr]

    waiting = _wait_for(flow_run_id, lambda r: r.state.name == GREEN_WINDOW_STATE, 150, "rescheduled")
    window = waiting.next_scheduled_start_time
    assert waiting.state.type.value == "SCHEDULED" and waiting.state.message.startswith("greenflow: deferred to")
    assert window > datetime.now(UTC)
    # The process that planned exits: nothing holds the run while it waits.
    deadline = time.monotonic() + 20
    while _processes_holding(flow_run_id):
        assert time.monotonic() < deadline, "the flow run's process did not exit after rescheduling"
        time.sleep(0.2)
    assert datetime.now(UTC) < window, "the check must happen before the window"
    time.sleep(2)
    assert _processes_holding(flow_run_id) == []
    assert _flow_run(flow_run_id).state.name == GREEN_WINDOW_STATE

    done = _wait_for(flow_run_id, lambda r: r.state.is_final(), 180, "finished")
    assert done.state.is_completed(), done.state
    assert done.start_time is not None
    with get_client(sync_client=True) as client:
        history = [s.name for s in client.read_flow_run_states(flow_run_id)]
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    assert history[history.index(GREEN_WINDOW_STATE) :][-2:] == ["Running", "Completed"]
    assert history.count("Running") == 2  # planned in one process, ran in another

    [entry] = Ledger().entries(EntryFilter(run_id=str(flow_run_id)))
    assert (entry.orchestrator, entry.task_id, entry.attempt) == ("prefect", "greenflow-example-nightly-training", 1)
    assert entry.decision == "deferred" and entry.region == "ES"
    assert entry.planned_start.hour >= 10  # the solar window of that June day, in the trace's time
    assert entry.actual_start >= entry.planned_start
    assert entry.method_gpu is None and "no NVIDIA GPU" in entry.measurement_notes["gpu"]
    assert entry.method_cpu == "estimate" and entry.energy_cpu_kwh is not None
    keys = {a.key for a in artifacts}
    assert {"greenflow-run-greenflow-example-nightly-training", "greenflow-ledger"} <= keys


def test_a_spent_budget_pauses_the_pool_and_refuses_the_next_run(
    live_prefect: LivePrefect, start_worker: Callable[[str], Any]
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolUpdate
    from prefect.deployments import run_deployment
    from prefect.flows import Flow

    from greenflow.prefect import pause_work_pool_on_exhaustion

    ledger = Ledger()
    ledger.budgets.set(Budget.parse("e2e-gpu", "25g", "month"))
    start_worker("budget-pool")
    budgeted = Flow.from_source(source=str(ROOT / "tests/prefect/deployable"), entrypoint="budgeted.py:budgeted")
    budgeted.deploy(name="e2e", work_pool_name="budget-pool", print_next_steps=False, ignore_warnings=True)  # type: ignore[union-attr]
    automation = pause_work_pool_on_exhaustion("budget-pool", budget="e2e-gpu")
    assert automation.id is not None

    first = run_deployment("greenflow-e2e-budgeted/e2e", timeout=0).id  # type: ignore[union-attr]
    assert _wait_for(first, lambda r: r.state.is_final(), 120, "finished").state.is_completed()
    assert ledger.budgets.status("e2e-gpu").exhausted  # nothing measured here: charged its 25 g estimate

    deadline = time.monotonic() + 60
    while True:
        with get_client(sync_client=True) as client:
            if client.read_work_pool("budget-pool").is_paused:
                break
        assert time.monotonic() < deadline, "the automation did not pause the work pool"
        time.sleep(0.5)

    second = run_deployment("greenflow-e2e-budgeted/e2e", timeout=0).id  # type: ignore[union-attr]
    time.sleep(6)  # several worker polls
    held = _flow_run(second)
    assert held.state.type.value == "SCHEDULED" and held.run_count == 0  # the paused pool hands out nothing
    assert _processes_holding(second) == []

    with get_client(sync_client=True) as client:
        client.update_work_pool("budget-pool", WorkPoolUpdate(is_paused=False))
    refused = _wait_for(second, lambda r: r.state.is_final(), 120, "finished")
    assert refused.state.is_failed() and "budget 'e2e-gpu' cannot cover 25 g" in refused.state.message
    assert [e.decision for e in ledger.entries(EntryFilter(run_id=str(first)))] == ["ran_now"]
    assert [e.decision for e in ledger.entries(EntryFilter(run_id=str(second)))] == ["skipped_budget"]
