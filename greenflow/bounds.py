"""The bounds of every value that may enter the ledger: one rule, checked where the value comes in.

Numbers are finite and within a physical range; text is valid UTF-8 (no lone surrogates, which is what
undecodable ``argv`` bytes become), holds no NUL (PostgreSQL refuses it) and fits its column; times are
aware UTC between 2000 and 2200. The column lengths here are those of ``greenflow.ledger.models``
(a test compares the two): kept as plain data so that the launcher's fast path, which must not import
SQLAlchemy, checks the same limits as the ledger.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from greenflow.errors import InvalidInput

# Lengths of the ledger's String columns (ledger_entries, then budgets), by field name.
ENTRY_TEXT_LIMITS: Mapping[str, int] = {
    "entry_id": 36,
    "idempotency_key": 64,
    "orchestrator": 16,
    "workflow_id": 250,
    "run_id": 250,
    "task_id": 250,
    "team": 120,
    "decision": 32,
    "region": 120,
    "forecast_provider": 64,
    "forecast_signal": 16,
    "forecast_emission_factor": 16,
    "forecast_hash": 64,
    "method_gpu": 32,
    "method_cpu": 32,
    "method_dram": 32,
    "host": 255,
    "intensity_source": 64,
    "functional_unit": 120,
    "budget": 120,
    "reservation_id": 36,
    "prev_hash": 64,
    "entry_hash": 64,
}
BUDGET_NAME_LENGTH = 120
"""``budgets.name``."""
SCOPE_VALUE_LENGTH = 250
"""``budgets.scope_value``: a tag, workflow or team a budget is scoped to."""
TAG_LENGTH = SCOPE_VALUE_LENGTH
"""A tag must fit the scope of a budget that counts it (``--scope tag:<tag>``)."""

INT_MAX = 2**31 - 1
"""The largest value of an ``Integer`` column (attempt, map index) on every backend."""
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
"""Times outside [EARLIEST, LATEST) are typing errors, not plans (and far-future ones overflow)."""
MAX_DURATION = timedelta(days=366)
"""Longest delay, deadline, expected run time, staleness or rolling budget period."""
MAX_GRAMS = 1e15
"""1 Gt CO2e: more than any task, budget or estimate can mean."""
MAX_KWH = 1e12
"""1 TWh."""
MAX_INTENSITY = 1e5
"""gCO2e/kWh; the dirtiest grids are near 1 000."""
MAX_PUE = 10.0
MAX_SECONDS = (LATEST - EARLIEST).total_seconds()


def check_text(value: Any, name: str, *, limit: int | None = None, fix: str | None = None) -> str:
    """``value`` if it is a string of valid UTF-8 without NUL, at most ``limit`` characters long."""
    if not isinstance(value, str):
        raise InvalidInput(f"{name}={value!r} is not text", fix=fix or f"give {name} as a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(
            f"{name}={_shown(value)} is not valid UTF-8 (undecodable bytes)",
            fix=fix or f"give {name} in UTF-8",
        ) from None
    if "\x00" in value:
        raise InvalidInput(f"{name}={_shown(value)} contains a NUL character", fix=fix or f"remove it from {name}")
    if limit is not None and len(value) > limit:
        raise InvalidInput(
            f"{name}={_shown(value)} is {len(value)} characters long, over the ledger's {limit}",
            fix=fix or f"give a {name} of at most {limit} characters",
        )
    return value


def storable_text(value: str) -> str:
    """``value`` with what no database stores (lone surrogates, NUL) written as escapes (``\\udcff``)."""
    if "\x00" not in value:
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            pass
    return value.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def check_entry_text(value: str | None, name: str) -> str | None:
    """A text field of a ledger entry: within its column when it has one, valid UTF-8 in any case."""
    if value is None:
        return None
    return check_text(value, name, limit=ENTRY_TEXT_LIMITS.get(name))


def check_identity(*, workflow_id: str, run_id: str, task_id: str, attempt: int, map_index: int | None = None) -> None:
    """The ids of an attempt: non-empty UTF-8 text within their columns, attempt 1..2**31-1."""
    for name, value in (("workflow_id", workflow_id), ("run_id", run_id), ("task_id", task_id)):
        if not value:
            raise InvalidInput(f"{name} is empty", fix=f"give the {name.replace('_', ' ')} of the attempt")
        check_text(value, name, limit=ENTRY_TEXT_LIMITS[name])
    if not isinstance(attempt, bool) and isinstance(attempt, int) and attempt < 1:
        raise InvalidInput(f"attempt={attempt} is below 1", fix="attempts count from 1")
    check_int(attempt, "attempt", low=1, fix=f"attempts count from 1 to {INT_MAX}")
    if map_index is not None:
        check_int(map_index, "map_index", low=-1)


def check_number(
    value: Any,
    name: str,
    *,
    low: float,
    high: float,
    fix: str,
    low_open: bool = False,
) -> float:
    """``value`` as a float if it is a finite number in [low, high] (``(low, high]`` with ``low_open``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInput(f"{name}={value!r} is not a number", fix=fix)
    try:
        number = float(value)
    except OverflowError:
        raise InvalidInput(f"{name}={value!r} is out of range", fix=fix) from None
    if not math.isfinite(number):
        raise InvalidInput(f"{name}={_number_text(value)} is not a finite number", fix=fix)
    below = number <= low if low_open else number < low
    if below or number > high:
        raise InvalidInput(f"{name}={_number_text(value)} is out of range", fix=fix)
    return number


def _number_text(value: float) -> str:
    """150 and 150.0 read the same (a flag's "150" arrives as 150.0), so every entry point says ``=150``."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
        return repr(int(value))
    return repr(value)


def check_int(value: Any, name: str, *, low: int, high: int = INT_MAX, fix: str | None = None) -> int:
    """``value`` if it is an integer in [low, high] (``high`` defaults to the Integer column's maximum)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{name}={value!r} is not an integer", fix=fix or f"give a whole number for {name}")
    if not low <= value <= high:
        raise InvalidInput(f"{name}={value} is out of range", fix=fix or f"give {name} between {low} and {high}")
    return value


def check_time(value: datetime, name: str) -> datetime:
    """An aware UTC time between 2000 and 2200 (``value`` already converted to UTC)."""
    if not EARLIEST <= value < LATEST:
        raise InvalidInput(
            f"{name}={value.isoformat()} is outside the years 2000-2199", fix="check the date (year, time zone)"
        )
    return value


def check_duration(value: timedelta, name: str) -> timedelta:
    """A duration of at most :data:`MAX_DURATION` (366 days)."""
    if value > MAX_DURATION:
        raise InvalidInput(
            f"{name}={_duration_text(value)} is longer than {MAX_DURATION.days} days",
            fix=f"give at most {MAX_DURATION.days}d",
        )
    return value


def check_json(value: Any, name: str) -> None:
    """A JSON field of an entry: finite numbers and valid UTF-8 text all the way down."""
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"{name} holds {value!r}", fix="a ledger number must be finite: use null for unknown")
    elif isinstance(value, str):
        check_text(value, name)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str):
                check_text(key, f"{name} key")
            check_json(item, f"{name}.{key}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_json(item, f"{name}[{index}]")


def _shown(value: str) -> str:
    # The message names the value without flooding the terminal or carrying its control characters.
    return repr(value) if len(value) <= 60 else f"{value[:40]!r}…"


def _duration_text(value: timedelta) -> str:
    return f"{value.total_seconds() / 3600:g}h"
