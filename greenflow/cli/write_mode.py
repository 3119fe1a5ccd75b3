"""When ``greenflow run`` writes a fast-path run's entry: in the background, or before exiting.

Its own module because both the launcher (which runs the fast path) and the Typer command (which
checks ``--ledger-write``) need it, and the launcher must import nothing of the Typer side.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from greenflow.errors import InvalidInput

WriteMode = Literal["auto", "background", "wait"]
WRITE_MODES: tuple[WriteMode, ...] = ("auto", "background", "wait")
WRITE_MODE_ENV = "GREENFLOW_LEDGER_WRITE"


def write_mode(value: str | None, env: Mapping[str, str], pid: int) -> Literal["background", "wait"]:
    """How the entry of a fast-path run is written: ``--ledger-write``, else ``$GREENFLOW_LEDGER_WRITE``, else auto.

    ``auto`` waits where the end of the command may take every process with it: greenflow as PID 1
    (a container's entrypoint), inside Kubernetes or a Slurm job; elsewhere it writes in the background.
    """
    chosen = (value or env.get(WRITE_MODE_ENV) or "auto").strip().lower()
    if chosen not in WRITE_MODES:
        raise InvalidInput(
            f"--ledger-write={chosen!r} is not one of {', '.join(WRITE_MODES)}",
            fix="use auto, background (exit at once, entry written just after) or wait (entry written before exit)",
        )
    if chosen == "auto":
        torn_down = pid == 1 or bool(env.get("KUBERNETES_SERVICE_HOST")) or bool(env.get("SLURM_JOB_ID"))
        return "wait" if torn_down else "background"
    return "wait" if chosen == "wait" else "background"
