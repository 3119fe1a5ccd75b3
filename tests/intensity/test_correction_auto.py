"""forecast_correction="auto" (the default) and the fit kept per inputs (greenflow.intensity.correction)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from greenflow.intensity.cache import ForecastCache
from greenflow.intensity.correction import _LEARNED, correct, lookback
from greenflow.intensity.providers.trace import TraceProvider
from greenflow.ledger import Identity
from greenflow.lifecycle import Decision, Lifecycle
from greenflow.options import defaults_for
from greenflow.spec import CarbonSpec

NOW = datetime(2023, 3, 22, 14, 0, tzinfo=UTC)  # the GB snapshot issued 12:31 is 1.5 h old


def _plan(region: str, now: datetime = NOW, **options: object) -> Decision:
    spec = CarbonSpec.build(region=region, provider="trace", expected_duration="2h", max_delay="8h", **options)
    provider = TraceProvider(region=region, now=now)
    lifecycle = Lifecycle(spec, Identity("cli", "auto", "r", region), cache=ForecastCache(), provider=provider)
    return lifecycle.plan()


def test_the_default_corrects_where_the_provider_publishes_its_past_forecasts() -> None:
    assert defaults_for("airflow")["forecast_correction"] == "auto"
    decision = _plan("GB")
    assert decision.correction is not None and decision.correction["mode"] == "auto"
    assert decision.correction["regions"]["GB"]["applied"]
    assert "GB: corrected (bias+carry)" in (decision.forecast_note or "")


def test_the_default_says_nothing_where_the_provider_cannot() -> None:
    # The Electricity Maps traces serve their actuals as the forecast: no past forecasts to learn from.
    decision = _plan("ES", now=datetime(2022, 6, 1, tzinfo=UTC))
    assert decision.correction is None
    assert "correction" not in (decision.forecast_note or "")
    asked = _plan("ES", now=datetime(2022, 6, 1, tzinfo=UTC), forecast_correction=True)
    assert asked.correction is not None and not asked.correction["regions"]["ES"]["applied"]  # asked: says why


def test_false_opts_out() -> None:
    decision = _plan("GB", forecast_correction=False)
    assert decision.correction is None and "corrected" not in (decision.forecast_note or "")


def test_a_bad_setting_names_auto_in_the_fix() -> None:
    from greenflow.errors import InvalidInput

    with pytest.raises(InvalidInput, match="forecast_correction='sometimes' is not on or off") as error:
        CarbonSpec.build(region="GB", forecast_correction="sometimes")
    assert "'auto'" in (error.value.fix or "")


def test_tasks_planning_in_the_same_slot_fit_once_and_get_what_a_fit_of_their_own_gives() -> None:
    provider = TraceProvider(region="GB", now=NOW)
    since = NOW - lookback(7, timedelta(hours=48))
    issued, actual = provider.issued_history("GB", since, NOW), provider.history("GB", since, NOW)
    long = provider.forecast("GB", start=NOW, hours=40)
    short = provider.forecast("GB", start=NOW, hours=10)
    _LEARNED._fits.clear()
    fits = _LEARNED.fits
    first = correct(long, issued, actual, now=NOW)
    again = correct(long, issued, actual, now=NOW + timedelta(minutes=10))  # the same slot
    shorter = correct(short, issued, actual, now=NOW)
    assert _LEARNED.fits == fits + 1  # one fit served all three
    _LEARNED._fits.clear()
    own = correct(short, issued, actual, now=NOW)  # a fit of its own, sized for the shorter forecast
    assert _LEARNED.fits == fits + 2
    assert again.forecast.points == first.forecast.points
    assert shorter.forecast.points == own.forecast.points
    assert shorter.correction == own.correction  # the ledger's record too
    later = correct(long, issued, actual, now=NOW + timedelta(minutes=30))  # the next slot: fitted again
    assert _LEARNED.fits == fits + 3 and later.correction is not None
