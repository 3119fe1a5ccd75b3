"""Keyset ("seek") pagination cursors: where a page starts, as an opaque URL-safe token.

A page is "the next N rows after (value, seq)" in the sort order, so a page deep into a million entries
costs the same index range scan as the first one, where ``OFFSET`` would walk every row before it.
The token carries the sort it belongs to, so it cannot be replayed against another sort.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from greenflow.clock import parse_time
from greenflow.errors import InvalidInput

Direction = Literal["after", "before"]
# Sort keys whose values are datetimes (the others are floats, or seq itself).
DATETIME_KEYS = frozenset({"recorded_at", "actual_start"})
_RESTART = "drop the cursor parameter to start again from the first page"


@dataclass(frozen=True)
class Position:
    """A row's place in a sort: its value of the sort key (``None`` sorts last) and its seq."""

    value: float | datetime | None
    seq: int


@dataclass(frozen=True)
class Cursor:
    """Rows strictly ``after`` or ``before`` a position, in the order ``sort``/``descending``."""

    sort: str
    descending: bool
    direction: Direction
    position: Position

    def encode(self) -> str:
        """The URL-safe token."""
        value = self.position.value
        payload = {
            "k": self.sort,
            "o": "desc" if self.descending else "asc",
            "d": self.direction,
            "v": value.isoformat() if isinstance(value, datetime) else value,
            "s": self.position.seq,
        }
        raw = json.dumps(payload, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(token: str, *, sort: str, descending: bool) -> Cursor:
    """The cursor in ``token``; :class:`InvalidInput` when it is malformed or made for another sort."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidInput(f"cursor={token[:40]!r} is not a cursor this page handed out", fix=_RESTART) from None
    if not isinstance(payload, dict):
        raise InvalidInput(f"cursor={token[:40]!r} is not a cursor this page handed out", fix=_RESTART)
    order = "desc" if descending else "asc"
    if payload.get("k") != sort or payload.get("o") != order:
        raise InvalidInput(
            f"the cursor belongs to sort={payload.get('k')!r} order={payload.get('o')!r}, not {sort}/{order}",
            fix=_RESTART,
        )
    direction, seq = payload.get("d"), payload.get("s")
    if direction not in ("after", "before") or not isinstance(seq, int) or isinstance(seq, bool):
        raise InvalidInput(f"cursor={token[:40]!r} is not a cursor this page handed out", fix=_RESTART)
    return Cursor(sort, descending, direction, Position(_value(sort, payload.get("v"), token), seq))


def _value(sort: str, raw: Any, token: str) -> float | datetime | None:
    if raw is None:
        return None
    if sort in DATETIME_KEYS and isinstance(raw, str):
        return parse_time(raw, "cursor")
    numeric = isinstance(raw, (int, float)) and not isinstance(raw, bool)
    if sort not in DATETIME_KEYS and numeric and math.isfinite(raw):
        return raw if sort == "seq" else float(raw)
    raise InvalidInput(f"cursor={token[:40]!r} holds a value that does not fit sort={sort!r}", fix=_RESTART)
