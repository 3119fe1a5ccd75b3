"""The segment planner: cases a user can check by hand, the whole-job plan as its one-segment case, and
a brute-force cross-check of the dynamic programme on small forecasts."""

from __future__ import annotations

import itertools
import json
import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from greenflow.errors import InvalidInput
from greenflow.intensity.forecast import Forecast, ForecastPoint
from greenflow.planning import Candidate, plan
from greenflow.segments import SegmentPlan, plan_segments

T0 = datetime(2024, 5, 1, tzinfo=UTC)
H = timedelta(hours=1)
M = timedelta(minutes=1)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def hourly(values: list[float | None], region: str = "R") -> Forecast:
    points = tuple(ForecastPoint(T0 + i * H, T0 + (i + 1) * H, v) for i, v in enumerate(values))
    return Forecast(region=region, provider="test", signal="average", generated_at=T0, points=points)


def windows(plan_: SegmentPlan) -> list[tuple[float, float]]:
    """Segments as (start, end) minutes after T0."""
    return [((s.start - T0) / M, (s.end - T0) / M) for s in plan_.segments]


# -- by hand ----------------------------------------------------------------------------------------


def test_two_green_hours_apart_beat_any_whole_window() -> None:
    # Green at 01-02 and 03-04, dirty elsewhere: a 2 h job runs in both green hours. The second segment
    # resumes (5 min that do no work), so 5 more minutes run at 300: 10*60 + 10*60 + 300*5 over 120 min
    # of work = 22.5 g per kWh of work, against 155 for the best whole window and for running now.
    forecast = hourly([300, 10, 300, 10, 300, 300])
    result = plan_segments(forecast, duration=2 * H, deadline=at(360), now=T0)
    assert result.expected_intensity == pytest.approx(22.5)
    assert result.whole_job_intensity == pytest.approx(155.0)
    assert result.now_intensity == pytest.approx(155.0)
    assert result.savings_vs_whole_pct == pytest.approx(100 * (155 - 22.5) / 155)
    # Equal carbon either way (5 min before 01:00 or after 04:00): the earlier finish wins.
    assert windows(result) == [(55.0, 120.0), (180.0, 240.0)]
    assert [s.overhead_seconds for s in result.segments] == [0.0, 300.0]
    assert sum(s.work_seconds for s in result.segments) == 7200.0
    assert sum(s.carbon_per_work_kwh or 0 for s in result.segments) == pytest.approx(22.5)
    assert result.decision == "defer"
    assert result.expected_grams(2.0) == pytest.approx(45.0)
    assert "2 segments" in result.reason and "runs on to completion" in result.reason


def test_splitting_only_when_it_pays_for_its_overhead() -> None:
    forecast = hourly([130, 100, 130, 100, 130, 130])
    cheap = plan_segments(forecast, duration=2 * H, deadline=at(360), now=T0, resume_overhead=5 * M)
    assert len(cheap.segments) == 2
    assert cheap.expected_intensity == pytest.approx((100 * 60 + 100 * 60 + 130 * 5) / 120)
    # A 25-minute resume costs 130 * 25 more than it saves: one whole window (115) is better.
    costly = plan_segments(forecast, duration=2 * H, deadline=at(360), now=T0, resume_overhead=25 * M)
    assert len(costly.segments) == 1
    assert costly.expected_intensity == pytest.approx(115.0)
    assert costly.expected_intensity == costly.whole_job_intensity


def test_segments_shorter_than_min_segment_are_not_planned() -> None:
    # 20-minute green slots, a 40-minute job: with min_segment 30 min it cannot use them one by one.
    points = tuple(ForecastPoint(at(20 * i), at(20 * (i + 1)), v) for i, v in enumerate([10, 200, 10, 200, 200, 200]))
    forecast = Forecast("R", "test", "average", T0, points)
    strict = plan_segments(
        forecast, duration=40 * M, deadline=at(120), now=T0, min_segment=30 * M, resume_overhead=0 * M
    )
    assert all(s.end - s.start >= 30 * M for s in strict.segments)
    assert strict.expected_intensity == pytest.approx((10 * 20 + 200 * 20) / 40)
    loose = plan_segments(
        forecast, duration=40 * M, deadline=at(120), now=T0, min_segment=10 * M, resume_overhead=0 * M
    )
    assert windows(loose) == [(0.0, 20.0), (40.0, 60.0)]
    assert loose.expected_intensity == pytest.approx(10.0)


def test_max_segments_bounds_the_pieces() -> None:
    forecast = hourly([300, 10, 300, 10, 300, 10, 300])
    free = plan_segments(forecast, duration=3 * H, deadline=at(420), now=T0, resume_overhead=0 * M)
    assert len(free.segments) == 3 and free.expected_intensity == pytest.approx(10.0)
    two = plan_segments(forecast, duration=3 * H, deadline=at(420), now=T0, resume_overhead=0 * M, max_segments=2)
    assert len(two.segments) == 2
    assert two.expected_intensity == pytest.approx((10 * 60 + 10 * 60 + 300 * 60) / 180)


def test_a_job_shorter_than_min_segment_runs_in_one_piece() -> None:
    forecast = hourly([300, 10, 300, 10])
    result = plan_segments(forecast, duration=20 * M, deadline=at(240), now=T0)
    assert len(result.segments) == 1 and result.expected_intensity == pytest.approx(10.0)


def test_resumed_job_pays_its_overhead_on_the_first_segment() -> None:
    forecast = hourly([10, 10, 300])
    result = plan_segments(forecast, duration=H, deadline=at(180), now=T0, resumed=True)
    assert windows(result) == [(0.0, 65.0)]
    assert result.segments[0].overhead_seconds == 300.0 and result.segments[0].work_seconds == 3600.0
    assert result.expected_intensity == pytest.approx(10 * 65 / 60)


def test_resumed_job_past_its_deadline_runs_to_completion_and_says_so() -> None:
    forecast = hourly([10, 10, 300])
    result = plan_segments(forecast, duration=2 * H, deadline=at(100), now=T0, resumed=True)
    assert result.late is True
    assert windows(result) == [(0.0, 125.0)]
    assert "past" in result.reason and "completion" in result.reason


def test_no_known_forecast_runs_now_in_one_piece() -> None:
    result = plan_segments(hourly([None, None, None]), duration=H, deadline=at(180), now=T0)
    assert windows(result) == [(0.0, 60.0)]
    assert result.expected_intensity is None and result.savings_pct is None
    assert "not assumed green" in result.reason


def test_uncovered_time_is_never_planned() -> None:
    forecast = hourly([300, None, 300, 10, 10])
    result = plan_segments(forecast, duration=H, deadline=at(300), now=T0)
    assert all(not (60 < (s.start - T0) / M < 120) for s in result.segments)
    assert result.expected_intensity == pytest.approx(10.0)


def test_to_dict_is_json() -> None:
    result = plan_segments(hourly([300, 10, 300, 10]), duration=H, deadline=at(240), now=T0)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["segments"][0]["start"].endswith("Z")
    assert data["expected_gco2_per_kwh_of_work"] == pytest.approx(result.expected_intensity)


def test_max_delay_bounds_the_whole_job_latest_finish() -> None:
    forecast = hourly([300, 300, 10, 10, 10])
    result = plan_segments(forecast, duration=H, max_delay=2 * H, now=T0)
    assert result.deadline == at(180)
    assert windows(result) == [(120.0, 180.0)]


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"duration": timedelta(0)}, "duration=0:00:00"),
        ({"duration": -H}, "duration="),
        ({"duration": timedelta(days=40)}, "duration=960h"),
        ({"duration": 3600}, "duration=3600"),
        ({"resume_overhead": -M}, "resume_overhead="),
        ({"min_segment": timedelta(0)}, "min_segment="),
        ({"min_segment": 5 * M}, "min_segment=5m"),
        ({"max_segments": 0}, "max_segments=0"),
        ({"max_segments": True}, "max_segments=True"),
        ({"deadline": at(30)}, "deadline="),
        ({"deadline": datetime(2024, 5, 1, 4)}, "naive"),  # noqa: DTZ001 - the naive time is the point
        ({"max_delay": H}, "exactly one"),
    ],
)
def test_bad_input_names_the_value_and_the_fix(kwargs: dict[str, object], named: str) -> None:
    options: dict[str, object] = {"duration": H, "deadline": at(240), "now": T0, **kwargs}
    with pytest.raises(InvalidInput) as caught:
        plan_segments(hourly([10, 10, 10, 10]), **options)  # type: ignore[arg-type]
    assert named in str(caught.value)
    assert caught.value.fix


# -- the whole-job plan is the one-segment case ------------------------------------------------------

# Forecasts hold 0 to 5,000 gCO2e/kWh (greenflow.intensity.forecast refuses anything else).
values = st.one_of(st.none(), st.integers(0, 60).map(float), st.floats(0, 500, allow_nan=False))


@st.composite
def forecasts(draw: st.DrawFn, region: str = "R") -> Forecast:
    """Up to six slots of 20, 30 or 60 minutes from T0, some unknown, maybe one left out (a gap)."""
    widths = draw(st.lists(st.sampled_from([20, 30, 60]), min_size=1, max_size=6))
    cuts = [0, *itertools.accumulate(widths)]
    points = [ForecastPoint(at(a), at(b), draw(values)) for a, b in itertools.pairwise(cuts)]
    if len(points) > 2 and draw(st.booleans()):
        del points[draw(st.integers(1, len(points) - 2))]
    return Forecast(region, "test", "average", T0, tuple(points))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    regions=st.lists(forecasts(), min_size=1, max_size=3),
    now_minute=st.sampled_from([0, 10, 45]),
    work=st.integers(1, 36).map(lambda k: 5 * k),
    slack=st.integers(0, 24).map(lambda k: 10 * k),
)
def test_one_segment_is_the_whole_job_plan(regions: list[Forecast], now_minute: int, work: int, slack: int) -> None:
    candidates = [Candidate(f"Z{i}", forecast) for i, forecast in enumerate(regions)]
    now, duration = at(now_minute), timedelta(minutes=work)
    deadline = now + duration + timedelta(minutes=slack)
    whole = plan(candidates, duration=duration, deadline=deadline, now=now)
    one = plan_segments(candidates, duration=duration, deadline=deadline, now=now, max_segments=1)
    assert len(one.segments) == 1
    if whole.expected_intensity is None:
        assert one.expected_intensity is None
    else:
        assert one.expected_intensity == pytest.approx(whole.expected_intensity, rel=1e-9, abs=1e-9)
        assert one.whole_job_intensity == pytest.approx(whole.expected_intensity, rel=1e-9, abs=1e-9)
        # Any segment plan is at least as green as the best whole window.
        free = plan_segments(candidates, duration=duration, deadline=deadline, now=now)
        assert free.expected_intensity is not None
        assert free.expected_intensity <= whole.expected_intensity + 1e-9 * max(1.0, abs(whole.expected_intensity))


# -- exact: the programme against brute force ---------------------------------------------------------


def brute_force(
    forecast: Forecast,
    *,
    first: datetime,
    deadline: datetime,
    work: timedelta,
    overhead: timedelta,
    min_segment: timedelta,
    max_segments: int | None,
    resumed: bool,
) -> float | None:
    """The least grams per kWh of work over every plan of the planner's space, by enumeration.

    The space: segments separated by a pause, each lying in known forecast values, at least
    ``min_segment`` long (a job shorter than that runs in one piece), ending by the deadline; every edge on
    the grid (slot boundaries, ``first``, ``deadline``) except either the last end or the first start.
    """
    grid = sorted({first, deadline} | {t for p in forecast.points for t in (p.start, p.end) if first < t < deadline})
    single = work < min_segment
    most = 1 if single else (max_segments or len(grid))
    best: float | None = None
    for n in range(1, most + 1):
        run = work + overhead * (n - 1 + (1 if resumed else 0))
        for chosen in itertools.combinations(grid, 2 * n - 1):
            for forwards in (True, False):
                if forwards:  # s1 < e1 < ... < sn on the grid, en = sn + what is left
                    edges = list(chosen)
                    done = sum((e - s for s, e in zip(edges[0:-1:2], edges[1::2], strict=True)), timedelta(0))
                    edges.append(edges[-1] + run - done)
                else:  # e1 < ... < en on the grid after s1 = e1 - what is left (mirror image)
                    edges = list(chosen)
                    done = sum((e - s for s, e in zip(edges[1::2], edges[2::2], strict=True)), timedelta(0))
                    edges.insert(0, edges[0] - (run - done))
                pairs = list(zip(edges[0::2], edges[1::2], strict=True))
                if any(e <= s for s, e in pairs) or pairs[0][0] < first or pairs[-1][1] > deadline:
                    continue
                if not single and any(e - s < min_segment for s, e in pairs):
                    continue
                total = 0.0
                for s, e in pairs:
                    mean, coverage = forecast.mean_intensity(s, e)
                    if mean is None or coverage < 1.0:
                        break
                    total += mean * (e - s).total_seconds()
                else:
                    value = total / work.total_seconds()
                    if best is None or value < best:
                        best = value
    return best


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    forecast=forecasts(),
    now_minute=st.sampled_from([0, 10, 45]),
    work=st.integers(1, 30).map(lambda k: 5 * k),
    slack=st.integers(0, 24).map(lambda k: 10 * k),
    overhead=st.sampled_from([0, 5, 20]),
    min_segment=st.sampled_from([10, 30, 45]),
    max_segments=st.sampled_from([None, 1, 2, 3]),
    resumed=st.booleans(),
)
def test_the_programme_finds_the_least_carbon_plan(
    forecast: Forecast,
    now_minute: int,
    work: int,
    slack: int,
    overhead: int,
    min_segment: int,
    max_segments: int | None,
    resumed: bool,
) -> None:
    assume(min_segment > overhead)
    now, duration, pause = at(now_minute), timedelta(minutes=work), timedelta(minutes=overhead)
    shortest = timedelta(minutes=min_segment)
    deadline = now + duration + timedelta(minutes=slack)
    result = plan_segments(
        forecast,
        duration=duration,
        deadline=deadline,
        now=now,
        resume_overhead=pause,
        min_segment=shortest,
        max_segments=max_segments,
        resumed=resumed,
    )
    if result.late:
        assert resumed and now + duration + pause > deadline
        return
    expected = brute_force(
        forecast,
        first=now,
        deadline=deadline,
        work=duration,
        overhead=pause,
        min_segment=shortest,
        max_segments=max_segments,
        resumed=resumed,
    )
    if expected is None:
        assert result.expected_intensity is None
        return
    assert result.expected_intensity == pytest.approx(expected, rel=1e-9, abs=1e-9)
    # The plan is what it says: inside the limits, in known time, the work and overheads add up.
    segments = result.segments
    assert max_segments is None or len(segments) <= max_segments
    assert segments[0].start >= now and segments[-1].end <= deadline
    assert all(a.end < b.start for a, b in itertools.pairwise(segments))
    if len(segments) > 1:
        assert all(s.end - s.start >= shortest for s in segments)
    assert sum(s.work_seconds for s in segments) == pytest.approx(duration.total_seconds())
    paid = [s.overhead_seconds for s in segments]
    assert paid == [pause.total_seconds() if (i or resumed) else 0.0 for i in range(len(segments))]
    total = 0.0
    for s in segments:
        mean, coverage = forecast.mean_intensity(s.start, s.end)
        assert mean is not None and coverage == 1.0
        total += mean * (s.end - s.start).total_seconds()
    assert total / duration.total_seconds() == pytest.approx(result.expected_intensity, rel=1e-9, abs=1e-9)
    assert math.isclose(
        sum(s.carbon_per_work_kwh or 0.0 for s in segments), result.expected_intensity, rel_tol=1e-9, abs_tol=1e-9
    )
