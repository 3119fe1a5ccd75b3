"""Forwarding SIGINT/SIGTERM from ``greenflow run`` to the command it runs (both the fast and the full path).

The command runs in its own process group (``start_new_session=True``), so a signal sent to greenflow
alone would not reach it; greenflow forwards it to the whole group and remembers it, so the attempt
is recorded as ``interrupted`` with the exit code a shell would report (128 + the signal's number).

A signal cannot be forwarded when greenflow is killed outright (``kill -9``, the OOM killer). On Linux
the command is then killed by the kernel: it starts with ``PR_SET_PDEATHSIG`` = SIGKILL, so it never
runs on unmetered without greenflow. (Processes the command itself starts are not covered unless they
die with it; ``exec`` in a wrapper script keeps the command the direct child.)
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from types import FrameType, TracebackType
from typing import Any

from greenflow.parent_death import die_with_parent

_FORWARDED = (signal.SIGINT, signal.SIGTERM)


class SignalForwarder:
    """Context manager: while open, SIGINT/SIGTERM go to the started child's process group.

    The handlers go in when the context opens, before the child starts, so a signal that arrives in
    between is not lost: :meth:`start` passes it on as soon as the child exists.
    """

    def __init__(self) -> None:
        self.received: list[int] = []
        self._child: subprocess.Popen[bytes] | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> SignalForwarder:
        self._previous = {sig: signal.signal(sig, self._forward) for sig in _FORWARDED}
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def start(self, command: list[str]) -> subprocess.Popen[bytes]:
        """Start ``command`` in its own process group; raises ``OSError`` when it cannot start.

        On Linux the command dies with greenflow (see :func:`die_with_parent`).
        """
        self._child = subprocess.Popen(command, start_new_session=True, preexec_fn=die_with_parent())
        if self.received:
            self._kill(self.received[0])
        return self._child

    @property
    def stopped_code(self) -> int | None:
        """128 + the first forwarded signal's number, or ``None`` when nothing was forwarded."""
        return 128 + self.received[0] if self.received else None

    def _forward(self, signum: int, _frame: FrameType | None) -> None:
        self.received.append(signum)
        self._kill(signum)

    def _kill(self, signum: int) -> None:
        if self._child is not None:
            with contextlib.suppress(ProcessLookupError):  # the child may have just exited
                os.killpg(self._child.pid, signum)
