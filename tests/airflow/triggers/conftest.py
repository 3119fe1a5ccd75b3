"""Fixtures for the trigger tests: which thread did each blocking call of a trigger, the event loop's or a worker's?

The triggerer runs every trigger's ``__init__`` and ``run()`` on one event loop; a blocking call there
stalls every other trigger. :class:`LoopWatch` records, with the calling thread:

* blocking calls Python itself reports through audit hooks (file opens, SQLite connections, sockets,
  DNS, sleeps, subprocesses, first-time imports);
* greenflow's own blocking entry points (building a spec or a provider, opening a ledger, planning,
  parsing or rendering a decision), wrapped for the duration of the watch.

An audit hook cannot be removed, so one is installed per process and forwards to the active watch
(the ``loop_watch`` fixture).
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

AUDITED = frozenset(
    {
        "open",
        "sqlite3.connect",
        "socket.connect",
        "socket.getaddrinfo",
        "time.sleep",
        "subprocess.Popen",
        "import",
    }
)

_active: list[LoopWatch] = []
_hook_installed = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event in AUDITED and _active:
        detail = str(args[0]) if args else ""
        if event == "time.sleep" and args and args[0] == 0:
            return  # asyncio.sleep(0) and friends yield, they do not block
        _active[-1].record(f"{event}:{detail}")


@dataclass(frozen=True)
class Call:
    """One recorded blocking call."""

    what: str
    thread: int
    thread_name: str


class LoopWatch:
    """Records blocking calls with their thread while active (see the module docstring)."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._recording = False

    def __enter__(self) -> LoopWatch:
        self._recording = True
        return self

    def __exit__(self, *exc: object) -> None:
        self._recording = False

    def record(self, what: str) -> None:
        """Note ``what`` as called on the current thread (only inside ``with watch:``)."""
        if not self._recording:
            return
        current = threading.current_thread()
        with self._lock:
            self.calls.append(Call(what, threading.get_ident(), current.name))

    def on(self, thread: int) -> list[str]:
        """What was called on ``thread``."""
        return [call.what for call in self.calls if call.thread == thread]

    def off(self, thread: int) -> list[str]:
        """What was called on any other thread."""
        return [call.what for call in self.calls if call.thread != thread]

    def wrap(self, monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> None:
        """Record every call of ``owner.name`` (a function, method, classmethod or staticmethod)."""
        raw = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
        label = f"{str(getattr(owner, '__name__', owner)).rsplit('.', 1)[-1]}.{name}"
        if isinstance(raw, classmethod):
            inner = raw.__func__

            @functools.wraps(inner)
            def recorded_cls(cls: Any, *args: Any, **kwargs: Any) -> Any:
                self.record(label)
                return inner(cls, *args, **kwargs)

            monkeypatch.setattr(owner, name, classmethod(recorded_cls))
            return
        function: Callable[..., Any] = raw

        @functools.wraps(function)
        def recorded(*args: Any, **kwargs: Any) -> Any:
            self.record(label)
            return function(*args, **kwargs)

        monkeypatch.setattr(owner, name, recorded)


@pytest.fixture
def loop_watch() -> Iterator[LoopWatch]:
    """A watch for the test: wrap what to record, then run the loop inside ``with loop_watch:``."""
    global _hook_installed
    if not _hook_installed:
        sys.addaudithook(_audit)
        _hook_installed = True
    watch = LoopWatch()
    _active.append(watch)
    try:
        yield watch
    finally:
        _active.remove(watch)
