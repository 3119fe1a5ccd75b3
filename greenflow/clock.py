"""Time handling: everything inside greenflow is a timezone-aware UTC ``datetime``.

Naive datetimes are rejected rather than guessed at; times and durations given as text accept
ISO 8601 (``2024-05-01T12:00Z``, ``PT2H``) and the short forms ``90m``, ``2h``, ``1d``, ``30s``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from greenflow.errors import InvalidInput

_SHORT_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr|d|w)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400, "w": 604800}


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


def require_aware(value: datetime, name: str = "time") -> datetime:
    """Return ``value`` converted to UTC; raise :class:`InvalidInput` if it is naive."""
    if not isinstance(value, datetime):
        raise InvalidInput(f"{name}={value!r} is not a datetime", fix="pass a timezone-aware datetime")
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise InvalidInput(
            f"{name}={value.isoformat()} is a naive datetime",
            fix="give it a time zone, e.g. datetime(..., tzinfo=timezone.utc) or '2024-05-01T12:00Z'",
        )
    # Normalise to the stdlib UTC singleton (pendulum/Prefect datetimes included).
    return datetime.fromtimestamp(value.timestamp(), UTC)


def parse_time(text: str | datetime, name: str = "time") -> datetime:
    """Parse an ISO 8601 time that carries a zone (``Z`` or an offset) into aware UTC."""
    if isinstance(text, datetime):
        return require_aware(text, name)
    raw = text.strip()
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{name}={text!r} is not an ISO 8601 time", fix="write it like 2024-05-01T12:00Z") from None
    return require_aware(parsed, name)


def parse_duration(text: str | timedelta | float | int, name: str = "duration") -> timedelta:
    """Parse ``90m``, ``2h``, ``1d``, ``PT2H`` or a number of seconds into a ``timedelta``.

    Negative durations are rejected; zero is allowed (callers that need positive check it). Durations
    beyond what ``timedelta`` holds (~2.7 million years) and NaN are refused here; callers bound the rest.
    """
    try:
        if isinstance(text, timedelta):
            value = text
        elif isinstance(text, (int, float)) and not isinstance(text, bool):
            value = timedelta(seconds=float(text))
        elif isinstance(text, str):
            value = _parse_duration_text(text, name)
        else:
            raise InvalidInput(f"{name}={text!r} is not a duration", fix="write it like 90m, 2h, 1d or PT2H")
    except (OverflowError, ValueError) as error:
        if isinstance(error, InvalidInput):
            raise
        raise InvalidInput(
            f"{name}={text!r} is not a usable duration", fix="write it like 90m, 2h, 1d or PT2H"
        ) from None
    if value < timedelta(0):
        raise InvalidInput(f"{name}={text!r} is negative", fix="give a duration of zero or more")
    return value


def _parse_duration_text(text: str, name: str) -> timedelta:
    match = _SHORT_DURATION.match(text)
    if match:
        return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()])
    if text.strip().upper().startswith(("P", "-P")):
        import pendulum  # only ISO 8601 durations need it; keeps `import greenflow` light

        try:
            parsed = pendulum.parse(text.strip())
        except (ValueError, pendulum.parsing.exceptions.ParserError):
            parsed = None
        if isinstance(parsed, pendulum.Duration):
            return timedelta(seconds=parsed.total_seconds())
    raise InvalidInput(f"{name}={text!r} is not a duration", fix="write it like 90m, 2h, 1d or PT2H")


def format_duration(value: timedelta) -> str:
    """Render a duration as ``h:mm`` (hours may exceed 24), as the ledger views show it."""
    total = round(value.total_seconds())
    sign = "-" if total < 0 else ""
    total = abs(total)
    return f"{sign}{total // 3600}:{(total % 3600) // 60:02d}"
