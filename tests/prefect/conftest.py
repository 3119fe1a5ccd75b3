"""Fixtures for the Prefect adapter's tests: one session-wide Prefect test server, fake GPUs, fast replays.

Prefect reads its settings when it is first imported, so this module sets them before anything imports
``prefect``: a private ``PREFECT_HOME`` (other engineers run Prefect on this machine), no analytics. The
harness (``prefect_test_harness``, started once per session, ~20 s) runs with flow heartbeats off, which
otherwise add about a second to every flow. Tests that use it are in the ``prefect`` xdist group so that
they share one worker, and one server.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest


def private_prefect_home(prefix: str) -> dict[str, str]:
    """Settings that keep Prefect's files in a fresh directory (the home alone does not move all of them)."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    return {
        "PREFECT_HOME": str(home),
        # Prefect 3.7 derives these from ~/.prefect, not from PREFECT_HOME: results (a task cache would
        # outlive the session) and the server's block-registration memo.
        "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(home / "storage"),
        "PREFECT_SERVER_MEMO_STORE_PATH": str(home / "memo_store.toml"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }


# Prefect reads the environment when it is first imported; the session fixture applies the same values
# as temporary settings too, in case something imported prefect before this file.
PRIVATE_HOME = private_prefect_home("greenflow-prefect-home-")
os.environ.update(PRIVATE_HOME)
os.environ.pop("PREFECT_API_URL", None)

from greenflow.ledger import Entry, EntryFilter, Ledger  # noqa: E402 - after the environment is set
from greenflow.metering.meter import Meter  # noqa: E402 - after the environment is set
from greenflow.prefect.connections import ledger_at  # noqa: E402 - after the environment is set
from greenflow.testing.fake_nvml import FakeGpu, FakeNvml  # noqa: E402 - after the environment is set

# Midnight in Spain, June 2022: the solar middle of the day is much greener than the night.
MIDNIGHT = "2022-06-01T00:00Z"
GPU_WATTS = 300.0


@pytest.fixture
def replay() -> Callable[..., dict[str, Any]]:
    """``replay(speed=36000, now=MIDNIGHT)``: trace options replaying the shipped Spanish data, fast.

    36000x: ten hours of grid time per second, so a deferral from midnight to midday waits ~1.2 s.
    """

    def options(speed: float = 36000.0, now: str = MIDNIGHT) -> dict[str, Any]:
        return {"now": now, "speed": speed, "replay_started_at": datetime.now(UTC).isoformat()}

    return options


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """The session's Prefect test server (start-up ~20 s), with flow heartbeats off."""
    from prefect.settings import (
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        PREFECT_HOME,
        PREFECT_LOCAL_STORAGE_PATH,
        PREFECT_SERVER_ANALYTICS_ENABLED,
        temporary_settings,
    )
    from prefect.testing.utilities import prefect_test_harness

    updates = {
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,
        PREFECT_HOME: PRIVATE_HOME["PREFECT_HOME"],
        PREFECT_LOCAL_STORAGE_PATH: PRIVATE_HOME["PREFECT_RESULTS_LOCAL_STORAGE_PATH"],
        PREFECT_SERVER_ANALYTICS_ENABLED: False,
    }
    with temporary_settings(updates=updates), prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def private_home() -> Callable[[str], dict[str, str]]:
    """``private_home(prefix)``: environment for a Prefect process that keeps its files in a fresh directory."""
    return private_prefect_home


@pytest.fixture
def ledger() -> Ledger:
    """The ledger carbon-aware code writes to by default in this test (``GREENFLOW_LEDGER_URL``)."""
    return ledger_at()


@pytest.fixture
def fake_gpu_meter(tmp_path: Path) -> Callable[[], Meter]:
    """A meter on one autospec-faked NVIDIA GPU drawing a constant 300 W (no RAPL)."""
    fake = FakeNvml([FakeGpu(uuid="GPU-11111111-2222-3333-4444-555555555555", power_w=GPU_WATTS)])
    return lambda: Meter(
        nvml=fake.backend(), rapl_root=tmp_path / "no-rapl", sample_interval=0.02, environ={"CUDA_VISIBLE_DEVICES": "0"}
    )


@pytest.fixture
def run_entries(ledger: Ledger) -> Callable[[object], list[Entry]]:
    """``run_entries(flow_run_id)``: the ledger entries of one flow run, in order."""
    return lambda flow_run_id: ledger.entries(EntryFilter(run_id=str(flow_run_id)))
