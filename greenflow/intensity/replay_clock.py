"""One replay clock per replay and process (or flow run): calls, retries and re-plans share its time.

A trace replayed with ``now`` and ``speed`` but no ``replay_started_at`` used to start its clock when
each provider was built, that is at every call of a decorated function: two calls, or a retry, both
"requested" at the replay's ``now``, and a retry asked before its first attempt ended. Anchoring the
replay once (the first time a scope replays from that ``now`` at that ``speed``) and handing the anchor
to every provider as ``replay_started_at`` makes the trace time run on across them. A flow run that
resumes in another process carries its clock along (``carried``) and keeps it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from greenflow.clock import parse_time, utcnow

_LOCK = threading.Lock()
_ANCHORS: dict[tuple[str, str, float], datetime] = {}


@dataclass(frozen=True)
class ReplayClock:
    """A replay's clock: the trace reads ``start`` at wall time ``anchored_at`` and runs ``speed`` times faster."""

    start: datetime
    speed: float
    anchored_at: datetime

    def now(self) -> datetime:
        """The replay's current time."""
        return self.start + (utcnow() - self.anchored_at) * self.speed

    def provider_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """``options`` with this clock's anchor, so every process or provider reading them agrees on the time."""
        return {**options, "replay_started_at": self.anchored_at.isoformat()}


def shared_replay_clock(
    options: Mapping[str, Any], scope: str, *, carried: ReplayClock | None = None
) -> ReplayClock | None:
    """The one clock of the replay that trace ``options`` describe, within ``scope`` (a flow run, a process).

    ``carried`` is the clock a decision was planned on in an earlier process of the same work (a rescheduled
    flow run resuming elsewhere): when ``options`` replay the same ``now`` at the same ``speed``, it becomes
    the scope's clock, so the replay's time runs on instead of restarting at ``now``. Otherwise an anchor
    the options give (``replay_started_at``) is the clock's, else the scope's own, taken on first use.
    ``None`` when the options are not a running replay: no ``now`` or ``speed``, or a ``clock`` given.
    """
    now, speed = options.get("now"), options.get("speed")
    if now is None or "clock" in options:
        return None
    if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not speed > 0:
        return None  # a clock that stands still, or a bad speed the provider refuses with its own message
    start = parse_time(now, "now")
    key = (scope, start.isoformat(), float(speed))
    if carried is not None and (carried.start, carried.speed) == (start, float(speed)):
        with _LOCK:
            _ANCHORS[key] = carried.anchored_at
        return carried
    pinned = options.get("replay_started_at")
    if pinned is not None:
        return ReplayClock(start=start, speed=float(speed), anchored_at=parse_time(pinned, "replay_started_at"))
    with _LOCK:
        anchored = _ANCHORS.setdefault(key, utcnow())
    return ReplayClock(start=start, speed=float(speed), anchored_at=anchored)
