"""The one lifecycle every carbon-aware task goes through: plan → reserve → wait → meter → record → settle.

Written once, orchestrator-free. The Airflow operator, the Prefect decorator and ``greenflow run`` only
translate their context into these calls: who the attempt is (:class:`~greenflow.ledger.Identity`),
how to wait until :attr:`Decision.start_at` (a trigger, a scheduled state, a sleep), and where to log.

::

    lifecycle = Lifecycle(spec, identity)
    decision = lifecycle.plan()                 # forecast + planner, or the outage policy
    decision = lifecycle.reserve(decision)      # BudgetExceeded -> lifecycle.skip(decision, refusal)
    ... wait until decision.wake_at ...          # the caller's mechanism
    result, entry = lifecycle.run(decision, fn, *args)   # meter, record, settle; failures recorded too

A :class:`Decision` is plain data (``to_dict``/``from_dict``), so it survives a deferral: the operator
that resumes after an Airflow trigger is a fresh instance, and a Prefect flow run may resume elsewhere.
Every path ends in exactly one ledger entry per attempt: ``ran_now``/``deferred`` when the work ran,
``failed`` when it raised, ``interrupted`` when it was killed, ``skipped_budget`` when the budget
refused it; the budget reservation is settled to the measured value or released.

An interruptible attempt (``spec.interruptible``) is planned in segments and runs one segment at a time:
:meth:`Lifecycle.segment` says which one a ``Run`` step is and when it stops, :meth:`Lifecycle.metered_segment`
meters and records it (one entry per segment, linked to the attempt; the reservation settled part by
part), and its ``next`` decision is advanced like any other (``Wait`` until the next segment, then
``Run``). ``greenflow.segment_runner`` drives a callable or a command through them (docs/interruptible.md).

One rule says ``deferred`` for every adapter: an attempt is ``deferred`` when it waited for its window
(its start is after its own request, :attr:`Decision.deferred`), whoever did the waiting (a trigger, a
``Scheduled`` state, a sleep, an upstream route). A retry re-plans with ``plan(previous=..., retry=True)``:
the deadline stays anchored to the first request, but the retry is ``ran_now`` unless it waits again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import statistics
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar

from greenflow.clock import parse_time, require_aware, utcnow
from greenflow.config import Defaults
from greenflow.errors import BudgetExceeded, GreenflowError, InvalidInput, ProviderError
from greenflow.intensity.cache import ForecastCache
from greenflow.intensity.correction import correction_for
from greenflow.intensity.forecast import Forecast
from greenflow.intensity.policy import RetryUntil, UseForecast
from greenflow.intensity.providers.base import IntensityProvider
from greenflow.ledger.entry import Entry, Identity
from greenflow.metering.carbon import CarbonAccount, emissions
from greenflow.metering.measurement import Measurement
from greenflow.metering.meter import Meter
from greenflow.options import MAX_EXPECTED_DURATION
from greenflow.planning import Candidate, plan
from greenflow.spec import DEFAULT_MAX_DELAY, CarbonSpec

if TYPE_CHECKING:
    from greenflow.ledger.budgets import Attempt, Reservation
    from greenflow.ledger.store import Ledger, PastAttempt
    from greenflow.steps import Step

log = logging.getLogger("greenflow.lifecycle")
P = ParamSpec("P")
R = TypeVar("R")

Outcome = Literal["ran_now", "deferred", "failed", "interrupted", "degraded"]
# How far ahead the planner looks when the task has no deadline of its own.
_HORIZON_MARGIN = timedelta(hours=1)
# A reservation outlives the wait and the run by this much before a dead holder loses it.
_RESERVATION_GRACE = timedelta(hours=1)
# An undeclared expected_duration is learned from this many of the task's latest successful attempts,
LEARN_FROM = 20
# once it has at least this many (fewer say little about a p90: the fallback is used, and the entry says so).
LEARN_MIN = 3
# The energy estimate is the median of this many latest measured attempts.
ESTIMATE_FROM = 5
# The times a decision serializes as ISO strings (``retry_requested_at`` too, when set).
_TIMES = ("requested_at", "start_at", "latest_start", "wake_at")


@dataclass(frozen=True)
class Decision:
    """When and where an attempt starts, and everything the ledger must say about why.

    ``start_at`` is in the task's clock (a replayed trace's time in a replay); ``wake_at`` is the real
    wall-clock time to resume at. They differ only in a replay (``replay_speed`` set). ``forecast`` is
    the forecast as the provider gave it (the evidence its hash covers); with ``forecast_correction`` on,
    the plan was made on the corrected one, and ``correction`` holds per region whether it was applied,
    why, and its parameters (from which the corrected values can be recomputed).

    Two request times: ``requested_at`` is the task's first request, the anchor of its deadline
    (``latest_start``), kept by every re-plan (a refresh while waiting, a resume, a retry).
    ``retry_requested_at`` is when a retry asked to start (:meth:`Lifecycle.plan` with ``retry=True``),
    ``None`` for a first attempt. :attr:`attempt_requested_at` is this attempt's own request, whichever
    applies: whether the attempt waited (:attr:`deferred`), for how long, and the counterfactual of its
    ledger entry are measured from it.

    ``entry_extra`` is what an adapter adds to the attempt's ledger entry ``extra`` (e.g. the region route a
    routed task followed); it travels with the decision, so whoever writes the entry writes it.

    An interruptible attempt (``spec.interruptible``) plans segments: ``plan["segments"]`` lists them
    (``start``/``end`` ISO times, in the task's clock) and ``start_at`` is the first one's start for the
    whole attempt. ``segment_index`` is the segment this decision runs or waits for (``None`` for an
    attempt in one piece; past the last planned segment the job runs to completion) and
    ``previous_segment_entry`` the ledger entry of the segment before it. See :meth:`Lifecycle.segment`.

    ``duration`` is the ``expected_duration`` the attempt plans with when the spec did not declare one:
    ``{"seconds", "source"}`` with ``source`` ``learned`` (and its basis: ``percentile``, ``count``, ...) or
    ``default`` (and a ``note`` saying why nothing was learned); ``None`` when declared (the spec says it).
    Learned once, at the attempt's first plan: every resume, refresh, segment and retry plans with it.
    """

    requested_at: datetime
    start_at: datetime
    latest_start: datetime
    wake_at: datetime
    region: str | None
    action: Literal["run_now", "defer", "retry"]
    reason: str
    plan: dict[str, Any] | None = None
    forecast: dict[str, Any] | None = None
    forecast_note: str | None = None
    correction: dict[str, Any] | None = None
    policy_outcome: dict[str, Any] = field(default_factory=dict)
    replay_speed: float | None = None
    budget: str | None = None
    reservation_id: str | None = None
    estimate_g: float | None = None
    estimate_kwh: float | None = None
    estimate_source: str | None = None
    retry_requested_at: datetime | None = None
    entry_extra: dict[str, Any] = field(default_factory=dict)
    segment_index: int | None = None
    previous_segment_entry: str | None = None
    duration: dict[str, Any] | None = None

    @property
    def attempt_requested_at(self) -> datetime:
        """When this attempt asked to start: a retry's own request, else the first request."""
        return self.retry_requested_at or self.requested_at

    @property
    def deferred(self) -> bool:
        """True when this attempt waits (or waited) for its window: it starts after its own request.

        A retry that runs at once is not deferred, however long ago the first attempt asked; a resumed
        wait (a trigger that fired, a rescheduled flow run, a re-plan after a provider outage) is.
        """
        return self.start_at > self.attempt_requested_at

    @property
    def deferred_seconds(self) -> float:
        """How long this attempt waits for its start, from its own request (0 when it runs at once)."""
        return max((self.start_at - self.attempt_requested_at).total_seconds(), 0.0)

    @property
    def forecast_obj(self) -> Forecast | None:
        """The forecast the decision used, as a :class:`Forecast`."""
        return None if self.forecast is None else Forecast.from_dict(self.forecast)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (trigger kwargs, XCom, a Prefect state's data).

        ``retry_requested_at``, ``entry_extra``, the segment fields and ``duration`` are written only when set:
        a first attempt's decision with a declared duration has the keys an older greenflow reads (a
        triggerer or a worker not upgraded yet).
        """
        data = {k: getattr(self, k) for k in self.__dataclass_fields__}
        for name in _TIMES:
            data[name] = getattr(self, name).isoformat()
        if self.retry_requested_at is None:
            del data["retry_requested_at"]
        else:
            data["retry_requested_at"] = self.retry_requested_at.isoformat()
        if not self.entry_extra:
            del data["entry_extra"]
        for name in ("segment_index", "previous_segment_entry", "duration"):  # only when set
            if data[name] is None:
                del data[name]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Decision:
        """Inverse of :meth:`to_dict`; a decision an older greenflow wrote (no ``retry_requested_at``) loads too."""
        values = dict(data)
        for name in _TIMES:
            values[name] = parse_time(values[name], name)
        if values.get("retry_requested_at") is not None:
            values["retry_requested_at"] = parse_time(values["retry_requested_at"], "retry_requested_at")
        return cls(**values)


@dataclass(frozen=True)
class RunResult:
    """What :meth:`Lifecycle.run` returns: the callable's value and the ledger entry of the attempt."""

    value: Any
    entry: Entry


class Lifecycle:
    """The lifecycle of one attempt of one carbon-aware task."""

    def __init__(
        self,
        spec: CarbonSpec,
        identity: Identity,
        *,
        ledger: Ledger | None = None,
        cache: ForecastCache | None = None,
        provider: IntensityProvider | None = None,
        meter_factory: Callable[[], Meter] | None = None,
        clock: Callable[[], datetime] | None = None,
        record_failures: bool = True,
    ) -> None:
        self.spec = spec
        self.identity = identity
        self._ledger = ledger
        # Built on first use unless given: recording a run that planned nothing (a spooled `greenflow run`)
        # then never loads an HTTP client.
        self._provider = provider
        self._cache = cache
        self._meter_factory = meter_factory or (lambda: _default_meter(self.spec))
        # A replayed trace brings its own clock: planning then happens in the trace's time.
        self.replaying = (provider is not None or spec.provider == "trace") and bool(
            getattr(self.provider, "replaying", False)
        )
        self._clock: Callable[[], datetime] = clock or (self._replay_now if self.replaying else utcnow)
        self.replay_speed: float | None = getattr(self.provider, "speed", None) if self.replaying else None
        self.failure_entry: Entry | None = None  # the ``failed`` entry plan() wrote under on_provider_error="fail"
        # False for a lifecycle that only plans (``greenflow plan``): no forecast under "fail" raises, records nothing.
        self.record_failures = record_failures
        # ``spec`` as given; ``self.spec`` is it with the duration the attempt plans with (learned or adopted).
        self._declared_spec = spec
        self._duration: dict[str, Any] | None = None  # Decision.duration of this attempt
        self._history: list[PastAttempt] | None = None  # the task's past attempts, read once per attempt

    # -- collaborators -------------------------------------------------------------------------------
    @property
    def provider(self) -> IntensityProvider:
        """The intensity provider: the one given, else the spec's (built on first use)."""
        if self._provider is None:
            self._provider = self.spec.make_provider()
        return self._provider

    @property
    def ledger(self) -> Ledger:
        """The ledger (``GREENFLOW_LEDGER_URL`` unless one was given), opened on first use."""
        if self._ledger is None:
            from greenflow.ledger.store import Ledger  # SQLAlchemy loads only when a ledger is opened

            self._ledger = Ledger()
        return self._ledger

    @property
    def cache(self) -> ForecastCache:
        """The process-wide forecast cache sharing fetches through the ledger database."""
        if self._cache is None:
            self._cache = shared_cache(self.ledger)
        return self._cache

    def _replay_now(self) -> datetime:
        now: datetime = getattr(self.provider, "now")  # noqa: B009 - a replaying provider's clock
        return now

    def now(self) -> datetime:
        """The task's clock (real time, or the replay time of a trace)."""
        return require_aware(self._clock(), "clock")

    # -- plan --------------------------------------------------------------------------------------
    def plan(
        self,
        *,
        requested_at: datetime | None = None,
        previous: Decision | None = None,
        retry: bool = False,
        record_failure: bool = True,
    ) -> Decision:
        """Decide when and where to start; no side effects except a ``failed`` entry under ``fail``.

        ``previous`` re-plans against an earlier decision: its request time (the deadline's anchor) and
        its reservation carry over, and the start never moves past the original latest start. Without
        ``retry`` it is the same attempt, still waiting (a trigger's refresh, a resumed deferral, a re-plan
        after a provider outage): the attempt's own request carries over too, so the time it already waited
        counts and it is ``deferred``. ``retry=True`` plans a new attempt of the same task (a retry after a
        failure): it asks now, so it is ``deferred`` only if it waits again, and only for its own wait.
        ``record_failure=False`` (a refresh) raises under ``on_provider_error="fail"`` without writing the
        ``failed`` entry. Past the latest start there is nothing left to wait for: the attempt runs at once,
        in the region greenest right now.
        """
        if retry and previous is None:
            raise InvalidInput(
                "plan(retry=True) was given no previous decision to retry",
                fix="pass previous=<the earlier attempt's decision>, or drop retry=True for a first attempt",
            )
        if previous is None:
            self._use_duration(self._learn_duration())  # the attempt's first plan: learned once, here
        else:
            self._adopt(previous)  # a re-plan, a resume or a retry keeps the duration it planned with
        now = self.now()
        requested = previous.requested_at if previous else require_aware(requested_at or now, "requested_at")
        asked = now if retry else (previous.retry_requested_at if previous else None)
        latest = self._latest_start(requested)
        regions = self.spec.candidate_regions

        def finish(decision: Decision) -> Decision:
            return self._carry(previous, replace(decision, retry_requested_at=asked), retry=retry)

        if not regions:
            return finish(
                self._decision(
                    requested, now, latest, None, "run_now", "no region declared: runs at once, nothing to plan"
                ),
            )
        candidates: list[Candidate] = []
        raw: dict[str, Forecast] = {}  # as the provider gave them: the evidence the ledger keeps
        corrections: dict[str, Any] = {}
        notes: list[str] = []
        outcomes: list[dict[str, Any]] = []
        horizon = (latest - now + self.spec.expected_duration + _HORIZON_MARGIN).total_seconds() / 3600
        for region in regions:
            try:
                outcome = self.spec.outage_policy.resolve(
                    self.cache,
                    self.provider,
                    region,
                    start=now,
                    hours=max(horizon, 1.0),
                    deadline=latest,
                    now=now,
                    # A forecast's fetch time is wall time: its age too, even while planning in a trace's time.
                    wall_ages=self.replaying,
                )
            except ProviderError as error:  # on_provider_error="fail"
                if not (record_failure and self.record_failures):  # a refresh, or a lifecycle that only plans
                    raise
                self.failure_entry = self._record_failure(
                    requested, f"forecast unavailable and on_provider_error=fail: {error.one_line()}", asked
                )
                raise
            outcomes.append({"region": region, **outcome.to_dict()})
            if isinstance(outcome, UseForecast):
                forecast = raw[region] = outcome.forecast
                if self.spec.forecast_correction is not None:
                    setting = self.spec.forecast_correction
                    corrected = correction_for(setting, self.provider, self.cache, region, forecast, now)
                    if corrected is not None:  # None: "auto" and a provider that keeps no past forecasts
                        corrections[region] = corrected.to_dict()
                        notes.append(f"{region}: {corrected.reason}")
                        forecast = corrected.forecast
                candidates.append(Candidate(region, forecast))
                if outcome.stale:
                    notes.append(outcome.reason)
            elif isinstance(outcome, RetryUntil) and not candidates and region == regions[-1]:
                decision = self._decision(
                    requested, now, latest, regions[0], "retry", outcome.reason, start_at=min(outcome.retry_at, latest)
                )
                return finish(replace(decision, policy_outcome={"regions": outcomes}))
            else:
                notes.append(outcome.reason)
        if not candidates:
            reason = "; ".join(notes) or "no forecast"
            decision = self._decision(requested, now, latest, regions[0], "run_now", reason)
            return finish(replace(decision, forecast_note=reason, policy_outcome={"regions": outcomes}))
        correction = (
            None
            if self.spec.forecast_correction is None or not corrections
            else {
                "mode": self.spec.forecast_correction,
                "regions": corrections,
            }
        )
        late = now > latest
        if self.spec.interruptible:
            # The rest of a job already under way (a refresh between segments) is planned whatever the
            # time: the segment planner itself runs a late remainder at once, to completion.
            under_way = None if retry or previous is None or not _between_segments(previous) else previous
            if under_way is not None or not late:
                decision = self._plan_segments(requested, now, latest, candidates, under_way)
                return finish(
                    replace(
                        decision,
                        forecast=raw[decision.region or regions[0]].to_dict(),
                        forecast_note="; ".join(notes) or None,
                        correction=correction,
                        policy_outcome={"regions": outcomes},
                    ),
                )
        # Past the latest start (a retry, or a re-plan after waiting) the deadline wins: only "now" is left
        # to choose, and the planner still picks the greenest region for it.
        chosen = plan(
            candidates,
            duration=self.spec.expected_duration,
            earliest=now if late else max(now, requested),
            deadline=(now if late else latest) + self.spec.expected_duration,
            min_savings_pct=self.spec.min_savings_pct,
            threshold=self.spec.threshold,
            now=now,
        )
        if late:
            action: Literal["run_now", "defer"] = "run_now"
            start_at = now
            reason = f"the latest start {latest.isoformat()} has passed: runs at once; {chosen.reason}"
        else:
            action = "defer" if chosen.decision == "defer" else "run_now"
            start_at = chosen.start
            reason = chosen.reason
        decision = self._decision(requested, now, latest, chosen.region, action, reason, start_at=start_at)
        return finish(
            replace(
                decision,
                plan=chosen.to_dict(),
                forecast=raw[chosen.region].to_dict(),
                forecast_note="; ".join(notes) or None,
                correction=correction,
                policy_outcome={"regions": outcomes},
            ),
        )

    def _plan_segments(
        self,
        requested: datetime,
        now: datetime,
        latest: datetime,
        candidates: list[Candidate],
        under_way: Decision | None,
    ) -> Decision:
        """An interruptible attempt's plan: the least-carbon segments before its deadline (any candidate region).

        ``under_way`` is a decision between segments: the work its done segments carried is subtracted
        and the rest is planned from now (paying the resume overhead), the done segments kept in the plan.
        """
        from greenflow.segments import SegmentPlan, plan_segments

        spec = self.spec
        deadline = latest + spec.expected_duration  # the latest finish
        index, done = 0, []
        work = spec.expected_duration
        if under_way is not None:
            index = under_way.segment_index or 0
            done = [dict(segment) for segment in _planned_segments(under_way)[:index]]
            carried = timedelta(seconds=sum(float(segment["work_seconds"]) for segment in done))
            work = max(work - carried, timedelta(seconds=1))
        resumed = under_way is not None
        first = now if resumed else max(now, requested)

        def plan_for(regions: list[Candidate], finish: datetime) -> SegmentPlan:
            return plan_segments(
                regions,
                duration=work,
                earliest=first,
                deadline=finish,
                resume_overhead=spec.resume_overhead,
                min_segment=spec.min_segment,
                resumed=resumed,
                now=now,
            )

        chosen = plan_for(candidates, deadline)
        reason = chosen.reason
        waits = len(chosen.segments) > 1 or chosen.segments[0].start > first
        if not resumed and waits and chosen.expected_intensity is not None:
            # Waiting (and pausing) must be worth it against the greenest start now in any allowed region, as
            # for a whole job (greenflow.planning): below min_savings the job runs now there, in one piece.
            at_once = plan(candidates, duration=work, earliest=first, max_delay=timedelta(0), now=now)
            over_now = _saving(at_once.expected_intensity, chosen.expected_intensity)
            if over_now is not None and over_now < spec.min_savings_pct:
                here = next(c for c in candidates if c.region == at_once.region)
                chosen = plan_for([here], first + work)
                reason = (
                    f"Running now in {here.region}, in one piece: the segments would save only {over_now:.1f} % "
                    f"over starting now there ({at_once.expected_intensity:.1f} gCO2e/kWh), below the "
                    f"{spec.min_savings_pct:g} % minimum worth waiting for. {chosen.reason}"
                )
        if spec.threshold is not None:
            reason += " (threshold is not used by the segment planner: the least-carbon segments are taken.)"
        planned = [{**segment.to_dict(), "index": index + i} for i, segment in enumerate(chosen.segments)]
        segments = done + planned
        summary = chosen.to_dict()
        plan_dict = {
            **summary,
            "interruptible": True,
            "segments": segments,
            "start": segments[0]["start"],
            "end": segments[-1]["end"],
            "expected_gco2_per_kwh": chosen.expected_intensity,
            "latest_start": latest.isoformat(),
        }
        action: Literal["run_now", "defer"] = "defer" if resumed or chosen.decision == "defer" else "run_now"
        decision = self._decision(
            requested, now, latest, chosen.region, action, reason, start_at=chosen.segments[0].start
        )
        decision = replace(decision, plan=plan_dict, segment_index=index)
        if under_way is not None:
            # The attempt started with its first segment: its start (and so its wait) stays that one.
            decision = replace(
                decision,
                start_at=under_way.start_at,
                previous_segment_entry=under_way.previous_segment_entry,
            )
        return decision

    # -- the state machine ------------------------------------------------------------------------------
    def advance(
        self,
        decision: Decision | None = None,
        *,
        retry_of: Decision | None = None,
        waited: bool = False,
        reserve: bool = True,
    ) -> Step:
        """The attempt's next step: :class:`~greenflow.steps.Wait`, ``Run``, ``Skip`` or ``Fail``.

        Without ``decision`` the attempt starts: it is planned (a new attempt of ``retry_of``'s task when
        given: the deadline stays anchored to the first request) and its estimate reserved. With the
        ``decision`` of a previous :class:`~greenflow.steps.Wait` it resumes: a provider-outage retry whose
        time has come is planned again (the same attempt: its request and reservation carry over); a start
        whose time has come runs. ``waited`` says the orchestrator already waited for the start (a trigger
        that fired, a rescheduled run): it runs even if the clocks differ by a hair. ``reserve=False`` plans
        only (``greenflow plan``, ``schedule_green``). Refusals are steps, with their entry already written.
        """
        from greenflow.steps import Fail, Run, Skip, Wait

        self._adopt(decision or retry_of)
        try:
            if decision is None:
                decision = self.plan(previous=retry_of, retry=retry_of is not None)
            while decision.action == "retry" and decision.wake_at <= utcnow():
                # The policy's retry time has come (or planning was slow): ask the provider again.
                decision = self.plan(previous=decision)
        except ProviderError as error:
            return Fail(self.failure_entry, error)
        if reserve:
            try:
                decision = self.reserve(decision)
            except BudgetExceeded as refusal:
                return Skip(decision, self.skip(decision, refusal), refusal)
        if decision.action == "retry":
            return Wait(decision, decision.wake_at)
        if decision.action == "run_now" or waited or decision.wake_at <= utcnow():
            return Run(decision)
        return Wait(decision, decision.wake_at)

    def refresh(self, decision: Decision) -> Decision:
        """Re-plan a waiting attempt at a forecast refresh; the plan it holds afterwards.

        The rule is :func:`greenflow.replanning.preferred`'s (:data:`greenflow.replanning.RULE`). A
        refresh never ends the wait or writes an entry: a provider that fails now leaves the held plan.
        An interruptible attempt waiting for a segment takes the fresh segments (of the rest of its work
        when some segments have run): they are the least carbon by the fresh forecast before the same
        deadline.
        """
        from greenflow.replanning import preferred

        self._adopt(decision)
        if decision.segment_index is not None and decision.segment_index >= len(_planned_segments(decision)):
            return decision  # past the last planned segment: the job runs to completion, nothing to re-plan
        try:
            fresh = self.plan(previous=decision, record_failure=False)
        except Exception as error:
            log.warning("greenflow: re-planning %s failed (%s); keeping its plan", self.identity.task_id, error)
            return decision
        if decision.segment_index is not None and fresh.segment_index is not None:
            # Segments (of the whole job, or of the rest of one under way) are the least carbon on the
            # fresh forecast within the same deadline: the fresh plan is taken, unless it had no forecast.
            return fresh if fresh.forecast is not None else decision
        return preferred(decision, fresh)

    def _latest_start(self, requested: datetime) -> datetime:
        spec = self.spec
        if isinstance(spec.deadline, datetime):
            latest = spec.deadline - spec.expected_duration
        elif isinstance(spec.deadline, timedelta):
            latest = requested + spec.deadline - spec.expected_duration
        else:
            latest = requested + (spec.max_delay if spec.max_delay is not None else DEFAULT_MAX_DELAY)
        # A deadline that passed since the task was declared (declaring one already past is refused): the
        # deadline wins, the attempt runs at once and its entry says the latest start had passed.
        return latest

    def _decision(
        self,
        requested: datetime,
        now: datetime,
        latest: datetime,
        region: str | None,
        action: Literal["run_now", "defer", "retry"],
        reason: str,
        *,
        start_at: datetime | None = None,
    ) -> Decision:
        start = max(now, start_at or now)
        return Decision(
            requested_at=requested,
            start_at=start,
            latest_start=latest,
            wake_at=self.wall_time(start, now),
            region=region,
            action=action,
            reason=reason,
            replay_speed=self.replay_speed,
            budget=self.spec.budget,
            duration=self._duration,
        )

    @staticmethod
    def _carry(previous: Decision | None, decision: Decision, *, retry: bool = False) -> Decision:
        if previous is None:
            return decision
        if retry:
            # A retry is a new attempt: the first attempt's reservation was settled with its entry, so the
            # retry reserves its own estimate (reserve() only skips a decision that already holds one).
            return replace(decision, entry_extra=decision.entry_extra or previous.entry_extra)
        return replace(
            decision,
            entry_extra=decision.entry_extra or previous.entry_extra,
            reservation_id=previous.reservation_id,
            estimate_g=previous.estimate_g,
            estimate_kwh=previous.estimate_kwh,
            estimate_source=previous.estimate_source,
        )

    def wall_time(self, moment: datetime, now: datetime | None = None) -> datetime:
        """The real time at which the task clock reads ``moment`` (identity unless replaying)."""
        if not self.replaying:
            return moment
        # From the plan's "now": a wait lasts the planned wait (trace time / speed) from the end of planning,
        # however long planning took. The trace time planning took is the replay's own drift, and
        # start_time() records the attempt at its planned start rather than that much later.
        now = now or self.now()
        speed = self.replay_speed or float("inf")
        return utcnow() + timedelta(seconds=max((moment - now).total_seconds(), 0.0) / speed)

    # -- the expected duration: declared, or learned once per attempt ---------------------------------
    def _learn_duration(self) -> dict[str, Any] | None:
        """At an attempt's first plan, the duration to plan with when the spec declared none (``Decision.duration``).

        The 90th percentile (nearest rank: a run time that happened) of the run time of the task's last
        :data:`LEARN_FROM` successful attempts, an interruptible attempt's segments summed less the
        ``resume_overhead`` each resumed segment spent, once there are :data:`LEARN_MIN` of them; else the
        fallback (1 h), saying why. ``None`` when the spec declared its duration.
        """
        declared = self._declared_spec
        if declared.duration_declared:
            return None
        info: dict[str, Any] = {"seconds": declared.expected_duration.total_seconds(), "source": "default"}
        if not declared.candidate_regions and declared.budget is None:
            return info | {"note": "not learned: nothing to plan or reserve"}
        if self._ledger is None and not self.record_failures:
            # A plan-only lifecycle (`greenflow plan`) was given no ledger: it must not create one to read.
            return info | {"note": "not learned: planning only, no ledger given"}
        try:
            past = self._past_attempts()
        except Exception as error:  # a history that cannot be read must not stop the task: the fallback
            log.warning("greenflow: no history for %s (%s); planning with the default duration", self.identity, error)
            return info | {"note": f"not learned: the ledger's history could not be read ({type(error).__name__})"}
        overhead = declared.resume_overhead.total_seconds()
        timed = [attempt for attempt in past if attempt.run_seconds is not None][:LEARN_FROM]
        runs = [max((attempt.run_seconds or 0.0) - (attempt.segments - 1) * overhead, 1.0) for attempt in timed]
        if len(runs) < LEARN_MIN:
            return info | {
                "note": f"not learned: {len(runs)} past successful attempt(s) with a run time, {LEARN_MIN} needed"
            }
        ranked = sorted(runs)
        seconds = float(math.ceil(ranked[math.ceil(0.9 * len(ranked)) - 1]))
        learned: dict[str, Any] = {"seconds": seconds, "source": "learned", "percentile": 90, "count": len(runs)}
        segmented = sum(1 for attempt in timed if attempt.segments > 1)
        if segmented:
            learned["segmented"] = segmented
        limit = declared.deadline if isinstance(declared.deadline, timedelta) else MAX_EXPECTED_DURATION
        if seconds > limit.total_seconds():
            # Longer than the task may take: it cannot wait at all, so it is planned to start at once.
            learned |= {"seconds": limit.total_seconds(), "capped": f"{seconds:.0f} s capped at {limit}"}
        return learned

    def _past_attempts(self) -> list[PastAttempt]:
        """The task's past successful attempts (one ledger query per attempt: learning and estimate share it)."""
        if self._history is None:
            self._history = self.ledger.past_attempts(self.identity.workflow_id, self.identity.task_id)
        return self._history

    def _use_duration(self, duration: dict[str, Any] | None) -> None:
        """Plan, reserve and record with ``duration`` (``Decision.duration``; ``None``: the spec's own)."""
        self._duration = duration
        if duration is None:
            self.spec = self._declared_spec
            return
        value = timedelta(seconds=float(duration["seconds"]))
        if value != self.spec.expected_duration:
            self.spec = self._declared_spec.with_duration(value)

    def _adopt(self, decision: Decision | None) -> None:
        """Take the duration ``decision``'s attempt planned with (a resume in a fresh process never re-learns)."""
        if decision is not None and (decision.duration is not None or self._duration is not None):
            self._use_duration(decision.duration)

    def _duration_fields(self, decision: Decision) -> dict[str, Any]:
        """The entry's ``policy`` fields on the duration planned with: its value, ``duration_source``, basis."""
        info = decision.duration
        if info is None:
            source = "declared" if self._declared_spec.duration_declared else "default"
            return {"expected_duration_s": self.spec.expected_duration.total_seconds(), "duration_source": source}
        basis = {key: value for key, value in info.items() if key not in ("seconds", "source")}
        fields = {"expected_duration_s": float(info["seconds"]), "duration_source": info["source"]}
        return fields | ({"duration_basis": basis} if basis else {})

    # -- reserve -----------------------------------------------------------------------------------
    @property
    def attempt(self) -> Attempt:
        """What decides which budgets cover this attempt: its workflow, team and tags."""
        from greenflow.ledger.budgets import Attempt  # SQLAlchemy only once a budget is really used

        return Attempt(self.identity.workflow_id, self.spec.team, self.spec.tags)

    def reserve(self, decision: Decision) -> Decision:
        """Hold the attempt's estimate against its budget; raises :class:`BudgetExceeded` if it does not fit."""
        self._adopt(decision)
        if self.spec.budget is None or decision.reservation_id is not None:
            return decision
        budget = self.ledger.budgets.get(self.spec.budget)
        estimate_g, estimate_kwh, source = self.estimate(decision)
        amount = estimate_g if budget.unit == "gCO2e" else estimate_kwh
        # Held from this attempt's request (a retry asks later than the first request) to well past its run.
        wait = max(decision.latest_start - decision.attempt_requested_at, timedelta(0))
        hold = wait + 2 * self.spec.expected_duration + _RESERVATION_GRACE
        # Held against every budget covering the attempt (its workflow, team and tags), not only the named one.
        reservation: Reservation = self.ledger.budgets.reserve(
            budget.name,
            self.identity,
            amount,
            estimate_source=source,
            ttl=hold,
            at=utcnow(),
            team=self.spec.team,
            tags=self.spec.tags,
            amounts={"gCO2e": estimate_g, "kWh": estimate_kwh},
        )
        return replace(
            decision,
            reservation_id=reservation.reservation_id,
            estimate_g=estimate_g,
            estimate_kwh=estimate_kwh,
            estimate_source=source,
        )

    def estimate(self, decision: Decision) -> tuple[float, float, str]:
        """(grams, kWh, where the figure comes from) for this attempt, before it runs."""
        intensity = _expected_intensity(decision)
        intensity_note = "planned intensity" if intensity is not None else "default intensity"
        intensity = intensity if intensity is not None else Defaults().intensity_g_per_kwh
        factor = self.spec.pue or 1.0
        declared = self.spec.estimate
        if declared is not None:
            if declared.unit == "gCO2e":
                return declared.value, declared.value / intensity, f"declared estimate {declared}"
            return (
                declared.value * factor * intensity,
                declared.value * factor,
                f"declared {declared} x {intensity_note}",
            )
        # Whole attempts: an interruptible one's segments summed (its final entry alone is only its last part).
        past = [attempt for attempt in self._past_attempts() if attempt.energy_kwh is not None][:ESTIMATE_FROM]
        if past:
            kwh = statistics.median(attempt.energy_kwh or 0.0 for attempt in past) * factor
            segmented = sum(1 for attempt in past if attempt.segments > 1)
            summed = f" ({segmented} in segments, summed)" if segmented else ""
            return (
                kwh * intensity,
                kwh,
                f"history: median of the last {len(past)} measured attempts{summed} x {intensity_note}",
            )
        kwh = Defaults().estimate_kwh * factor
        return kwh * intensity, kwh, f"default estimate {kwh:g} kWh (no history) x {intensity_note}"

    def skip(self, decision: Decision, refusal: BudgetExceeded, *, outcome: str = "skipped_budget") -> Entry:
        """Record that the budget refused this attempt (nothing ran)."""
        return self.ledger.append(
            Entry.for_attempt(
                self.identity,
                "skipped_budget" if outcome == "skipped_budget" else "degraded",
                **self.decision_fields(decision),
                error=refusal.message,
                measurement_notes={"reason": "not run: the budget could not cover its estimate"},
            )
        )

    # -- meter, record, settle ---------------------------------------------------------------------
    def run(self, decision: Decision, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> RunResult:
        """Run ``fn`` under the meter, record the attempt and settle its reservation.

        If ``fn`` raises, the attempt is recorded as ``failed`` (``interrupted`` for KeyboardInterrupt /
        SystemExit) with the energy it used, and the exception propagates.
        """
        with self.metered(decision) as active:
            value = fn(*args, **kwargs)
            active.value = value
        assert active.entry is not None
        return RunResult(value, active.entry)

    def start_time(self, decision: Decision) -> datetime:
        """When the attempt starts, in the task's clock.

        In a replay the trace time that passes between the planned start and now (planning, waking up,
        scheduling, each multiplied by the speed) is the replay's own drift, not time the task waited: the
        attempt starts at its planned start, which is never after its latest start.
        """
        now = self.now()
        if self.replaying and now > decision.start_at:
            return decision.start_at
        return now

    @contextmanager
    def metered(self, decision: Decision, *, outcome: Outcome | None = None) -> Iterator[ActiveRun]:
        """Meter the body; record and settle when it ends, whatever way it ends."""
        self._adopt(decision)
        meter = self._meter_factory()
        active = ActiveRun(decision=decision, started=self.start_time(decision))
        heartbeat = _Heartbeat(self, decision)
        heartbeat.start()
        meter.begin_window(f"{self.identity.task_id}#{self.identity.attempt}")
        try:
            yield active
        except BaseException as error:
            measurement = meter.end_window(f"{self.identity.task_id}#{self.identity.attempt}")
            heartbeat.stop()
            killed = isinstance(error, (KeyboardInterrupt, SystemExit))
            active.entry = self.record(
                decision,
                measurement,
                outcome="interrupted" if killed else "failed",
                error=f"{type(error).__name__}: {error}",
                started=active.started,
            )
            raise
        else:
            measurement = meter.end_window(f"{self.identity.task_id}#{self.identity.attempt}")
            heartbeat.stop()
            active.entry = self.record(
                decision, measurement, outcome=outcome, started=active.started, functional_units=active.functional_units
            )
        finally:
            heartbeat.stop()
            meter.close()

    # -- interruptible attempts: one segment at a time -----------------------------------------------
    def segment(self, decision: Decision) -> SegmentRun | None:
        """The segment ``decision`` runs (``None`` for an attempt planned in one piece).

        Call it when the segment starts (a :class:`~greenflow.steps.Run` of a segmented decision): its
        ``stop_wall`` is computed from now. Every planned segment but the last stops at its planned end;
        the last one, and any past it, run to completion (the deadline wins over carbon).
        """
        if decision.segment_index is None:
            return None
        planned = _planned_segments(decision)
        index = decision.segment_index
        before = sum((float(segment["work_seconds"]) for segment in planned[:index]), 0.0)
        if index >= len(planned):
            return SegmentRun(index, len(planned), None, None, None, None, before)
        start = parse_time(planned[index]["start"], "segment start")
        end = parse_time(planned[index]["end"], "segment end")
        if index == len(planned) - 1:
            return SegmentRun(index, len(planned), start, end, None, None, before)
        begun = self._segment_start(start)
        return SegmentRun(index, len(planned), start, end, end, self.wall_time(end, begun), before)

    def _segment_start(self, planned_start: datetime | None) -> datetime:
        """When a segment starts in the task's clock (a replay's drift is not the segment's: see start_time)."""
        now = self.now()
        if self.replaying and planned_start is not None and now > planned_start:
            return planned_start
        return now

    def next_segment(self, decision: Decision, entry: Entry) -> Decision:
        """The decision for the segment after the one ``entry`` recorded (``advance`` it: Wait, then Run).

        A planned segment whose time has already gone (the one before ran late, the host was down) is
        skipped: its work moves on to the segments after it, and the last one runs to completion anyway.
        """
        planned = _planned_segments(decision)
        index = (decision.segment_index or 0) + 1
        now = self.now()
        while (
            index < len(planned) - 1
            and parse_time(planned[index]["end"], "segment end") - self.spec.resume_overhead <= now
        ):
            index += 1
        start = parse_time(planned[index]["start"], "segment start") if index < len(planned) else now
        return replace(
            decision,
            action="defer",
            segment_index=index,
            previous_segment_entry=entry.entry_id,
            wake_at=self.wall_time(max(start, now), now),
        )

    @contextmanager
    def metered_segment(self, decision: Decision) -> Iterator[ActiveSegment]:
        """Meter one segment of an interruptible attempt; record it when the body ends.

        The body runs the work until ``active.segment.stop_wall`` (or to completion when that is ``None``)
        and sets ``active.done = True`` when the work finished. On exit:

        * done: the attempt's final entry (``ran_now``/``deferred``), settling the rest of its reservation;
        * not done: an ``interrupted`` entry for this segment, settling only its own part, and
          ``active.next`` is the decision of the next segment (:meth:`next_segment`);
        * the body raised: the attempt's final entry, ``failed`` (``interrupted`` for KeyboardInterrupt /
          SystemExit: greenflow itself was stopped), and the exception propagates.

        ``active.notes`` go into the entry's ``extra["segment"]`` (e.g. how a command was stopped).
        """
        self._adopt(decision)
        segment = self.segment(decision)
        if segment is None:
            raise InvalidInput(
                "metered_segment() was given a decision planned in one piece",
                fix="run it with metered(), or plan with interruptible=True",
            )
        meter = self._meter_factory()
        active = ActiveSegment(decision, segment, self._segment_start(segment.planned_start))
        heartbeat = _Heartbeat(self, decision)
        heartbeat.start()
        window = f"{self.identity.task_id}#{self.identity.attempt}/{segment.index}"
        meter.begin_window(window)
        try:
            yield active
        except BaseException as error:
            measurement = meter.end_window(window)
            heartbeat.stop()
            killed = isinstance(error, (KeyboardInterrupt, SystemExit))
            active.entry = self.record(
                decision,
                measurement,
                outcome="interrupted" if killed else "failed",
                error=f"{type(error).__name__}: {error}",
                started=active.started,
                segment=segment,
                segment_notes=active.notes,
            )
            raise
        else:
            measurement = meter.end_window(window)
            heartbeat.stop()
            active.entry = self.record(
                decision,
                measurement,
                outcome=None if active.done else "interrupted",
                started=active.started,
                functional_units=active.functional_units,
                segment=segment,
                final=active.done,
                segment_notes=active.notes,
            )
            if not active.done:
                active.next = self.next_segment(decision, active.entry)
        finally:
            heartbeat.stop()
            meter.close()

    def _segment_extra(
        self, decision: Decision, segment: SegmentRun, final: bool, ended: datetime, notes: dict[str, Any]
    ) -> dict[str, Any]:
        """``extra["segment"]`` of a segment's entry: which segment, its plan, its links, how it ended."""
        info: dict[str, Any] = {
            **segment.to_dict(),
            "link": self.identity.idempotency_key,  # the attempt's key: shared by all its segments' entries
            "previous_entry": decision.previous_segment_entry,
            "final": final,
        }
        if segment.planned_end is None:
            info["past_plan"] = (
                "past the last planned segment: the work was not done, so it ran on to completion "
                "(the deadline wins over carbon)"
            )
        elif segment.to_completion and ended > segment.planned_end:
            info["past_plan"] = (
                f"ran {(ended - segment.planned_end).total_seconds():.0f} s past the last planned segment's end "
                "to completion (the deadline wins over carbon)"
            )
        return {**info, **notes}

    def record(
        self,
        decision: Decision,
        measurement: Measurement,
        *,
        outcome: Outcome | None = None,
        error: str | None = None,
        started: datetime | None = None,
        functional_units: float | None = None,
        end_known: bool = True,
        segment: SegmentRun | None = None,
        final: bool = True,
        segment_notes: dict[str, Any] | None = None,
    ) -> Entry:
        """Account the measurement and append the attempt's entry, settling its reservation with it.

        ``end_known=False`` (a run whose greenflow was killed) records ``ended_at`` as ``None``: when the
        command stopped is not known, and a made-up end would read as a measured duration.

        With ``segment`` the entry is one segment's of an interruptible attempt (see
        :meth:`metered_segment`): ``extra["segment"]`` says which (with ``segment_notes``) and links it to
        the attempt and the segment before. A ``final=False`` segment settles only its own part of the
        reservation (which stays open for the segments to come) and has its own idempotency key; the final
        one (the work done, failed or stopped for good) settles the rest, carries the attempt's key (so
        ``Ledger.for_attempt`` finds it) and the attempt's embodied emissions and functional units.
        """
        started = started or measurement.start
        ended = started + (measurement.end - measurement.start)
        account, source, actuals_note = self._account(decision, measurement, started, ended)
        # A segment's counterfactual is its share of the job had the job run at once: after the work before it.
        offset = timedelta(seconds=segment.work_before_seconds) if segment is not None else timedelta(0)
        counterfactual = self._counterfactual(decision, account, started, ended, offset=offset)
        units = functional_units if functional_units is not None else (self.spec.functional_units if final else None)
        embodied = self.spec.embodied_g if final else None  # the attempt's, counted once: on its final entry
        operational = account.operational_g if account else None
        charged_g = None if operational is None else operational + (embodied or 0.0)
        facility_kwh = (account.facility_energy_kwh if account else None) or _facility(measurement, self.spec.pue)
        charge_note = None
        if charged_g is None and decision.estimate_g is not None:
            # Unknown emissions must not cost the budget nothing: the estimate stands in, labelled.
            charged_g, charge_note = _estimated_charge(decision, facility_kwh, embodied)
        decided: Outcome = outcome or ("deferred" if decision.deferred else "ran_now")
        fields = self.decision_fields(decision)
        if segment is not None:
            fields["extra"] = {
                **fields["extra"],
                "segment": self._segment_extra(decision, segment, final, ended, segment_notes or {}),
            }
            if not final:
                fields["idempotency_key"] = _segment_key(self.identity, segment.index)
        entry = Entry.for_attempt(
            self.identity,
            decided,
            **fields,
            actual_start=started,
            ended_at=ended,
            energy_gpu_kwh=measurement.gpu.kwh,
            energy_cpu_kwh=measurement.cpu.kwh,
            energy_dram_kwh=measurement.dram.kwh,
            method_gpu=measurement.gpu.method,
            method_cpu=measurement.cpu.method,
            method_dram=measurement.dram.method,
            energy_kwh=measurement.total_kwh,
            active_energy_kwh=measurement.active_kwh,
            measurement_notes=_measurement_notes(measurement, account)
            | ({"charge": charge_note} if charge_note else {})
            | ({"actual_intensity": actuals_note} if actuals_note else {}),
            devices=_devices(measurement),
            host=measurement.host,
            pue=self.spec.pue,
            intensity_g_per_kwh=account.intensity_g_per_kwh if account else None,
            intensity_source=source,
            operational_g=operational,
            embodied_g=embodied,
            functional_unit=self.spec.functional_unit,
            functional_units=units,
            sci_g_per_unit=self._attempt_sci(decision, segment, operational, embodied, units),
            counterfactual_intensity_g_per_kwh=counterfactual[0],
            counterfactual_g=counterfactual[1],
            saved_g=None if counterfactual[1] is None or operational is None else counterfactual[1] - operational,
            charged_g=charged_g,
            charged_kwh=facility_kwh,
            error=error,
        )
        if not end_known:
            entry = entry.replace(ended_at=None)
        self._history = None  # the task's history has changed
        return self.ledger.append(entry, settle=decision.reservation_id, partial=not final)

    def _attempt_sci(
        self,
        decision: Decision,
        segment: SegmentRun | None,
        operational: float | None,
        embodied: float | None,
        units: float | None,
    ) -> float | None:
        """SCI of the attempt on the entry that carries its functional units.

        For an interruptible attempt that is the final segment's entry, and the attempt's emissions are all
        its segments' (its own divided by the attempt's R would understate the SCI). Other segment entries
        carry no units, so no SCI.
        """
        if segment is None or operational is None or not units:
            return _sci(operational, embodied, units)
        before = _segments_before_g(self.ledger, decision.previous_segment_entry)
        return None if before is None else _sci(operational + before, embodied, units)

    def decision_fields(self, decision: Decision) -> dict[str, Any]:
        """The ledger fields that describe a decision (for adapters recording a sensor's or a gate's choice)."""
        self._adopt(decision)
        forecast = decision.forecast_obj
        extra: dict[str, Any] = {**decision.entry_extra, "decision_reason": decision.reason, "plan": decision.plan}
        if decision.correction is not None:
            extra["forecast_correction"] = decision.correction
        if self.replaying:
            extra["replay"] = {"speed": decision.replay_speed, "note": "times are a replayed trace's, not real"}
        if decision.retry_requested_at is not None:
            # The entry's request is the retry's own; the first request still anchors the deadline.
            extra["first_requested_at"] = decision.requested_at.isoformat()
        return {
            "requested_at": decision.attempt_requested_at,
            "planned_start": decision.start_at,
            "deferred_seconds": decision.deferred_seconds,
            "policy": {
                **self.spec.policy_inputs(),
                **self._duration_fields(decision),
                "outcome": decision.policy_outcome,
            },
            "region": decision.region,
            "forecast_provider": forecast.provider if forecast else None,
            "forecast_signal": forecast.signal if forecast else None,
            "forecast_emission_factor": forecast.emission_factor if forecast else None,
            "forecast_generated_at": forecast.generated_at if forecast else None,
            "forecast_hash": forecast.content_hash() if forecast else None,
            "forecast": decision.forecast,
            "forecast_note": decision.forecast_note,
            "budget": decision.budget,
            "reservation_id": decision.reservation_id,
            "estimate_g": decision.estimate_g,
            "estimate_kwh": decision.estimate_kwh,
            "estimate_source": decision.estimate_source,
            "tags": self.spec.tags,
            "team": self.spec.team,
            "extra": extra,
        }

    def _intensity_series(
        self, decision: Decision, start: datetime, end: datetime
    ) -> tuple[Forecast | None, str | None, str | None]:
        """The intensity in force during [start, end): actuals if the provider has them, else the forecast.

        The third value says why the actuals were not used (``None`` when they were): malformed actuals
        (a NaN, a negative value) are refused by the provider and must leave a reason in the entry.
        """
        if decision.region is None:
            return None, None, None
        try:
            # Through the cache: a thousand runs ending together cost one request per hour-aligned window.
            actual = self.cache.history(self.provider, decision.region, start, end + timedelta(minutes=1))
            if actual.mean_intensity(start, max(end, start + timedelta(seconds=1)))[0] is not None:
                return actual, f"actuals from {self.provider.name}", None
            actuals_note = f"no actual intensity from {self.provider.name} for the run's span"
        except Exception as error:
            why = error.one_line() if isinstance(error, GreenflowError) else f"{type(error).__name__}: {error}"
            actuals_note = f"actuals from {self.provider.name} not used: {why}"
            log.info("no actual intensity from %s for %s: %s", self.provider.name, decision.region, why)
        forecast = decision.forecast_obj
        if forecast is not None:
            try:
                fresh = self.cache.get(
                    self.provider, decision.region, start=start, hours=max((end - start).total_seconds() / 3600 + 1, 1)
                ).forecast
                if fresh.mean_intensity(start, max(end, start + timedelta(seconds=1)))[0] is not None:
                    source = f"forecast from {fresh.provider} generated {fresh.generated_at.isoformat()}"
                    return fresh, source, actuals_note
            except Exception as error:
                log.info("no refreshed forecast for %s: %s", decision.region, error)
            return forecast, f"planning forecast generated {forecast.generated_at.isoformat()}", actuals_note
        return None, None, actuals_note

    def _account(
        self, decision: Decision, measurement: Measurement, start: datetime, end: datetime
    ) -> tuple[CarbonAccount | None, str | None, str | None]:
        series, source, actuals_note = self._intensity_series(decision, start, end)
        if series is None:
            return None, None, actuals_note
        shifted = _shift(measurement, start)
        return emissions(shifted, series, pue=self.spec.pue), source, actuals_note

    def _counterfactual(
        self,
        decision: Decision,
        account: CarbonAccount | None,
        start: datetime,
        end: datetime,
        *,
        offset: timedelta = timedelta(0),
    ) -> tuple[float | None, float | None]:
        """Intensity and emissions had the attempt started when it asked to, in its home region.

        A retry is compared with starting at its own request (it could not have run at the first
        attempt's), so a retry that runs at once saves about nothing by waiting. ``offset`` moves the
        window on (a segment's work would have run that long after the request).
        """
        if account is None or account.facility_energy_kwh is None:
            return None, None
        home = self.spec.candidate_regions[0] if self.spec.candidate_regions else None
        duration = max(end - start, timedelta(seconds=1))
        begin = decision.attempt_requested_at + offset
        if home is None:
            return None, None
        try:
            series = self.cache.history(self.provider, home, begin, begin + duration + timedelta(minutes=1))
            mean = series.mean_intensity(begin, begin + duration)[0]
        except Exception:
            mean = None
        if mean is None and decision.forecast is not None and decision.region == home:
            mean = Forecast.from_dict(decision.forecast).mean_intensity(begin, begin + duration)[0]
        if mean is None:
            return None, None
        return mean, mean * account.facility_energy_kwh

    def _record_failure(self, requested: datetime, reason: str, retry_requested_at: datetime | None) -> Entry:
        now = self.now()
        decision = replace(
            self._decision(requested, now, now, self.spec.candidate_regions[0], "run_now", reason),
            retry_requested_at=retry_requested_at,
        )
        return self.ledger.append(
            Entry.for_attempt(
                self.identity,
                "failed",
                **self.decision_fields(replace(decision, forecast_note=reason)),
                error=reason,
                measurement_notes={"reason": "not run: no forecast and on_provider_error=fail"},
            )
        )


@dataclass
class ActiveRun:
    """A run in progress inside :meth:`Lifecycle.metered`; set ``functional_units`` once known."""

    decision: Decision
    started: datetime
    value: Any = None
    functional_units: float | None = None
    entry: Entry | None = None


@dataclass(frozen=True)
class SegmentRun:
    """The segment of an interruptible attempt that runs now: what its work is told, what its entry records.

    ``index`` counts from 0 among ``of`` planned segments. ``stop_at`` is when the work is asked to stop,
    in the task's clock (a replayed trace's time in a replay), and ``stop_wall`` the same moment in real
    time (what a runner times SIGTERM by). Both are ``None`` when the work runs to completion: in the
    last planned segment and past it (the deadline wins over carbon); ``planned_start``/``planned_end``
    are ``None`` past the plan. ``work_before_seconds`` is the planned work of the segments before.
    """

    index: int
    of: int
    planned_start: datetime | None
    planned_end: datetime | None
    stop_at: datetime | None
    stop_wall: datetime | None
    work_before_seconds: float = 0.0

    @property
    def to_completion(self) -> bool:
        """True when the work is not stopped: it runs until it is done."""
        return self.stop_at is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: what a segment's ledger entry says about it (``extra["segment"]``)."""

        def iso(moment: datetime | None) -> str | None:
            return None if moment is None else moment.isoformat()

        return {
            "index": self.index,
            "of": self.of,
            "planned_start": iso(self.planned_start),
            "planned_end": iso(self.planned_end),
            "stop_at": iso(self.stop_at),
        }


@dataclass
class ActiveSegment:
    """A segment in progress inside :meth:`Lifecycle.metered_segment`: set ``done`` when the work finished."""

    decision: Decision
    segment: SegmentRun
    started: datetime
    done: bool = False
    functional_units: float | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    entry: Entry | None = None
    next: Decision | None = None


class _Heartbeat:
    """Keeps a long run's reservation from expiring while its worker is alive."""

    def __init__(self, lifecycle: Lifecycle, decision: Decision, every: timedelta = timedelta(minutes=10)) -> None:
        self._lifecycle = lifecycle
        self._decision = decision
        self._every = every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._decision.reservation_id is None:
            return
        self._thread = threading.Thread(target=self._loop, name="greenflow-heartbeat", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._every.total_seconds()):
            try:
                self._lifecycle.ledger.budgets.heartbeat(
                    self._decision.reservation_id or "",
                    extend_to=utcnow() + 2 * self._lifecycle.spec.expected_duration + _RESERVATION_GRACE,
                )
            except Exception as error:
                log.warning("greenflow: reservation heartbeat failed: %s", error)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
            self._thread = None


_SHARED_CACHES: dict[str, ForecastCache] = {}
_SHARED_LOCK = threading.Lock()


def shared_cache(ledger: Ledger) -> ForecastCache:
    """One forecast cache per ledger per process, sharing fetches with other processes through it."""
    from greenflow.ledger.forecast_store import LedgerForecastStore

    key = str(ledger.engine.url)
    with _SHARED_LOCK:
        if key not in _SHARED_CACHES:
            _SHARED_CACHES[key] = ForecastCache(LedgerForecastStore(ledger))
        return _SHARED_CACHES[key]


def _planned_segments(decision: Decision) -> list[dict[str, Any]]:
    """The segments an interruptible decision's plan lists (``[]`` for a plan in one piece)."""
    segments = (decision.plan or {}).get("segments") if decision.segment_index is not None else None
    return list(segments) if isinstance(segments, list) else []


def _between_segments(decision: Decision) -> bool:
    """True for a decision waiting for a planned segment after the first (some of the work has run)."""
    return decision.segment_index is not None and 0 < decision.segment_index < len(_planned_segments(decision))


def _segment_key(identity: Identity, index: int) -> str:
    """The idempotency key of a segment's entry that does not end its attempt (the final one has the attempt's).

    Derived from the attempt's key: several entries per attempt, each still written once however often
    its write is retried.
    """
    return hashlib.sha256(f"segment:{index}:{identity.idempotency_key}".encode()).hexdigest()


def _saving(baseline: float | None, expected: float | None) -> float | None:
    """Percent ``expected`` is below ``baseline`` (``None`` when either is unknown or the baseline not positive)."""
    if baseline is None or expected is None or baseline <= 0:
        return None
    return 100.0 * (baseline - expected) / baseline


def _segments_before_g(ledger: Ledger, previous_entry: str | None) -> float | None:
    """The operational emissions of an attempt's earlier segments (its entries' chain), ``None`` if any is unknown."""
    total, seen = 0.0, set()
    while previous_entry is not None and previous_entry not in seen:
        seen.add(previous_entry)
        earlier = ledger.get(previous_entry)
        if earlier is None or earlier.operational_g is None:
            return None
        total += earlier.operational_g
        previous_entry = (earlier.extra or {}).get("segment", {}).get("previous_entry")
    return total


def _default_meter(spec: CarbonSpec) -> Meter:
    """The meter of an attempt: NVML/RAPL, or a simulated GPU declared in the environment.

    A simulated GPU (``GREENFLOW_SIMULATED_GPU_W``) stands for a job of the attempt's declared length: its
    energy is the declared draw x ``expected_duration``, not x the stand-in's real time (which a loaded
    machine stretches). Interruptible attempts keep the real time x the time scale: each segment is a part.
    """
    import os

    from greenflow.metering.simulated import SimulatedPower

    simulated = SimulatedPower.from_env(os.environ)
    if simulated is not None and not spec.interruptible:
        simulated = replace(simulated, duration=spec.expected_duration)
    return Meter(sample_interval=spec.sample_interval, simulated_gpu=simulated)


def _expected_intensity(decision: Decision) -> float | None:
    if decision.plan and decision.plan.get("expected_gco2_per_kwh") is not None:
        return float(decision.plan["expected_gco2_per_kwh"])
    return None


def _shift(measurement: Measurement, start: datetime) -> Measurement:
    """The measurement moved onto the task's clock (a replay's time) for the carbon join."""
    offset = start - measurement.start
    if offset == timedelta(0):
        return measurement
    data = measurement.to_dict()
    moved = Measurement.from_dict(data)
    return replace(
        moved,
        start=moved.start + offset,
        end=moved.end + offset,
        traces=tuple(replace(t, samples=tuple(replace(s, at=s.at + offset) for s in t.samples)) for t in moved.traces),
    )


def _facility(measurement: Measurement, pue: float | None) -> float | None:
    total = measurement.total_kwh
    return None if total is None else total * (pue or 1.0)


def _sci(operational: float | None, embodied: float | None, units: float | None) -> float | None:
    """SCI = (E·I + M) / R (Green Software Foundation / ISO/IEC 21031), location-based."""
    if operational is None or not units:
        return None
    return (operational + (embodied or 0.0)) / units


def _devices(measurement: Measurement) -> list[Any]:
    devices: list[Any] = []
    for name, component in measurement.components.items():
        for device in component.devices:
            devices.append({"component": name, **dataclasses.asdict(device)})
    return devices


def _estimated_charge(decision: Decision, facility_kwh: float | None, embodied_g: float | None) -> tuple[float, str]:
    """What a budget is charged when the run's emissions are unknown, and the label saying so.

    Energy measured but no intensity known (provider down, no actuals, no forecast): the measured energy
    at the intensity the estimate assumed. Nothing measured: the reserved estimate itself.
    """
    assert decision.estimate_g is not None
    if facility_kwh is not None and decision.estimate_kwh:
        intensity = decision.estimate_g / decision.estimate_kwh
        charged = facility_kwh * intensity + (embodied_g or 0.0)
        return charged, (
            f"estimate: no grid intensity known for the run; charged the measured {facility_kwh:.6g} kWh at the "
            f"estimate's {intensity:.0f} gCO2e/kWh ({decision.estimate_source})"
        )
    return (
        decision.estimate_g,
        f"estimate: nothing measured; charged the reserved estimate ({decision.estimate_source})",
    )


def _measurement_notes(measurement: Measurement, account: CarbonAccount | None) -> dict[str, Any]:
    notes: dict[str, Any] = {
        name: component.reason for name, component in measurement.components.items() if component.reason
    }
    if measurement.warnings:
        notes["warnings"] = list(measurement.warnings)
    if account is not None:
        notes["carbon"] = {
            "coverage": account.coverage,
            "distribution": account.distribution,
            "reason": account.reason,
            "warnings": list(account.warnings),
            "slots": account.to_dict()["slots"][:200],
        }
    return notes
