"""The one-line JSON events a demo part prints about itself (``greenflow-demo {...}``) for the parent.

Everything else a part prints is the orchestrator's own log; the parent reads both from the part's log file.
"""

from __future__ import annotations

import json
import sys
from typing import Any

PREFIX = "greenflow-demo "


def emit(event: str, **fields: Any) -> None:
    """Print ``event`` with ``fields`` on stdout (the part's log file), flushed at once."""
    sys.stdout.write(PREFIX + json.dumps({"event": event, **fields}, default=str) + "\n")
    sys.stdout.flush()


def parse(line: str) -> dict[str, Any] | None:
    """The event on ``line``, or ``None`` when the line is not one."""
    if not line.startswith(PREFIX):
        return None
    try:
        value = json.loads(line[len(PREFIX) :])
    except ValueError:
        return None
    return value if isinstance(value, dict) and "event" in value else None
