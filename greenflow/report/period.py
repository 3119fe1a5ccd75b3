"""The time span a report covers: a calendar month, quarter or year, or an explicit ``--from``/``--to``.

Spans are half-open ``[start, end)`` in aware UTC. An entry belongs to the span by ``recorded_at``, the
ledger's own clock (the one budgets count by), so a report and a budget agree on what a month held.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from greenflow.clock import parse_time, require_aware
from greenflow.errors import InvalidInput

# Years outside this range are typos (20266-11, 1026-11), not accounting periods.
MIN_YEAR, MAX_YEAR = 2000, 2100
# A report longer than this is almost certainly a mistyped year; split longer spans.
MAX_SPAN = timedelta(days=366 * 5)
_FIX = "use --period 2026-11 (month), 2026-Q4 (quarter) or 2026 (year), or --from 2026-11-01 --to 2026-11-30"
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_QUARTER = re.compile(r"^(\d{4})-[Qq]([1-4])$")
_YEAR = re.compile(r"^(\d{4})$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class ReportPeriod:
    """A half-open span ``[start, end)`` of aware UTC times with the label a reader sees."""

    start: datetime
    end: datetime
    label: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", require_aware(self.start, "start").astimezone(UTC))
        object.__setattr__(self, "end", require_aware(self.end, "end").astimezone(UTC))
        if self.end <= self.start:
            raise InvalidInput(
                f"period {self.label!r} ends ({self.end.isoformat()}) before it starts ({self.start.isoformat()})",
                fix="give --from earlier than --to",
            )
        for name in ("start", "end"):
            value: datetime = getattr(self, name)
            if not MIN_YEAR <= value.year <= MAX_YEAR:
                raise InvalidInput(
                    f"period {self.label!r}: {name} year {value.year} is outside {MIN_YEAR}-{MAX_YEAR}", fix=_FIX
                )
        if self.end - self.start > MAX_SPAN:
            raise InvalidInput(
                f"period {self.label!r} spans {(self.end - self.start).days} days, more than 5 years",
                fix="report a month, a quarter or a year at a time",
            )

    @classmethod
    def parse(cls, period: str | None = None, start: str | None = None, end: str | None = None) -> ReportPeriod:
        """``--period 2026-11`` / ``2026-Q4`` / ``2026``, or ``--from`` and ``--to`` (both required).

        ``--from``/``--to`` take a date (``2026-11-01``, midnight UTC) or an ISO time with a zone. A date
        given to ``--to`` includes that whole day; a time is exclusive.
        """
        if period is not None and (start is not None or end is not None):
            raise InvalidInput(f"--period {period!r} given with --from/--to", fix="give one or the other")
        if period is not None:
            return cls._calendar(period.strip())
        if start is None or end is None:
            missing = "--from" if start is None else "--to"
            raise InvalidInput(f"{missing} is missing", fix=_FIX)
        begin = parse_bound(start, "--from", inclusive_day=False)
        finish = parse_bound(end, "--to", inclusive_day=True)
        return cls(begin, finish, f"{start.strip()} to {end.strip()}")

    @classmethod
    def _calendar(cls, text: str) -> ReportPeriod:
        if match := _MONTH.match(text):
            year, month = int(match[1]), int(match[2])
            if not 1 <= month <= 12:
                raise InvalidInput(f"--period {text!r}: month {month} does not exist", fix=_FIX)
            begin = _midnight(year, month, text)
            finish = _midnight(year + 1, 1, text) if month == 12 else _midnight(year, month + 1, text)
            return cls(begin, finish, text)
        if match := _QUARTER.match(text):
            year, quarter = int(match[1]), int(match[2])
            first = 3 * (quarter - 1) + 1
            finish = _midnight(year + 1, 1, text) if quarter == 4 else _midnight(year, first + 3, text)
            return cls(_midnight(year, first, text), finish, f"{year}-Q{quarter}")
        if match := _YEAR.match(text):
            year = int(match[1])
            return cls(_midnight(year, 1, text), _midnight(year + 1, 1, text), text)
        raise InvalidInput(f"--period {text!r} is not a month, quarter or year", fix=_FIX)

    def to_dict(self) -> dict[str, str]:
        """JSON-safe form (ISO times, end exclusive)."""
        return {"label": self.label, "start": self.start.isoformat(), "end": self.end.isoformat()}

    def contains(self, at: datetime) -> bool:
        """Whether ``at`` falls in ``[start, end)``."""
        return self.start <= at < self.end


def _midnight(year: int, month: int, text: str) -> datetime:
    if not MIN_YEAR <= year <= MAX_YEAR + 1:
        raise InvalidInput(f"--period {text!r}: year {year} is outside {MIN_YEAR}-{MAX_YEAR}", fix=_FIX)
    return datetime(year, month, 1, tzinfo=UTC)


def parse_bound(text: str, name: str, *, inclusive_day: bool) -> datetime:
    """A date (midnight UTC; the next midnight when ``inclusive_day``) or an ISO time with a zone."""
    raw = text.strip()
    if _DATE.match(raw):
        try:
            day = date.fromisoformat(raw)
        except ValueError:
            raise InvalidInput(f"{name}={text!r} is not a date", fix=_FIX) from None
        if not MIN_YEAR <= day.year <= MAX_YEAR:
            raise InvalidInput(f"{name}={text!r}: year {day.year} is outside {MIN_YEAR}-{MAX_YEAR}", fix=_FIX)
        moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return moment + timedelta(days=1) if inclusive_day else moment
    return parse_time(raw, name).astimezone(UTC)
