"""--period, --from/--to and --scope: what they select, and what they refuse (naming the value)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from greenflow.errors import InvalidInput
from greenflow.report import ReportPeriod, ReportScope


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("2026-11", datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)),
        ("2026-12", datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
        ("2026-Q4", datetime(2026, 10, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
        ("2026", datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
    ],
)
def test_calendar_periods_are_half_open_utc(text: str, start: datetime, end: datetime) -> None:
    period = ReportPeriod.parse(text)
    assert (period.start, period.end) == (start, end)
    assert period.contains(start) and not period.contains(end)


def test_from_to_dates_include_the_last_day_and_times_are_exclusive() -> None:
    period = ReportPeriod.parse(start="2026-11-01", end="2026-11-30")
    assert (period.start, period.end) == (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
    period = ReportPeriod.parse(start="2026-11-01T06:00+01:00", end="2026-11-02T00:00Z")
    assert (period.start, period.end) == (datetime(2026, 11, 1, 5, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC))


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"period": "2026-13"}, "2026-13"),
        ({"period": "20266-11"}, "20266-11"),
        ({"period": "1026-11"}, "1026-11"),
        ({"period": "november"}, "november"),
        ({"start": "2026-11-30", "end": "2026-11-01"}, "2026-11-30"),
        ({"start": "2026-11-01T00:00", "end": "2026-11-02"}, "2026-11-01T00:00"),
        ({"start": "2026-02-30", "end": "2026-03-02"}, "2026-02-30"),
        ({"start": "2000-01-01", "end": "2099-01-01"}, "2000-01-01"),
        ({"start": "2026-11-01"}, "--to"),
        ({"period": "2026-11", "start": "2026-11-01"}, "2026-11"),
    ],
)
def test_absurd_or_inverted_periods_are_refused_naming_the_value(kwargs: dict[str, str], named: str) -> None:
    with pytest.raises(InvalidInput) as error:
        ReportPeriod.parse(**kwargs)
    assert named in str(error.value)


@pytest.mark.parametrize(("text", "shown"), [(None, "all"), ("all", "all"), ("team:vision", "team:vision"),
                                             ("workflow:train", "workflow:train"), ("tag:gpu", "tag:gpu")])  # fmt: skip
def test_scopes(text: str | None, shown: str) -> None:
    assert str(ReportScope.parse(text)) == shown


@pytest.mark.parametrize("text", ["team", "team:", "org:acme", "tag:a,b", "team:" + "x" * 300, "team:a\x00b"])
def test_bad_scopes_are_refused_naming_the_value(text: str) -> None:
    with pytest.raises(InvalidInput) as error:
        ReportScope.parse(text)
    assert "--scope" in str(error.value) and repr(text)[1:20] in str(error.value)
