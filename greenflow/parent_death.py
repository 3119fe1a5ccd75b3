"""Children that die with greenflow: a ``kill -9`` of greenflow must not leave its command running unmetered.

Used by ``greenflow run`` (:mod:`greenflow.cli.forwarding`) and the segment runner
(:mod:`greenflow.segment_runner`); kept apart from both so the launcher's fast path imports nothing heavy.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel SIGKILL the child when greenflow dies (Linux), else ``None``.

    Everything is looked up here, in the parent: between ``fork`` and ``exec`` the child only calls the
    prepared ``prctl`` and ``getppid``, taking no lock another thread of greenflow (the meter's sampler,
    the ledger warm-up) could hold at the fork. The signal fires when the *thread* that forked exits:
    greenflow starts the command from its main thread, which lives as long as the process.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent = os.getpid()
    kill = int(signal.SIGKILL)

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, kill, 0, 0, 0)
        if os.getppid() != parent:  # greenflow died before the line above: the signal will never come
            os.kill(os.getpid(), kill)

    return arm
