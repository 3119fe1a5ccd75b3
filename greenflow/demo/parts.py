"""The demo's parts as subprocesses: their environment, their start, and stopping them.

Each part runs ``python -m greenflow.<airflow|prefect>.demo_run`` in its own session (so stopping it also stops
what it started: Prefect's temporary server), with stdout and stderr captured to its log file.
The environment is built from scratch for the orchestrator: any ``AIRFLOW_*``/``PREFECT_*`` settings of
the user's shell are dropped, so the demo never writes to a real Airflow database or Prefect server.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from greenflow.demo.layout import CHECKPOINTED_FILE, DemoLayout, Examples

CHECKPOINTED_NAME = CHECKPOINTED_FILE.as_posix()

# The example DAG replays its trace at this speed (its REPLAY option); the Prefect part is told the same.
# GREENFLOW_REPLAY_SPEED slows it down where starting a task takes seconds (the window must not pass first).
REPLAY_SPEED = float(os.environ.get("GREENFLOW_REPLAY_SPEED", "3600"))
# The GPU the stand-in tasks represent: its draw is simulated (greenflow.metering.simulated), each real
# second of a stand-in standing for REPLAY_SPEED seconds, the trace time it spans on the replay clock.
SIMULATED_GPU_W = 300.0
# The interruptible fine-tune (``greenflow run --interruptible``): 4 trace hours of work due 10 h after a
# Sunday 23:00 on the same Spanish trace. Its plan: the hour before midnight, then the morning from 05:00
# (two segments, ~6 % less carbon than running in one piece at once). It follows the demo's replay clock.
FINETUNE_REGION = "ES"
FINETUNE_START = "2022-06-05T23:00Z"
FINETUNE_WORK_H = 4
FINETUNE_DEADLINE_H = 10
# The stand-in's steps carry 90 % of the declared work: the remaining 10 % is its start-up and the resume
# (``resume_overhead``), so the last segment usually ends on plan.
_FINETUNE_STEPS = 72


@dataclass(frozen=True)
class PartPlan:
    """What one part runs and with which environment."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    note: str  # how this part meters energy, for the user


def installed(module: str) -> bool:
    """Whether ``module`` can be imported here (checked without importing it)."""
    return importlib.util.find_spec(module) is not None


def _base_env(layout: DemoLayout) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW_", "AIRFLOW__", "PREFECT_", "GREENFLOW_")) and k != "CUDA_VISIBLE_DEVICES"
    }
    # The orchestrators spawn their own CLIs (``airflow``, Prefect's server): the venv's bin comes first.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    env["GREENFLOW_LEDGER_URL"] = layout.ledger_url
    env["GREENFLOW_SIMULATED_GPU_W"] = f"{SIMULATED_GPU_W:g}"
    env["GREENFLOW_SIMULATED_TIME_SCALE"] = f"{REPLAY_SPEED:g}"
    return env


def simulation_note() -> str:
    """How the parts' GPU energy is simulated, in one sentence for the user."""
    return (
        f"GPU energy is SIMULATED, not measured: the stand-in tasks run for the trace time they represent "
        f"(2 trace hours = {7200 / REPLAY_SPEED:g} real s) and are given a declared {SIMULATED_GPU_W:g} W GPU "
        f"over it (GREENFLOW_SIMULATED_GPU_W), method 'simulated' in every entry"
    )


def airflow_plan(layout: DemoLayout, examples: Examples, budget_limit: str) -> PartPlan:
    """``dag.test()`` of the example DAG in a throw-away ``AIRFLOW_HOME`` with a SQLite metadata database."""
    home = layout.airflow_home
    env = _base_env(layout) | {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__GREENFLOW__LEDGER_URL": layout.ledger_url,
        "GREENFLOW_REPLAY_SPEED": f"{REPLAY_SPEED:g}",
    }
    note = f"simulated {SIMULATED_GPU_W:g} W GPU; CPU and DRAM metered if this host has RAPL, else not measured"
    link = home / "dags" / examples.dag_file.name
    try:
        link.symlink_to(examples.dag_file)
    except OSError:  # no symlinks here (some file systems): a copy parses the same
        link.write_bytes(examples.dag_file.read_bytes())
    argv = (
        sys.executable,
        "-m",
        "greenflow.airflow.demo_run",
        "--budget-limit",
        budget_limit,
        "--result",
        str(layout.result("airflow")),
    )
    return PartPlan("airflow", argv, env, note)


def prefect_plan(layout: DemoLayout, examples: Examples, budget_limit: str) -> PartPlan:
    """The example flow on Prefect's temporary server: a simulated GPU, the host's meters switched off.

    No GPU is selected and RAPL points nowhere: the entries show, next to the simulated GPU energy, what
    greenflow does when it cannot measure (CPU and DRAM ``None`` with the reason). The same on every
    machine, so the story does not change.
    """
    env = _base_env(layout) | {
        "PREFECT_HOME": str(layout.prefect_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # Prefect gives its temporary server 20 s to answer by default; on a busy host (the Airflow run
        # is still going when it starts) its imports and database migrations alone take longer, and the
        # part died with "Timed out while attempting to connect to ephemeral Prefect API server".
        # The part's own timeout (--timeout) still bounds the whole run.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        "GREENFLOW_REPLAY_SPEED": f"{REPLAY_SPEED:g}",
        "CUDA_VISIBLE_DEVICES": "",
        "GREENFLOW_RAPL_ROOT": str(layout.root / "no-rapl"),
    }
    note = (
        f"simulated {SIMULATED_GPU_W:g} W GPU; CPU and DRAM metering off on purpose (no RAPL): recorded as "
        "not measured, with the reason"
    )
    argv = (
        sys.executable,
        "-m",
        "greenflow.prefect.demo_run",
        "--flow-file",
        str(examples.flow_file),
        "--budget-limit",
        budget_limit,
        "--go",
        str(layout.prefect_go),
        "--result",
        str(layout.result("prefect")),
    )
    return PartPlan("prefect", argv, env, note)


def finetune_plan(layout: DemoLayout, examples: Examples) -> PartPlan:
    """``greenflow run --interruptible`` of the checkpointing example on the replayed trace (no orchestrator).

    The command gets SIGTERM at its first segment's end, saves its checkpoint and exits; greenflow starts
    it again at the next segment, where it resumes from the checkpoint. One ledger entry per segment.
    """
    step_seconds = FINETUNE_WORK_H * 3600 / REPLAY_SPEED / (_FINETUNE_STEPS / 0.9)
    directory = layout.finetune_dir
    argv = (
        sys.executable,
        "-m",
        "greenflow.cli",
        "run",
        "--interruptible",
        "--grace",
        "10s",
        "--workflow",
        "demo-finetune",
        "--task",
        "finetune",
        "--region",
        FINETUNE_REGION,
        "--provider",
        "trace",
        "--provider-option",
        f"now={FINETUNE_START}",
        "--provider-option",
        f"speed={REPLAY_SPEED:g}",
        "--expected-duration",
        f"{FINETUNE_WORK_H}h",
        "--deadline",
        f"{FINETUNE_DEADLINE_H}h",
        "--",
        sys.executable,
        str(examples.checkpointed_file),
        "--steps",
        str(_FINETUNE_STEPS),
        "--step-seconds",
        f"{step_seconds:.4f}",
        "--checkpoint",
        str(directory / "finetune.ckpt"),
        "--log",
        str(directory / "training.log"),
    )
    note = (
        f"`greenflow run --interruptible` of {CHECKPOINTED_NAME}: {FINETUNE_WORK_H} h of fine-tuning due within "
        f"{FINETUNE_DEADLINE_H} h from {FINETUNE_START} (trace), simulated {SIMULATED_GPU_W:g} W GPU"
    )
    return PartPlan("finetune", argv, _base_env(layout), note)


@dataclass
class RunningPart:
    """A started part (mutable: it ends)."""

    plan: PartPlan
    process: subprocess.Popen[bytes]
    log: Path
    started: float

    @classmethod
    def start(cls, plan: PartPlan, log: Path, cwd: Path) -> RunningPart:
        """Start ``plan`` with its output appended to ``log``."""
        with log.open("ab") as stream:
            process = subprocess.Popen(
                list(plan.argv),
                env=dict(plan.env),
                cwd=cwd,
                stdout=stream,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return cls(plan, process, log, time.monotonic())

    @property
    def returncode(self) -> int | None:
        """``None`` while it runs."""
        return self.process.poll()

    def stop(self) -> None:
        """Stop the part and everything in its session (SIGTERM, then SIGKILL after 10 s)."""
        if self.process.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def tail(self, lines: int = 25) -> list[str]:
        """The last ``lines`` lines of the part's log."""
        try:
            return self.log.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return []
