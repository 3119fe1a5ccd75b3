"""``@carbon_aware`` and ``gpu_task``: carbon-aware Prefect tasks and flows.

``@carbon_aware`` is a plain :func:`functools.wraps` wrapper with a sync and an async path, so
``@task`` / ``@flow`` applied on top of it see the user's function: its signature (parameters, flow
parameter schema), its name and its source (Prefect's cache key), unchanged. It never adds or replaces
Prefect hooks. Each call is one attempt of greenflow's lifecycle::

    @task(retries=2)
    @carbon_aware(region="ES", provider="electricitymaps", expected_duration="2h", deadline="12h", budget="gpu")
    def train(epochs: int) -> str: ...

plan (or take over the decision a rescheduled run carries) → reserve the budget → wait for the green
window (rescheduling a deployment's flow run, or waiting in process, see :mod:`greenflow.prefect.deferral`)
→ meter and record the attempt (one ledger entry per attempt, retries included, failures too) → settle
the reservation → emit ``greenflow.budget.exhausted`` if that spent the budget. Without Prefect it does
the same, waiting in process.

The adapter drives the core's one state machine (:meth:`Lifecycle.advance
<greenflow.lifecycle.Lifecycle.advance>`) and only translates its steps: ``Wait`` → release the
deployment's flow run to ``Scheduled``, or wait in process (re-planning at forecast refreshes);
``Run`` → the metered run; ``Skip`` → ``None`` or :class:`~greenflow.errors.BudgetExceeded`
(``on_budget_exceeded``); ``Fail`` → raise. A Prefect retry is ``advance(retry_of=<the last decision>)``.

With ``interruptible=True`` the attempt is planned in segments and the function is called once per
segment: it reads its segment with :func:`~greenflow.prefect.run_context.current_segment` (``stop_wall``:
when to checkpoint and stop) and returns ``True`` when the work is done, ``False`` to be resumed in the
next segment. Each call is metered and recorded on its own (``Lifecycle.metered_segment``, one linked
entry per segment); between segments the same ``Wait`` translation applies, so a deployment's flow run
goes back to ``Scheduled`` and its next process runs the next segment.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Literal, ParamSpec, TypeVar, Unpack, cast, overload

from greenflow.decision_text import describe, short_time
from greenflow.errors import InvalidInput
from greenflow.lifecycle import Decision, Lifecycle, SegmentRun
from greenflow.metering.meter import Meter
from greenflow.options import ADAPTER_OPTION_NAMES, CARBON_OPTION_NAMES, OPTION, CarbonOptions, options_for
from greenflow.prefect.connections import (
    CredentialsOption,
    LedgerOption,
    check_ledger_option,
    resolve_ledger,
    resolve_provider,
)
from greenflow.prefect.deferral import (
    Deferral,
    clear_deferral,
    on_replay_clock,
    read_deferral,
    release_flow_run,
    wait_in_process,
    wait_in_process_async,
    waiting_for,
)
from greenflow.prefect.run_context import _FLOW_DEFERRALS, _SEGMENT, PrefectRun, current_run, run_logger
from greenflow.spec import CarbonSpec
from greenflow.steps import Fail, Run, Skip, Step, Wait

P = ParamSpec("P")
R = TypeVar("R")
OnBudgetExceeded = Literal["skip", "fail"]
ON_BUDGET_EXCEEDED_DEFAULT: OnBudgetExceeded = OPTION["on_budget_exceeded"].default_for("prefect")
"""``on_budget_exceeded`` when not given: the options table's default for Prefect."""
PREFECT_OPTION_NAMES = frozenset(option.name for option in options_for("prefect")) - ADAPTER_OPTION_NAMES
"""The carbon options the decorator takes: the table's, for Prefect (``on_budget_exceeded`` is an argument)."""

# Decisions of earlier attempts, so that a retry re-plans against the first request (the deadline stays
# anchored to it) instead of starting a fresh one. Bounded: a long-lived worker runs many tasks.
_PREVIOUS: OrderedDict[tuple[str, str], tuple[Decision, int]] = OrderedDict()
_PREVIOUS_MAX = 4096
_PREVIOUS_LOCK = threading.Lock()


@dataclass(frozen=True)
class CarbonAware:
    """What a ``@carbon_aware`` function declared: the validated spec and how the adapter behaves."""

    spec: CarbonSpec
    on_budget_exceeded: OnBudgetExceeded = ON_BUDGET_EXCEEDED_DEFAULT
    credentials: CredentialsOption = None
    ledger: LedgerOption = None
    meter_factory: Callable[[], Meter] | None = None
    artifacts: bool = True


@overload
def carbon_aware(fn: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def carbon_aware(
    fn: None = None,
    /,
    *,
    on_budget_exceeded: OnBudgetExceeded = ON_BUDGET_EXCEEDED_DEFAULT,
    credentials: CredentialsOption = None,
    ledger: LedgerOption = None,
    meter_factory: Callable[[], Meter] | None = None,
    artifacts: bool = True,
    **options: Unpack[CarbonOptions],
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def carbon_aware(
    fn: Callable[P, R] | None = None,
    /,
    *,
    on_budget_exceeded: OnBudgetExceeded = ON_BUDGET_EXCEEDED_DEFAULT,
    credentials: CredentialsOption = None,
    ledger: LedgerOption = None,
    meter_factory: Callable[[], Meter] | None = None,
    artifacts: bool = True,
    **options: Unpack[CarbonOptions],
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Make a function carbon-aware: plan, reserve, wait, meter and record every attempt.

    ``**options`` are the carbon options the table :data:`~greenflow.options.OPTIONS` gives Prefect
    (``region``, ``regions``, ``provider``, ``provider_options``, ``expected_duration``, ``deadline``,
    ``max_delay``, ``min_savings``, ``threshold``, ``budget``, ``estimate``, ``on_provider_error``,
    ``max_staleness``, ``forecast_correction``, ``pue``, ``embodied``, ``functional_unit``,
    ``functional_units``, ``tags``, ``team``, ``sample_interval``...; each documented there, with its
    default), parsed by the table's rows when the decorator is applied: a bad region, provider or
    duration, a deadline already past, or a name that is not an option, fails the import, naming the
    value and the fix (the same message as every other entry point). ``deadline`` is the latest finish,
    ``max_delay`` bounds the start; the work always starts by the latest start that meets the deadline.
    A retry keeps the first attempt's deadline: it re-plans against the first request, and is recorded
    ``deferred`` only if it waits again (its entry's ``deferred_seconds`` is its own wait). Adapter options:

    * ``on_budget_exceeded`` (the table's default: ``"skip"``): ``"skip"`` returns ``None`` without
      running the attempt when the budget cannot cover it, ``"fail"`` raises
      :class:`~greenflow.errors.BudgetExceeded`; both record ``skipped_budget``.
    * ``credentials``: a :class:`~greenflow.prefect.blocks.GreenflowCredentials` block or its name.
    * ``ledger``: a :class:`~greenflow.ledger.Ledger`, a ``GreenflowLedger`` block or its name
      (default: ``GREENFLOW_LEDGER_URL``).
    * ``meter_factory``: builds the :class:`~greenflow.metering.meter.Meter` of each attempt.
    * ``artifacts``: at flow level, publish the run's ledger artifacts when the flow function ends.

    ``interruptible=True`` (with ``resume_overhead`` and ``min_segment``) runs the work in the greenest
    segments before the deadline: the function is called once per segment, reads it with
    :func:`~greenflow.prefect.current_segment` (``index``, ``of``, ``stop_wall``: checkpoint and return by
    then; ``None`` to run to completion) and must return ``True`` when the work is done or ``False`` when
    it stopped to be resumed (anything else fails the attempt: a forgotten ``return`` would otherwise run
    it again and again). Each segment leaves its own ledger entry, linked to the attempt; between segments
    a deployment's flow run waits in ``Scheduled`` holding nothing, anything else waits in its process.
    The function must resume from its own checkpoint: every call starts it afresh. See docs/prefect.md.

    Put it under ``@task`` (one attempt per task run try) or under ``@flow`` (the whole flow function
    is one attempt; a deployment's flow run then waits for its window in a ``Scheduled`` state instead
    of holding a worker). Use one level per flow: a carbon-aware flow meters its tasks' work too.
    """
    on_refusal = OPTION["on_budget_exceeded"].parse(on_budget_exceeded)  # the table's rule and message
    check_ledger_option(ledger)
    _check_taken(options)
    spec = CarbonSpec.declare(options, "prefect")  # every option parsed and bounded by its row
    config = CarbonAware(spec, on_refusal, credentials, ledger, meter_factory, artifacts)

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        return _wrap(function, config)

    return decorate(fn) if fn is not None else decorate


def gpu_task(fn: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """``task(carbon_aware(fn, ...), ...)``: the carbon options go to :func:`carbon_aware`, the rest to ``@task``.

    ::

        @gpu_task(region="ES", provider="trace", expected_duration="2h", retries=2, tags=["gpu"])
        def fine_tune(...): ...

    ``tags`` goes to both: the task's tags in Prefect and the attempt's tags in the ledger.
    """
    from prefect import task

    # The table's options (carbon and adapter ones) and the decorator's own arguments (ledger, credentials...).
    own = set(inspect.signature(carbon_aware).parameters) - {"fn", "options"}
    carbon_names = CARBON_OPTION_NAMES | ADAPTER_OPTION_NAMES | own
    carbon = {k: v for k, v in options.items() if k in carbon_names}
    task_options = {k: v for k, v in options.items() if k not in carbon_names or k == "tags"}

    def decorate(function: Callable[..., Any]) -> Any:
        return task(carbon_aware(**carbon)(function), **task_options)

    return decorate(fn) if fn is not None else decorate


def _check_taken(options: Mapping[str, Any]) -> None:
    """Refuse a carbon option the table does not give Prefect (it would be ignored), naming where it belongs."""
    for name in sorted(set(options) & CARBON_OPTION_NAMES - PREFECT_OPTION_NAMES):
        where = ", ".join(sorted(OPTION[name].entry_points))
        raise InvalidInput(
            f"{name}= is not an option of the Prefect decorator (only of {where})",
            fix=f"drop {name}=; the options are in docs/configuration.md",
        )


def carbon_config(fn: Callable[..., Any]) -> CarbonAware | None:
    """The :class:`CarbonAware` declaration of a decorated function (or task / flow), else ``None``."""
    target = getattr(fn, "fn", fn)
    config = getattr(target, "__greenflow__", None)
    return config if isinstance(config, CarbonAware) else None


# -- the wrapper -------------------------------------------------------------------------------------
def _wrap(fn: Callable[P, R], config: CarbonAware) -> Callable[P, R]:
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        raise InvalidInput(
            f"{getattr(fn, '__qualname__', fn)} is a generator: its work happens after it returns, outside the meter",
            fix="make it return its result, or decorate the function that does the GPU work",
        )
    if inspect.iscoroutinefunction(fn):
        coroutine_fn: Callable[P, Coroutine[Any, Any, Any]] = fn

        @functools.wraps(fn)
        async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            return await _call_async(config, coroutine_fn, args, kwargs)

        async_wrapper.__greenflow__ = config  # type: ignore[attr-defined]
        return cast(Callable[P, R], async_wrapper)

    @functools.wraps(fn)
    def sync_wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        return _call_sync(config, fn, args, kwargs)

    sync_wrapper.__greenflow__ = config  # type: ignore[attr-defined]
    return sync_wrapper


def _call_sync(config: CarbonAware, fn: Callable[..., R], args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
    attempt = _Attempt(config, fn)
    step = attempt.start()
    while True:  # once, or once per segment of an interruptible attempt
        while isinstance(step, Wait):
            attempt.release(step)  # a deployment's flow run gives its process back here (never returns)
            with attempt.abandoned_frees(step):
                held = wait_in_process(attempt.lifecycle, step, attempt.logger)
            step = attempt.resume(step, held)
        decision = attempt.outcome(step)
        if decision is None:
            return cast(R, None)  # on_budget_exceeded="skip": recorded, not run
        run = _Running()
        try:
            with attempt.running(decision, run):
                run.value = fn(*args, **kwargs)
        finally:
            if run.next is None:  # the attempt ended (done, failed): not between two segments
                attempt.exit(decision)
        if run.next is None:
            return cast(R, run.value)
        attempt.between_segments()
        step = attempt.lifecycle.advance(run.next)  # Wait until the next segment (Run if it is due)


async def _call_async(
    config: CarbonAware, fn: Callable[..., Coroutine[Any, Any, Any]], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    # Planning, reserving and recording are blocking I/O (HTTP, SQL): keep them off the event loop.
    # asyncio.to_thread copies the context, so Prefect's run context is seen in the thread.
    attempt = await asyncio.to_thread(_Attempt, config, fn)
    step = await asyncio.to_thread(attempt.start)
    while True:
        while isinstance(step, Wait):
            await asyncio.to_thread(attempt.release, step)
            with attempt.abandoned_frees(step):
                held = await wait_in_process_async(attempt.lifecycle, step, attempt.logger)
            step = await asyncio.to_thread(attempt.resume, step, held)
        decision = await asyncio.to_thread(attempt.outcome, step)
        if decision is None:
            return None
        run = _Running()
        try:
            # In the loop's own context: the segment and the flow attempt are seen by the flow's tasks.
            with attempt.running(decision, run):
                run.value = await fn(*args, **kwargs)
        finally:
            if run.next is None:
                await asyncio.to_thread(attempt.exit, decision)
        if run.next is None:
            return run.value
        await asyncio.to_thread(attempt.between_segments)
        step = await asyncio.to_thread(attempt.lifecycle.advance, run.next)


@dataclass
class _Running:
    """One call of the function under the meter: what it returned, and the next segment's decision if any."""

    value: Any = None
    next: Decision | None = None


class _Attempt:
    """One call: Prefect's context translated into the lifecycle's steps, and back into Prefect (logs, states)."""

    def __init__(self, config: CarbonAware, fn: Callable[..., Any]) -> None:
        self.config = config
        self.logger = run_logger()
        self.carried: Deferral | None = None
        probe = current_run(fn)
        if probe.releasable and probe.flow_run_id is not None:
            # Only a deployment's flow run can have been rescheduled by greenflow, and it may carry a decision.
            self.carried = read_deferral(probe.flow_run_id)
        self.deferrals = self._deferrals(probe)
        self.run: PrefectRun = current_run(fn, deferrals=self.deferrals) if probe.level == "flow" else probe
        self.ledger = resolve_ledger(config.ledger)
        # One replay clock per flow run (per process outside one): calls, retries and resumes continue its time.
        carried_clock = self.carried.replay if self.carried is not None else None
        spec, self.replay = on_replay_clock(config.spec, self.run.flow_run_id or "process", carried_clock)
        self.lifecycle = Lifecycle(
            spec,
            self.run.identity,
            ledger=self.ledger,
            provider=resolve_provider(spec, config.credentials),
            meter_factory=config.meter_factory,
        )

    def _deferrals(self, probe: PrefectRun) -> int:
        if self.carried is not None:
            return self.carried.deferrals
        if probe.level == "flow" and probe.flow_run_id is not None:
            with _PREVIOUS_LOCK:
                remembered = _PREVIOUS.get((probe.identity.run_id, probe.identity.task_id))
            return remembered[1] if remembered else 0
        return 0

    @property
    def key(self) -> tuple[str, str]:
        identity = self.run.identity
        return identity.run_id, identity.task_id

    # -- the steps ---------------------------------------------------------------------------------
    def start(self) -> Step:
        """The attempt's first step: resume the decision a rescheduled run carries, or plan (a retry: again)."""
        identity = self.run.identity
        if self.carried is not None:
            decision = self.carried.decision
            if decision.reservation_id is None:
                decision = replace(decision, budget=self.config.spec.budget)  # planned by schedule_green
            source = "rescheduled run resumes" if self.carried.source == "deferred" else "scheduled by schedule_green"
            self.logger.info("greenflow: %s for %s: %s", source, identity.task_id, waiting_for(decision))
            # It waited in Scheduled: it starts even if early (started by hand, a worker's prefetch). A run
            # that waited for a forecast asks the provider again.
            return self.lifecycle.advance(decision, waited=decision.action != "retry")
        step = self.lifecycle.advance(retry_of=self._previous())
        if not isinstance(step, Fail):
            self.logger.info(
                "greenflow: plan for %s (attempt %s): %s", identity.task_id, identity.attempt, describe(step.decision)
            )
        return step

    def _previous(self) -> Decision | None:
        """A retry re-plans against the first request; its reservation is new (the last one settled)."""
        if self.run.identity.attempt <= 1:
            return None
        with _PREVIOUS_LOCK:
            remembered = _PREVIOUS.get(self.key)
        if remembered is None:
            return None
        return replace(remembered[0], reservation_id=None, estimate_g=None, estimate_kwh=None, estimate_source=None)

    def release(self, step: Wait) -> None:
        """A deployment's flow run gives its infrastructure back (this never returns); others go on."""
        if not self.run.releasable or self.run.flow_run_id is None:
            return
        try:
            release_flow_run(
                self.run.flow_run_id, step.decision, deferrals=self.deferrals, logger=self.logger, replay=self.replay
            )
        except Exception as error:  # the API refused: waiting in process is still correct, only costlier
            self.logger.warning("greenflow: could not reschedule the flow run (%s); waiting in process", error)

    @contextmanager
    def abandoned_frees(self, step: Wait) -> Iterator[None]:
        """Stopped while waiting in process (cancelled, interrupted): nothing more runs, so nothing stays held.

        Between segments especially: the reservation still holds the rest of the job's estimate.
        """
        try:
            yield
        except BaseException:
            if step.decision.reservation_id is not None:
                self._quietly(
                    "release the reservation",
                    lambda: self.ledger.budgets.release(step.decision.reservation_id or ""),
                )
            raise

    def resume(self, step: Wait, held: Decision) -> Step:
        """The step after an in-process wait: the start has come (run), or a forecast is due (plan again)."""
        following = self.lifecycle.advance(held, waited=not step.for_forecast)
        if step.for_forecast and not isinstance(following, Fail):
            self.logger.info(
                "greenflow: plan again for %s: %s", self.run.identity.task_id, describe(following.decision)
            )
        return following

    def outcome(self, step: Step) -> Decision | None:
        """The decision to run under; ``None`` when the budget refused and we skip; raises a refusal to fail."""
        if self.carried is not None and self.run.flow_run_id is not None:
            clear_deferral(self.run.flow_run_id)  # used up: a later retry plans against the attempt's decision
            self.carried = None
        if isinstance(step, Run):
            return step.decision
        if isinstance(step, Fail):
            raise step.error  # no forecast under on_provider_error="fail": the failed entry is written
        assert isinstance(step, Skip), step
        self._after_budget_use()
        if self.config.on_budget_exceeded == "skip":
            self.logger.warning("greenflow: %s: %s not run", step.refusal.one_line(), self.run.identity.task_id)
            return None
        raise step.refusal

    # -- run ---------------------------------------------------------------------------------------
    @contextmanager
    def running(self, decision: Decision, run: _Running) -> Iterator[_Running]:
        """Meter one call of the function (the whole attempt, or one segment) and record it when it ends.

        The body sets ``run.value``. An interruptible attempt's function is told its segment
        (:func:`~greenflow.prefect.run_context.current_segment`) and returns whether the work is done;
        when it is not, ``run.next`` is the decision of the next segment.
        """
        lifecycle = self.lifecycle
        told = self.tell_tasks()
        try:
            if not self.config.spec.interruptible:
                with lifecycle.metered(decision) as active:
                    yield run
                    active.value = run.value
                return
            segment = lifecycle.segment(decision)
            if segment is None:  # planned in one piece (no forecast, nothing to gain): one call, to completion
                whole = SegmentRun(0, 1, decision.start_at, None, None, None)
                with lifecycle.metered(decision) as active, _in_segment(whole):
                    yield run
                    if not self._done(run.value, whole):
                        self.logger.warning(
                            "greenflow: %s returned False but had its whole attempt in one piece: nothing resumes it",
                            self.run.identity.task_id,
                        )
                    active.value = run.value
                return
            self.logger.info("greenflow: %s", _segment_line(self.run.identity.task_id, segment, decision))
            with lifecycle.metered_segment(decision) as ongoing, _in_segment(segment):
                yield run
                ongoing.done = self._done(run.value, segment)
            run.next = ongoing.next
        finally:
            self.untell_tasks(told)

    def _done(self, value: Any, segment: SegmentRun) -> bool:
        """An interruptible function's answer: ``True`` (done) or ``False`` (resume it); anything else is a bug."""
        if not isinstance(value, bool):
            # None (a forgotten return) must not read as "not done": the job would run again and again.
            raise InvalidInput(
                f"{self.run.identity.task_id} is interruptible but returned {value!r} in segment {segment.index}",
                fix="return True when the work is done, False when it checkpointed to resume in the next segment",
            )
        return value

    def between_segments(self) -> None:
        """A segment ended with the work not done: show it (budget, artifacts) before waiting for the next."""
        self._after_budget_use()
        if self.run.level == "flow" and self.config.artifacts:
            self._quietly("publish the run's artifacts", self._publish)

    def tell_tasks(self) -> Any:
        """A flow-level attempt tells its tasks how often the run was rescheduled (their flow attempt)."""
        return _FLOW_DEFERRALS.set(self.deferrals) if self.run.level == "flow" else None

    @staticmethod
    def untell_tasks(token: Any) -> None:
        """Undo :meth:`tell_tasks` (in the same context)."""
        if token is not None:
            _FLOW_DEFERRALS.reset(token)

    def exit(self, decision: Decision) -> None:
        """After the attempt (whatever its outcome): remember it for retries, update budget and artifacts."""
        with _PREVIOUS_LOCK:
            _PREVIOUS[self.key] = (decision, self.deferrals)
            _PREVIOUS.move_to_end(self.key)
            while len(_PREVIOUS) > _PREVIOUS_MAX:
                _PREVIOUS.popitem(last=False)
        self._after_budget_use()
        if self.run.level == "flow" and self.config.artifacts:
            self._quietly("publish the run's artifacts", self._publish)

    def _after_budget_use(self) -> None:
        budget = self.config.spec.budget
        if budget is not None and self.run.in_prefect:
            from greenflow.prefect.budget import notify_budget

            self._quietly("update the budget's artifact and event", lambda: notify_budget(self.ledger, budget))

    def _publish(self) -> None:
        from greenflow.prefect.artifacts import publish_run_artifacts

        publish_run_artifacts(self.run.flow_run_id, flow_name=self.run.identity.workflow_id, ledger=self.ledger)

    def _quietly(self, what: str, action: Callable[[], Any]) -> None:
        # The ledger already holds the attempt: a UI update that fails must not fail the user's work.
        try:
            action()
        except Exception as error:
            self.logger.warning("greenflow: could not %s: %s", what, error)


@contextmanager
def _in_segment(segment: SegmentRun) -> Iterator[None]:
    """Tell the function (and the tasks it calls) which segment it runs: :func:`current_segment`."""
    token = _SEGMENT.set(segment)
    try:
        yield
    finally:
        _SEGMENT.reset(token)


def _segment_line(task_id: str, segment: SegmentRun, decision: Decision) -> str:
    """``segment 1 of 2 of train starts, stops at 2022-06-01 18:00:00Z (trace replay time)``."""
    clock = " (trace replay time)" if decision.replay_speed else ""
    if segment.planned_start is None:
        return f"{task_id} runs past its {segment.of} planned segments, to completion (the deadline wins over carbon)"
    head = f"segment {segment.index + 1} of {segment.of} of {task_id} starts"
    if segment.stop_at is None:
        return f"{head}, runs to completion"
    return f"{head}, stops at {short_time(segment.stop_at)}{clock}: checkpoint and return False by then"
