"""Budget periods: calendar day / week / month in a stated time zone, or a rolling number of hours."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from greenflow.bounds import MAX_DURATION
from greenflow.clock import require_aware
from greenflow.errors import InvalidInput

PeriodKind = Literal["day", "week", "month", "rolling"]
PERIOD_KINDS: tuple[str, ...] = ("day", "week", "month", "rolling")
_MAX_HOURS = MAX_DURATION.total_seconds() / 3600


@dataclass(frozen=True)
class Period:
    """How a budget's spending resets. Calendar periods start at local midnight (weeks on Monday)."""

    kind: PeriodKind
    timezone: str = "UTC"
    hours: float | None = None  # rolling periods only

    def __post_init__(self) -> None:
        if self.kind not in PERIOD_KINDS:
            raise InvalidInput(
                f"period {self.kind!r} is unknown", fix="use day, week, month or rolling:<hours>h (e.g. rolling:24h)"
            )
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidInput(
                f"time zone {self.timezone!r} is unknown", fix="use an IANA name such as UTC or Europe/London"
            ) from None
        if self.kind == "rolling" and (self.hours is None or not 0 < self.hours <= _MAX_HOURS):
            raise InvalidInput(
                f"rolling period of {self.hours!r} hours",
                fix=f"give a length above 0 and at most {_MAX_HOURS:g}h ({MAX_DURATION.days} days), e.g. rolling:24h",
            )

    @classmethod
    def parse(cls, text: str, timezone: str = "UTC") -> Period:
        """``day``, ``week``, ``month``, ``rolling:24h`` / ``rolling:7d`` / ``24h``."""
        from greenflow.clock import parse_duration

        raw = text.strip().lower()
        if raw in ("day", "daily"):
            return cls("day", timezone)
        if raw in ("week", "weekly"):
            return cls("week", timezone)
        if raw in ("month", "monthly"):
            return cls("month", timezone)
        length = raw.removeprefix("rolling:").removeprefix("rolling-")
        if length != raw or raw[:1].isdigit():
            try:
                hours = parse_duration(length, "period").total_seconds() / 3600
            except InvalidInput:
                hours = -1.0
            if hours > 0:
                return cls("rolling", timezone, hours)
        raise InvalidInput(
            f"period {text!r} is unknown", fix="use day, week, month or rolling:<hours>h (e.g. rolling:24h)"
        )

    def __str__(self) -> str:
        if self.kind == "rolling":
            return f"rolling:{self.hours:g}h"
        return self.kind if self.timezone == "UTC" else f"{self.kind} ({self.timezone})"

    def bounds(self, at: datetime) -> tuple[datetime, datetime]:
        """The [start, end) of the period containing ``at``, in UTC."""
        at = require_aware(at, "at")
        if self.kind == "rolling":
            assert self.hours is not None
            return at - timedelta(hours=self.hours), at
        local = at.astimezone(ZoneInfo(self.timezone))
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        if self.kind == "day":
            start, end = midnight, _add_local_days(midnight, 1)
        elif self.kind == "week":
            start = _add_local_days(midnight, -midnight.weekday())
            end = _add_local_days(start, 7)
        else:
            start = midnight.replace(day=1)
            end = (
                start.replace(year=start.year + 1, month=1)
                if start.month == 12
                else start.replace(month=start.month + 1)
            )
        return start.astimezone(UTC), end.astimezone(UTC)


def _add_local_days(moment: datetime, days: int) -> datetime:
    # Wall-clock arithmetic: a local day across a DST change is 23 or 25 hours long.
    naive = moment.replace(tzinfo=None) + timedelta(days=days)
    return naive.replace(tzinfo=moment.tzinfo)
