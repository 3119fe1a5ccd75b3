"""Fixtures for the Airflow provider's tests.

Airflow reads its configuration when it is first imported, so this module points it at a private
``AIRFLOW_HOME`` (one per pytest process) before anything imports Airflow: its own SQLite metadata
database (created once per session, only by the tests that need it), no example DAGs, and a DAGs folder
holding the repository's example DAGs plus the test DAGs in ``tests/airflow/dags``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_DAGS = REPO / "dags"
TEST_DAGS = Path(__file__).resolve().parent / "dags"

_HOME = Path(tempfile.mkdtemp(prefix="greenflow-airflow-home-"))
_DAGS = _HOME / "dags"
_DAGS.mkdir()
for _source in [*EXAMPLE_DAGS.glob("*.py"), *TEST_DAGS.glob("*.py")]:
    (_DAGS / _source.name).symlink_to(_source)
if "airflow.configuration" not in sys.modules:  # pragma: no branch - first to load Airflow in this process
    os.environ.update(
        {
            "AIRFLOW_HOME": str(_HOME),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_HOME / 'airflow.db'}",
        }
    )
# Airflow reads this on every lookup, so it applies even if another conftest configured Airflow first;
# it is set for the whole process because Airflow caches its DAG bundles from the first lookup.
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(_DAGS)


@pytest.fixture(autouse=True)
def _airflow_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """The API base URL the extra links are built on."""
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "http://airflow.test:8080")


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """The metadata database, migrated once per pytest process (``airflow db migrate``, ~10 s)."""
    done = _HOME / ".migrated"
    if not done.exists():
        # The database this process's Airflow uses (its own, unless another conftest configured Airflow first).
        subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            check=True,
            capture_output=True,
            env=os.environ.copy(),
            timeout=300,
        )
        done.touch()
    return _HOME


@pytest.fixture(scope="session")
def dagbag(airflow_db: Path) -> Any:
    """The DAGs folder, parsed once; no file may fail to import."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(_DAGS))
    assert bag.import_errors == {}
    return bag


@pytest.fixture
def task_ledger_url() -> str:
    """The ledger every task of the test writes to (the root conftest's per-test default)."""
    return os.environ["GREENFLOW_LEDGER_URL"]


@pytest.fixture
def gf_ledger(task_ledger_url: str) -> Any:
    """The test's ledger, shared with the tasks it runs in this process."""
    from greenflow.airflow.resources import ledger_at

    return ledger_at(task_ledger_url)


@dataclass
class FakeTaskInstance:
    """The part of a task instance greenflow's operators touch, for unit tests outside a DAG run."""

    dag_id: str = "unit_dag"
    run_id: str = "manual__2024-01-01T00:00:00+00:00"
    task_id: str = "task"
    try_number: int = 1
    map_index: int = -1
    xcoms: dict[str, Any] = field(default_factory=dict)

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


@pytest.fixture
def make_context() -> Any:
    """``make_context(task_id=..., try_number=...)``: a minimal task context with a recording TI."""

    def make(**ti: Any) -> dict[str, Any]:
        return {"ti": FakeTaskInstance(**ti)}

    return make


# -- trace data written for a test --------------------------------------------------------------------
def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def write_series(path: Path, start: datetime, values: list[float], step: timedelta) -> Path:
    """A ``timestamp,gco2_per_kwh`` series trace (one value per ``step`` from ``start``)."""
    lines = ["timestamp,gco2_per_kwh"]
    lines += [f"{_iso(start + i * step)},{v}" for i, v in enumerate(values)]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_snapshots(path: Path, snapshots: dict[datetime, list[float]], start: datetime, step: timedelta) -> Path:
    """An ``issued_at,slot_start,value`` snapshots trace: each forecast covers ``start`` onwards."""
    lines = ["issued_at,slot_start,forecast_gco2_per_kwh"]
    for issued, values in snapshots.items():
        lines += [f"{_iso(issued)},{_iso(start + i * step)},{v}" for i, v in enumerate(values)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def series_trace(tmp_path: Path) -> Any:
    """``series_trace(start, values, step)``: write a series trace file and return its path."""

    def make(start: datetime, values: list[float], step: timedelta = timedelta(hours=1)) -> Path:
        return write_series(tmp_path / f"series-{len(list(tmp_path.iterdir()))}.csv", start, values, step)

    return make


@pytest.fixture
def snapshots_trace(tmp_path: Path) -> Any:
    """``snapshots_trace({issued_at: values}, start, step)``: write a snapshots trace file."""

    def make(snapshots: dict[datetime, list[float]], start: datetime, step: timedelta = timedelta(minutes=30)) -> Path:
        return write_snapshots(tmp_path / f"snapshots-{len(list(tmp_path.iterdir()))}.csv", snapshots, start, step)

    return make


@pytest.fixture
def midnight() -> datetime:
    """2022-06-01 00:00 UTC: night in Spain, with a much greener solar midday ahead in the shipped trace."""
    return datetime(2022, 6, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _no_leaking_connections(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Connections defined by one test (AIRFLOW_CONN_*) never reach the next."""
    for name in [k for k in os.environ if k.startswith("AIRFLOW_CONN_")]:
        monkeypatch.delenv(name)
    yield
