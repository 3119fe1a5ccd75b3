"""A real Airflow 3 deployment with CeleryExecutor on this machine, for the multi-worker end-to-end test.

Started as subprocesses under a temporary ``AIRFLOW_HOME``: ``airflow db migrate``, then the execution API
server (workers report task state through it), scheduler, DAG processor, triggerer and one Celery worker
per region queue. The broker is the local Redis (a dedicated database number, and a key prefix of this
cluster's own, whose keys are deleted afterwards),
the Airflow metadata and Celery results live in a fresh PostgreSQL database, and greenflow's ledger in
another; both are dropped when the cluster stops. Each component's output goes to its own log file, whose
tail :meth:`CeleryAirflow.log_tails` gives when a test fails.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError

# The servers `make test` starts (PostgreSQL with trust auth, Redis); override for other set-ups.
POSTGRES_ADMIN_URL = os.environ.get("GREENFLOW_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("GREENFLOW_TEST_REDIS_URL", "redis://127.0.0.1:6379/7")
E2E_DAGS = Path(__file__).resolve().parent / "e2e_dags"
AIRFLOW_BIN = Path(sys.executable).parent / "airflow"
TERMINAL_TI_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- databases -------------------------------------------------------------------------------------------
def _admin() -> Engine:
    return create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")


def create_database(prefix: str) -> str:
    """A fresh database on the local PostgreSQL; returns its SQLAlchemy (psycopg 3) URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = _admin()
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL} ({exc.orig}); run `make test`, which starts it"
        )
    finally:
        admin.dispose()
    return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def drop_database(url: str) -> None:
    """Drop the database ``url`` names, closing whatever connections are still open to it."""
    name = url.rsplit("/", 1)[1]
    admin = _admin()
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def clear_redis(url: str, prefix: str) -> None:
    """Delete this cluster's broker keys (all under ``prefix``) from the Redis database ``url`` names.

    Only the prefix: another session's test (or anything else using that database) keeps its keys.
    """
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=5)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=500))
        if keys:
            client.delete(*keys)
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis is not reachable at {url} ({exc}); run `make test`, which starts it")
    finally:
        client.close()


# -- memory ----------------------------------------------------------------------------------------------
class MemorySampler:
    """Samples the proportional set size (PSS, shared pages split between sharers) of process trees."""

    def __init__(self, roots: Callable[[], Sequence[int]], interval: float = 3.0) -> None:
        self._roots, self._interval = roots, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)
        self.peak_bytes = 0
        self.peak_processes = 0

    def start(self) -> None:
        """Start sampling in a daemon thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            total, count = 0, 0
            for pid in self._roots():
                try:
                    root = psutil.Process(pid)
                    tree = [root, *root.children(recursive=True)]
                except psutil.Error:
                    continue
                for process in tree:
                    try:
                        total += process.memory_full_info().pss
                        count += 1
                    except psutil.Error:
                        continue
            if total > self.peak_bytes:
                self.peak_bytes, self.peak_processes = total, count


# -- the cluster -----------------------------------------------------------------------------------------
@dataclass
class Component:
    """One long-running Airflow process (its whole process group is stopped together)."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path


@dataclass
class CeleryAirflow:
    """Airflow with CeleryExecutor: one worker per queue in ``queues`` (queue name = worker name)."""

    root: Path
    dag_files: Sequence[Path]
    queues: Sequence[str] = ("gb", "no")
    concurrency: int = 2
    extra_env: Mapping[str, str] = field(default_factory=dict)
    components: dict[str, Component] = field(default_factory=dict)
    metadata_url: str = ""
    ledger_url: str = ""
    port: int = 0
    memory: MemorySampler | None = None
    # Every broker key (queues, unacked messages, fanout) of this cluster starts with it: two sessions
    # running this test at once on one Redis never take each other's tasks.
    broker_prefix: str = field(default_factory=lambda: f"greenflow-e2e-{uuid.uuid4().hex[:8]}:")
    _engine: Engine | None = field(default=None, repr=False)

    @property
    def home(self) -> Path:
        """The temporary ``AIRFLOW_HOME``."""
        return self.root / "airflow"

    @property
    def logs(self) -> Path:
        """Where each component's output goes."""
        return self.root / "logs"

    # -- environment -------------------------------------------------------------------------------------
    def env(self, **more: str) -> dict[str, str]:
        """The environment every Airflow process of this cluster runs with."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "GREENFLOW_LEDGER"))}
        driverless = self.metadata_url.split("://", 1)[1]
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.home / "dags"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CORE__PARALLELISM": str(len(self.queues) * self.concurrency),
                # Shared by the scheduler (signs each workload's token) and the API server (checks it).
                "AIRFLOW__API_AUTH__JWT_SECRET": self._secret("jwt"),
                "AIRFLOW__API__SECRET_KEY": self._secret("api"),
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.port}",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.metadata_url,
                "AIRFLOW__CELERY__BROKER_URL": REDIS_URL,
                "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX": self.broker_prefix,
                # Celery's database backend takes "db+" and an SQLAlchemy URL (psycopg 3: no psycopg2 here).
                "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql+psycopg://{driverless}",
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.concurrency),
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "300",
                "AIRFLOW__GREENFLOW__LEDGER_URL": self.ledger_url,
                "PATH": f"{AIRFLOW_BIN.parent}{os.pathsep}{os.environ.get('PATH', '')}",
                **self.extra_env,
                **more,
            }
        )
        return env

    def _secret(self, name: str) -> str:
        path = self.root / f".{name}-secret"
        if not path.exists():
            path.write_text(secrets.token_urlsafe(32))
        return path.read_text()

    # -- life cycle --------------------------------------------------------------------------------------
    def start(self, timeout: float = 240.0) -> None:
        """Create the databases, migrate, start every component and wait until each is ready."""
        started = time.monotonic()
        self.logs.mkdir(parents=True, exist_ok=True)
        (self.home / "dags").mkdir(parents=True, exist_ok=True)
        for dag_file in self.dag_files:
            shutil.copy(dag_file, self.home / "dags")
        clear_redis(REDIS_URL, self.broker_prefix)  # fails early, naming the fix, if Redis is down
        self.metadata_url = create_database("greenflow_celery_airflow")
        self.ledger_url = create_database("greenflow_celery_ledger")
        self.port = free_port()
        self.memory = MemorySampler(lambda: [c.process.pid for c in self.components.values()])
        self.memory.start()
        migrate = self.airflow("db", "migrate", timeout=timeout)
        if migrate.returncode != 0:
            pytest.fail(f"airflow db migrate failed:\n{migrate.stdout[-3000:]}")
        # Only the execution API (workers report task state through it): no UI is needed, and it costs memory.
        self._spawn(
            "api-server",
            *("api-server", "--apps", "execution", "--workers", "1", "--host", "127.0.0.1", "--port", str(self.port)),
        )
        self._spawn("scheduler", "scheduler")
        self._spawn("dag-processor", "dag-processor")
        self._spawn("triggerer", "triggerer", "--skip-serve-logs")
        for queue in self.queues:
            # The hostname callable makes a task instance's `hostname` the Celery node that ran it.
            self._spawn(
                f"worker-{queue}",
                *("celery", "worker", "--queues", queue, "--concurrency", str(self.concurrency)),
                *("--celery-hostname", f"{queue}@%h", "--skip-serve-logs", "--without-gossip", "--without-mingle"),
                env=self.env(
                    AIRFLOW__CORE__HOSTNAME_CALLABLE="celery_worker_hostname.celery_worker_hostname",
                    PYTHONPATH=os.pathsep.join(p for p in (str(E2E_DAGS), os.environ.get("PYTHONPATH")) if p),
                ),
            )
        self._wait_ready(started + timeout)

    def stop(self) -> None:
        """Stop every component (SIGTERM, then SIGKILL), then drop the databases and the broker's keys."""
        try:
            for component in self.components.values():
                _signal_group(component.process, signal.SIGTERM)
            grace = time.monotonic() + 30
            for component in self.components.values():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    component.process.wait(timeout=max(grace - time.monotonic(), 0.1))
                # Task processes may outlive their worker's main process: kill the group in any case.
                _signal_group(component.process, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):  # SIGKILL is not refused; do not hang
                    component.process.wait(timeout=30)
        finally:
            if self.memory is not None:
                self.memory.stop()
            if self._engine is not None:
                self._engine.dispose()
            for url in (self.metadata_url, self.ledger_url):
                if url:
                    drop_database(url)
            with contextlib.suppress(pytest.fail.Exception):  # Redis down: start() already said so
                clear_redis(REDIS_URL, self.broker_prefix)

    def airflow(self, *args: str, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
        """Run one ``airflow`` CLI command against this cluster (output and errors together)."""
        return subprocess.run(
            [str(AIRFLOW_BIN), *args],
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
        )

    def _spawn(self, name: str, *args: str, env: Mapping[str, str] | None = None) -> None:
        log_path = self.logs / f"{name}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [str(AIRFLOW_BIN), *args],
                env=dict(env or self.env()),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() kills task processes too
            )
        self.components[name] = Component(name, process, log_path)

    def _wait_ready(self, deadline: float) -> None:
        jobs = {"SchedulerJob": "scheduler", "TriggererJob": "triggerer", "DagProcessorJob": "dag-processor"}
        waiting = {"api-server", *jobs.values(), *(f"worker-{q}" for q in self.queues)}
        while waiting:
            for component in self.components.values():
                if component.process.poll() is not None:
                    pytest.fail(f"{component.name} exited with {component.process.returncode}\n{self.log_tails()}")
            if "api-server" in waiting and _answers(f"http://127.0.0.1:{self.port}/execution/health"):
                waiting.discard("api-server")
            rows = self.query("SELECT DISTINCT job_type FROM job WHERE state = 'running'")
            waiting -= {jobs[row[0]] for row in rows if row[0] in jobs}
            for queue in self.queues:
                # Celery prints "<node> ready." once it consumes from its queues.
                if " ready." in (self.logs / f"worker-{queue}.log").read_text(errors="replace"):
                    waiting.discard(f"worker-{queue}")
            if time.monotonic() > deadline:
                pytest.fail(f"not ready in time: {sorted(waiting)}\n{self.log_tails()}")
            time.sleep(2)

    # -- reading state -----------------------------------------------------------------------------------
    def query(self, sql: str, **params: Any) -> list[Any]:
        """Rows of one read-only query on the Airflow metadata database."""
        engine = self._metadata_engine()
        with engine.connect() as connection:
            return list(connection.execute(text(sql), params))

    def _metadata_engine(self) -> Engine:
        if self._engine is None:
            self._engine = create_engine(self.metadata_url, pool_size=1, max_overflow=0)
        return self._engine

    def wait_for_dag(self, dag_id: str, timeout: float = 180.0) -> None:
        """Wait until the DAG processor has serialized ``dag_id`` (or fail naming its import errors)."""
        deadline = time.monotonic() + timeout
        while not self.query("SELECT 1 FROM serialized_dag WHERE dag_id = :d", d=dag_id):
            if time.monotonic() > deadline:
                errors = self.query("SELECT filename, stacktrace FROM import_error")
                pytest.fail(f"DAG {dag_id} was not registered in {timeout:.0f} s; import errors: {errors}")
            time.sleep(2)

    def trigger(self, dag_id: str) -> str:
        """Trigger a run of ``dag_id`` with the CLI; returns its run id."""
        run_id = f"e2e__{uuid.uuid4().hex[:8]}"
        done = self.airflow("dags", "trigger", dag_id, "--run-id", run_id)
        if done.returncode != 0:
            pytest.fail(f"airflow dags trigger {dag_id} failed:\n{done.stdout[-3000:]}")
        return run_id

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
        """task id -> its task instance's state, queue, hostname and start/end times."""
        rows = self.query(
            "SELECT task_id, state, queue, hostname, start_date, end_date FROM task_instance"
            " WHERE dag_id = :d AND run_id = :r AND map_index = -1",
            d=dag_id,
            r=run_id,
        )
        return {row.task_id: dict(row._mapping) for row in rows}

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float) -> str:
        """Wait for the run to finish; returns its state (fails with the component logs on time-out)."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.query("SELECT state FROM dag_run WHERE dag_id = :d AND run_id = :r", d=dag_id, r=run_id)
            if rows and rows[0][0] in ("success", "failed"):
                return str(rows[0][0])
            if time.monotonic() > deadline:
                states = {k: v["state"] for k, v in self.task_instances(dag_id, run_id).items()}
                pytest.fail(f"run {run_id} not finished in {timeout:.0f} s: {states}\n{self.log_tails()}")
            time.sleep(2)

    def log_tails(self, characters: int = 2500, task_logs: int = 6) -> str:
        """The end of each component's log and of the latest task attempts' logs, for failure messages."""
        parts = []
        for component in self.components.values():
            text_ = component.log.read_text(errors="replace") if component.log.exists() else ""
            parts.append(f"----- {component.name} (exit {component.process.poll()}) -----\n{text_[-characters:]}")
        attempts = sorted((self.home / "logs").glob("dag_id=*/**/*.log"), key=lambda p: p.stat().st_mtime)
        for path in attempts[-task_logs:]:
            relative = path.relative_to(self.home / "logs")
            parts.append(f"----- task log {relative} -----\n{path.read_text(errors='replace')[-characters:]}")
        return "\n".join(parts)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
