"""The forecast correction's math on small synthetic series whose right answer is worked out by hand."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from greenflow.errors import InvalidInput
from greenflow.intensity.correction import Correction, ErrorRecord, correct
from greenflow.intensity.forecast import Forecast, ForecastPoint

HOUR = timedelta(hours=1)
DAY0 = datetime(2024, 5, 1, tzinfo=UTC)


def series(
    start: datetime, hours: int, value: Callable[[datetime], float | None], *, estimated: bool = False
) -> Forecast:
    points = []
    for i in range(hours):
        begin = start + i * HOUR
        points.append(ForecastPoint(begin, begin + HOUR, value(begin), estimated=estimated))
    return Forecast("X", "test", "average", start, tuple(points))


def truth(moment: datetime) -> float:
    """The real intensity: a daily shape (a green afternoon)."""
    return 160.0 + 10.0 * abs(moment.hour - 14)


def bias(moment: datetime) -> float:
    """How much the provider over-forecasts each hour of the day (the same every day)."""
    return 40.0 if 10 <= moment.hour < 16 else -5.0 * (moment.hour % 3)


def test_a_constant_bias_per_slot_of_day_is_removed_exactly() -> None:
    now = DAY0 + timedelta(days=8)  # eight days of history: the last seven are the window
    issued = series(DAY0, 8 * 24, lambda m: truth(m) + bias(m))
    actual = series(DAY0, 8 * 24, truth)
    raw = series(now, 24, lambda m: truth(m) + bias(m))

    result = correct(raw, issued, actual, now=now)

    assert result.applied and result.correction is not None
    assert result.correction.pairs == 7 * 24
    assert [p.value for p in result.forecast.points] == pytest.approx([truth(p.start) for p in raw.points])
    # The raw forecast's greenest hour is off because of the bias; the corrected one's is the real one.
    assert min(raw.points, key=lambda p: p.value or 0).start.hour != 14
    assert min(result.forecast.points, key=lambda p: p.value or 0).start.hour == 14
    assert result.correction.carry_residual == pytest.approx(0.0)  # nothing left to carry
    assert "168 (forecast, actual) pairs" in result.reason


def pulse_error(moment: datetime) -> float:
    """A persistent error: each day at 10:00 the forecast misses by 40 (sign alternating by day), and
    the miss decays over the next two hours (20, then 10)."""
    size = {10: 40.0, 11: 20.0, 12: 10.0}.get(moment.hour, 0.0)
    return size if (moment - DAY0).days % 2 == 0 else -size


def test_the_latest_error_is_carried_forward_with_the_least_squares_slope() -> None:
    # days=2: the same slot of day's two previous errors (+a, -a) average to zero, so each residual is its
    # error. Over the two-day window the residuals (40, 20, 10) one slot apart give
    # slope = (40*20 + 20*10) / (40² + 20² + 10²) = 1000 / 2100 = 10/21, two slots apart 40*10 / 2100 = 4/21,
    # three apart nothing (0). The slot of day biases are zero (+a and -a in the window).
    now = DAY0 + timedelta(days=6, hours=11)  # 10:00-11:00 of day 6 (error +40) has just ended
    issued = series(DAY0, 6 * 24 + 11, lambda m: 200.0)
    actual = series(DAY0, 6 * 24 + 11, lambda m: 200.0 + pulse_error(m))
    raw = series(now, 4, lambda m: 200.0)

    result = correct(raw, issued, actual, now=now, days=2)

    assert result.correction is not None
    assert result.correction.carry_residual == pytest.approx(40.0)
    assert result.correction.carry_from == now - HOUR
    assert result.correction.slopes[:3] == pytest.approx([10 / 21, 4 / 21, 0.0])
    assert [p.value for p in result.forecast.points] == pytest.approx(
        [200 + 40 * 10 / 21, 200 + 40 * 4 / 21, 200.0, 200.0]
    )


def test_a_correction_never_makes_intensity_negative() -> None:
    now = DAY0 + timedelta(days=8)
    issued = series(DAY0, 8 * 24, lambda m: 100.0)
    actual = series(DAY0, 8 * 24, lambda m: 10.0)  # the provider over-forecasts by 90 everywhere
    raw = series(now, 3, lambda m: 50.0)
    assert [p.value for p in correct(raw, issued, actual, now=now).forecast.points] == [0.0, 0.0, 0.0]


def test_without_pairs_the_forecast_is_kept_and_the_reason_given() -> None:
    now = DAY0 + timedelta(days=8)
    raw = series(now, 6, truth)
    actual = series(DAY0, 8 * 24, truth)
    no_issued = Forecast("X", "test", "average", now, ())

    result = correct(raw, no_issued, actual, now=now)

    assert not result.applied and result.correction is None
    assert result.forecast == raw
    assert result.reason.startswith("forecast correction not applied: no past slot of X has both")
    assert result.to_dict() == {"applied": False, "reason": result.reason}


def test_unsettled_actuals_and_old_pairs_are_not_learned_from() -> None:
    now = DAY0 + timedelta(days=20)
    raw = series(now, 6, truth)
    # ukgrid fills an unsettled actual with its forecast, marked estimated: it would read as no error.
    estimated = series(now - timedelta(days=1), 24, truth, estimated=True)
    issued = series(now - timedelta(days=1), 24, lambda m: truth(m) + 50)
    assert "no settled actuals" in correct(raw, issued, estimated, now=now).reason
    # Pairs from more than seven days before the decision are outside the window.
    old = series(DAY0, 24, truth)
    result = correct(raw, series(DAY0, 24, lambda m: truth(m) + 50), old, now=now)
    assert not result.applied and "no (forecast, actual) pair in the 7 days before" in result.reason


def test_slots_that_have_not_ended_are_not_used() -> None:
    now = DAY0 + timedelta(days=8, minutes=30)  # the 00:00-01:00 slot of day 8 is still running
    issued = series(DAY0, 9 * 24, lambda m: truth(m) + bias(m))
    actual = series(DAY0, 9 * 24, lambda m: 999.0 if m >= DAY0 + timedelta(days=8) else truth(m))
    raw = series(DAY0 + timedelta(days=8), 24, lambda m: truth(m) + bias(m))
    result = correct(raw, issued, actual, now=now)
    # The future's (absurd) actuals would have shifted every bias; the window is the 7 days before.
    assert [p.value for p in result.forecast.points] == pytest.approx([truth(p.start) for p in raw.points])


def test_the_ledgers_parameters_recompute_the_corrected_forecast() -> None:
    now = DAY0 + timedelta(days=6, hours=11)
    issued = series(DAY0, 6 * 24 + 11, lambda m: 200.0 + bias(m))
    actual = series(DAY0, 6 * 24 + 11, lambda m: 200.0 + pulse_error(m))
    raw = series(now, 30, lambda m: 180.0 + bias(m))
    result = correct(raw, issued, actual, now=now)
    assert result.correction is not None
    stored = result.to_dict()["parameters"]
    again = Correction.from_dict(stored).apply(raw)
    assert [p.value for p in again.points] == [p.value for p in result.forecast.points]
    assert again.content_hash() == result.forecast.content_hash() != raw.content_hash()


def test_the_record_refuses_what_would_leak_the_future_or_has_no_slot_of_day() -> None:
    record = ErrorRecord(HOUR, max_lag=4)
    record.add(DAY0, 100.0, 110.0)
    with pytest.raises(InvalidInput, match="time order"):
        record.add(DAY0, 100.0, 110.0)
    record.add(DAY0 + HOUR, 100.0, 110.0)
    with pytest.raises(InvalidInput, match="had not ended"):
        record.correction(DAY0 + HOUR)  # the slot 01:00-02:00 is not over at 01:00
    with pytest.raises(InvalidInput, match="divide a day"):
        ErrorRecord(timedelta(minutes=7), max_lag=4)
