"""Waiting for the green window, and holding as little as possible while waiting.

Three ways to wait, chosen by where the work runs:

* **A deployment's flow run, at flow level** (``@flow`` on top of ``@carbon_aware``): the run is put back
  into a ``Scheduled`` state named ``AwaitingGreenWindow`` at the window, its process exits and frees the
  worker's slot and infrastructure; a worker picks it up again at the window. The decision (with its
  budget reservation and original request time) rides along as a flow-run input, so the resumed run
  does not plan again and the deadline stays anchored to the first request.
* **Before the run exists**: :func:`schedule_green` plans, then creates the flow run of a deployment
  with ``run_deployment(..., scheduled_time=window)``: nothing runs or is held until then. Given one
  deployment per region (``regions={"GB": "train/gb-pool", "NO": "train/no-pool"}``), it creates the
  run of the greenest region's deployment only.
* **A task inside a running flow, or a local run**: the process waits, bounded by the deadline, logging
  the plan and the remaining wait. A task cannot give its flow run's infrastructure back without
  re-running the flow's earlier tasks, so this is the honest option there.

Whatever the mechanism, the start never moves past the latest start that still meets the deadline.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn, Unpack
from uuid import UUID

from greenflow.clock import parse_time, utcnow
from greenflow.decision_text import describe, short_time
from greenflow.errors import BudgetExceeded, InvalidInput
from greenflow.intensity.replay_clock import ReplayClock, shared_replay_clock
from greenflow.ledger import Identity, Ledger
from greenflow.lifecycle import Decision, Lifecycle
from greenflow.options import PLANNING_OPTION_NAMES, PlanningOptions, check_option_names
from greenflow.prefect.connections import CredentialsOption, LedgerOption, resolve_ledger, resolve_provider
from greenflow.replanning import DEFAULT_REFRESH, refresh_period
from greenflow.spec import CarbonSpec
from greenflow.steps import Fail, Wait

if TYPE_CHECKING:
    import logging

    from prefect.client.schemas.objects import FlowRun, State

    Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]

GREEN_WINDOW_STATE = "AwaitingGreenWindow"
"""Name of the ``Scheduled`` state a deferred flow run waits in (shown in Prefect's UI)."""
DEFERRAL_INPUT_KEY = "greenflow-deferral"
"""Flow-run input key holding the decision of a run that waits for its window."""
# How often a waiting process says how long is left (at least once at the start).
LOG_EVERY = timedelta(minutes=5)
"""Never re-plan more often than this (wall clock), whatever a fast replay asks for."""


# -- the decision a waiting flow run carries ---------------------------------------------------------
@dataclass(frozen=True)
class Deferral:
    """What a rescheduled (or pre-scheduled) flow run needs when it starts: the decision and its history.

    ``replay`` is the replay clock the decision was planned on (a replayed trace), so that the run, which
    resumes in a new process, continues that replay's time instead of restarting it at its ``now``.
    """

    decision: Decision
    deferrals: int
    source: str  # "deferred" (the run rescheduled itself) or "schedule_green"
    replay: ReplayClock | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (``replay`` only when set: a run an older greenflow wrote has none)."""
        data: dict[str, Any] = {"decision": self.decision.to_dict(), "deferrals": self.deferrals, "source": self.source}
        if self.replay is not None:
            data["replay"] = {
                "start": self.replay.start.isoformat(),
                "speed": self.replay.speed,
                "anchored_at": self.replay.anchored_at.isoformat(),
            }
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Deferral:
        """Inverse of :meth:`to_dict`."""
        replay = data.get("replay")
        clock = None
        if replay is not None:
            clock = ReplayClock(
                start=parse_time(replay["start"], "start"),
                speed=float(replay["speed"]),
                anchored_at=parse_time(replay["anchored_at"], "anchored_at"),
            )
        return cls(Decision.from_dict(data["decision"]), int(data["deferrals"]), str(data["source"]), clock)


def read_deferral(flow_run_id: str | UUID) -> Deferral | None:
    """The deferral a flow run carries, or ``None``."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

    # The sync client directly: prefect.input's helpers return coroutines inside async runs.
    with get_client(sync_client=True) as client:
        try:
            raw = client.read_flow_run_input(flow_run_id=_uuid(flow_run_id), key=DEFERRAL_INPUT_KEY)
        except ObjectNotFound:
            return None
        except PrefectHTTPStatusError as error:
            if error.response.status_code == 404:
                return None
            raise
    return Deferral.from_dict(json.loads(raw))


def write_deferral(flow_run_id: str | UUID, deferral: Deferral) -> None:
    """Attach ``deferral`` to the flow run (replacing any earlier one)."""
    from prefect.client.orchestration import get_client

    clear_deferral(flow_run_id)
    with get_client(sync_client=True) as client:
        client.create_flow_run_input(
            flow_run_id=_uuid(flow_run_id), key=DEFERRAL_INPUT_KEY, value=json.dumps(deferral.to_dict())
        )


def clear_deferral(flow_run_id: str | UUID) -> None:
    """Remove the flow run's deferral (done once the attempt it was for has started)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

    with get_client(sync_client=True) as client:
        try:
            client.delete_flow_run_input(flow_run_id=_uuid(flow_run_id), key=DEFERRAL_INPUT_KEY)
        except ObjectNotFound:
            pass
        except PrefectHTTPStatusError as error:
            if error.response.status_code != 404:
                raise


# -- waiting in process ------------------------------------------------------------------------------
def wait_in_process(
    lifecycle: Lifecycle, step: Wait, logger: Logger, *, sleep: Callable[[float], None] = time.sleep
) -> Decision:
    """Sleep until the step's start (wall clock), never past its latest start; the decision held then.

    While it waits for a planned window it re-plans at the provider's refresh cadence with
    :meth:`Lifecycle.refresh <greenflow.lifecycle.Lifecycle.refresh>` (the start moves only earlier, and
    only for a greener window, as in the Airflow trigger), and it logs the remaining wait.
    """
    wait = _InProcessWait(lifecycle, step, logger)
    while (seconds := wait.next_sleep()) is not None:
        sleep(seconds)
        if wait.refresh_due():
            wait.refresh()
    return wait.decision


async def wait_in_process_async(
    lifecycle: Lifecycle, step: Wait, logger: Logger, *, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
) -> Decision:
    """:func:`wait_in_process` for coroutines: the event loop keeps running while the task waits."""
    wait = _InProcessWait(lifecycle, step, logger)
    while (seconds := wait.next_sleep()) is not None:
        await sleep(seconds)
        if wait.refresh_due():
            await asyncio.to_thread(wait.refresh)  # a re-plan is blocking I/O (HTTP, SQL)
    return wait.decision


class _InProcessWait:
    """One in-process wait: when to wake next, and what to do then (say how long is left, re-plan)."""

    def __init__(self, lifecycle: Lifecycle, step: Wait, logger: Logger) -> None:
        self.lifecycle, self.logger, self.decision = lifecycle, logger, step.decision
        # Waiting for a forecast, the next try is the policy's own time: nothing to re-plan before it.
        self.every = None if step.for_forecast else refresh_period(lifecycle)
        now = utcnow()
        self.next_log = now + LOG_EVERY
        self.next_refresh = None if self.every is None else now + self.every
        self._log()

    @property
    def target(self) -> datetime:
        # The deadline wins: even if the clock mapping drifted (a replay), never sleep past the latest start.
        return min(self.decision.wake_at, self.lifecycle.wall_time(self.decision.latest_start))

    def next_sleep(self) -> float | None:
        """Seconds to sleep before the next look, or ``None`` when the wait is over."""
        now = utcnow()
        remaining = (self.target - now).total_seconds()
        if remaining <= 0:
            return None
        if now >= self.next_log:
            self._log()
            self.next_log = now + LOG_EVERY
        wake = min(self.next_log, self.next_refresh or self.next_log)
        return min(remaining, max((wake - now).total_seconds(), 0.05))

    def refresh_due(self) -> bool:
        """True when a forecast refresh is due before the start."""
        now = utcnow()
        return self.next_refresh is not None and self.next_refresh <= now < self.target

    def refresh(self) -> None:
        """Re-plan with the core's one rule; say so when the start moved."""
        held = self.decision
        self.decision = self.lifecycle.refresh(held)
        self.next_refresh = utcnow() + (self.every or DEFAULT_REFRESH)
        if self.decision.start_at != held.start_at:
            self.logger.info(
                "greenflow: a fresher forecast moved the start from %s to %s: %s",
                short_time(held.start_at),
                short_time(self.decision.start_at),
                describe(self.decision),
            )

    def _log(self) -> None:
        remaining = max(self.target - utcnow(), timedelta(0))
        self.logger.info(
            "greenflow: waiting in this process until %s, %s left (no deployment flow run to reschedule)",
            short_time(self.target),
            _duration(remaining),
        )


# -- giving the infrastructure back ------------------------------------------------------------------
def release_flow_run(
    flow_run_id: str, decision: Decision, *, deferrals: int, logger: Logger, replay: ReplayClock | None = None
) -> NoReturn:
    """Reschedule the running flow run at the decision's wall-clock start and end this process.

    The deferral (with the ``replay`` clock the decision was planned on, if any) is attached first, so the
    resumed run finds it; the ``Scheduled`` state carries a message that says why and until when. Raises
    (never returns): the engine exits without a final state.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.responses import SetStateStatus
    from prefect.states import Scheduled

    write_deferral(flow_run_id, Deferral(decision, deferrals + 1, "deferred", replay))
    message = f"greenflow: {waiting_for(decision)}"
    state: State[Any] = Scheduled(scheduled_time=decision.wake_at, name=GREEN_WINDOW_STATE, message=message)
    with get_client(sync_client=True) as client:
        # force: Running -> Scheduled is not a transition Prefect's orchestration proposes by itself.
        result = client.set_flow_run_state(flow_run_id, state, force=True)
    if result.status != SetStateStatus.ACCEPT or result.state is None:
        clear_deferral(flow_run_id)
        raise RuntimeError(f"Prefect did not accept rescheduling flow run {flow_run_id}: {result.status}")
    logger.info(
        "greenflow: released the infrastructure; flow run %s waits in Scheduled (%s) until %s (wall clock)",
        flow_run_id,
        GREEN_WINDOW_STATE,
        short_time(decision.wake_at),
    )
    exit_without_final_state(result.state)


def waiting_for(decision: Decision) -> str:
    """What a waiting run waits for: its window (:func:`describe`), or the next segment of an interruptible job."""
    segments = (decision.plan or {}).get("segments") or []
    index = decision.segment_index
    if index is None or index == 0 or index >= len(segments):
        return describe(decision, reason=False)
    # Between segments: the attempt's own start (describe's) is long past; say which segment comes and when.
    clock = " (trace replay time)" if decision.replay_speed else ""
    start = parse_time(segments[index]["start"], "segment start")
    where = f" in {decision.region}" if decision.region else ""
    expected = (decision.plan or {}).get("expected_gco2_per_kwh")
    figure = f", the job's segments expected at {expected:.0f} gCO2e/kWh" if expected is not None else ""
    return (
        f"paused after segment {index} of {len(segments)}; segment {index + 1} starts at "
        f"{short_time(start)}{where}{clock}{figure}"
    )


def exit_without_final_state(state: State[Any]) -> NoReturn:
    """End the flow run's process, leaving the state just set (``Scheduled``) in place.

    UNDOCUMENTED PREFECT BEHAVIOUR, relied on here and only here: raising ``prefect.exceptions.Pause``
    from flow code makes the flow engine stop without proposing a final state (``FlowRunEngine``
    re-raises ``Abort``/``Pause``) and ``prefect.engine.handle_engine_signals`` exit the process with
    status 0, so the worker does not mark the run ``Crashed``. It is how Prefect's own
    ``suspend_flow_run`` leaves a process. ``tests/prefect/test_prefect_contract.py`` fails loudly if a
    Prefect upgrade changes it.
    """
    from prefect.exceptions import Pause

    raise Pause(f"greenflow: rescheduled until {state.state_details.scheduled_time}", state=state)


# -- planning before the run exists ------------------------------------------------------------------
@dataclass(frozen=True)
class RegionAlternative:
    """One region :func:`schedule_green` weighed: where its runs go, and what starting there offered.

    ``start`` and ``expected_gco2_per_kwh`` are that region's own best window inside the deadline,
    ``now_gco2_per_kwh`` the intensity of starting there at once (all in gCO2e/kWh: the energy of a run
    is not known before it runs). ``None`` when that region's forecast did not cover the window; the
    decision's ``forecast_note`` and ``policy_outcome`` say why.
    """

    region: str
    deployment: str
    chosen: bool
    start: datetime | None = None
    expected_gco2_per_kwh: float | None = None
    now_gco2_per_kwh: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe."""
        return {
            "region": self.region,
            "deployment": self.deployment,
            "chosen": self.chosen,
            "start": None if self.start is None else self.start.isoformat(),
            "expected_gco2_per_kwh": self.expected_gco2_per_kwh,
            "now_gco2_per_kwh": self.now_gco2_per_kwh,
        }

    def describe(self) -> str:
        """``NO: 31 gCO2e/kWh from 2022-06-01 03:00:00Z (chosen)``."""
        if self.expected_gco2_per_kwh is None or self.start is None:
            figure = "no forecast for the window"
        else:
            figure = f"{self.expected_gco2_per_kwh:.0f} gCO2e/kWh from {short_time(self.start)}"
        return f"{self.region}: {figure}{' (chosen)' if self.chosen else ''}"


@dataclass(frozen=True)
class ScheduledRun:
    """A flow run :func:`schedule_green` created at the green window.

    ``deployment`` is the deployment the run belongs to (the chosen region's, with a ``regions``
    mapping), ``region`` where the planner put the work, ``alternatives`` every region it weighed, home
    first (one entry without spatial shifting).
    """

    flow_run_id: str
    flow_run_name: str
    deployment: str
    scheduled_time: datetime
    decision: Decision
    region: str | None = None
    alternatives: tuple[RegionAlternative, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (the CLI's ``--json`` shape)."""
        return {
            "flow_run_id": self.flow_run_id,
            "flow_run_name": self.flow_run_name,
            "deployment": self.deployment,
            "region": self.region,
            "scheduled_time": self.scheduled_time.isoformat(),
            "alternatives": [option.to_dict() for option in self.alternatives],
            "decision": self.decision.to_dict(),
            "summary": describe(self.decision),
        }


@dataclass(frozen=True)
class _Targets:
    """Where :func:`schedule_green` may create the run: the candidate regions and each one's deployment."""

    region: str | None
    regions: tuple[str, ...]
    deployments: Mapping[str, str]  # region -> deployment; "" -> the one deployment when not spatial
    spatial: bool

    @classmethod
    def of(
        cls, deployment_name: str | None, region: str | None, regions: Sequence[str] | Mapping[str, str]
    ) -> _Targets:
        """Validate :func:`schedule_green`'s two forms: one deployment (``regions`` a list) or one per region."""
        if isinstance(regions, Mapping):
            return cls._mapping(deployment_name, region, regions)
        if isinstance(regions, str):
            raise InvalidInput(
                f"regions={regions!r} is a string, not a list of regions",
                fix=f"write regions=[{regions!r}], or regions={{{regions!r}: '<flow>/<deployment>'}}",
            )
        if deployment_name is None:
            raise InvalidInput(
                "no deployment given",
                fix="pass '<flow name>/<deployment name>', or regions={'GB': 'train/gb-pool', 'NO': 'train/no-pool'}",
            )
        _check_name(deployment_name, "deployment")
        return cls(region, tuple(regions), {"": deployment_name}, spatial=False)

    @classmethod
    def _mapping(cls, deployment_name: str | None, region: str | None, regions: Mapping[str, str]) -> _Targets:
        shown = dict(regions)
        if deployment_name is not None:
            raise InvalidInput(
                f"deployment {deployment_name!r} given with regions={shown!r}: with a mapping each region names "
                "its deployment",
                fix="drop the deployment argument, or give regions as a list to plan one deployment across regions",
            )
        if region is not None:
            raise InvalidInput(
                f"region={region!r} given with regions={shown!r}: the mapping's first key is the home region",
                fix=f"drop region=, and put {region!r} first in the mapping if it is home",
            )
        if not shown:
            raise InvalidInput(
                "regions={} names no region", fix="map each region to its deployment, e.g. {'GB': 'train/gb-pool'}"
            )
        for key, name in shown.items():
            if not isinstance(key, str) or not key.strip():
                raise InvalidInput(f"region {key!r} in regions= is not a region name", fix="use the provider's zone")
            _check_name(name, f"deployment for region {key!r}")
        keys = list(shown)
        return cls(keys[0], tuple(keys[1:]), shown, spatial=True)

    @property
    def names(self) -> tuple[str, ...]:
        """Every deployment that may get the run, without duplicates."""
        return tuple(dict.fromkeys(self.deployments.values()))

    @property
    def home(self) -> str:
        """The home region's deployment (the one planning is named after)."""
        return next(iter(self.deployments.values()))

    def deployment_for(self, region: str | None) -> str:
        """The deployment whose work pool runs in ``region``."""
        if not self.spatial or region is None:
            return self.home
        return self.deployments[region]


def schedule_green(
    deployment_name: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    *,
    region: str | None = None,
    regions: Sequence[str] | Mapping[str, str] = (),
    budget: str | None = None,
    credentials: CredentialsOption = None,
    ledger: LedgerOption = None,
    flow_run_name: str | None = None,
    tags: Sequence[str] = (),
    work_queue_name: str | None = None,
    job_variables: Mapping[str, Any] | None = None,
    **options: Unpack[PlanningOptions],
) -> ScheduledRun:
    """Plan the greenest start (and region) of a deployment's next run and create the run there.

    Nothing runs, and no worker is held, until then.

    Two forms:

    * ``schedule_green("train/nightly", {...}, region="GB", regions=["NO"])``: one deployment, planned
      across ``region`` + ``regions`` (the chosen region rides along in the decision).
    * ``schedule_green(regions={"GB": "train/gb-pool", "NO": "train/no-pool"}, parameters={...})``: one
      deployment per region, each on that region's work pool; the first key is home (savings are counted
      against starting there at once). The run is created for the deployment of the (region, start)
      with the lowest expected intensity; the other deployments get nothing.

    Deployments are ``"<flow name>/<deployment name>"`` and are all checked before planning. The run is
    created with ``run_deployment(..., scheduled_time=window, timeout=0)``, in a ``Scheduled`` state
    named ``AwaitingGreenWindow`` when it waits (its message names the window and, when several regions
    were weighed, each region's expected intensity). If the deployment's flow is ``@carbon_aware`` at
    flow level, the run uses this decision (window, region, deadline; its ``plan`` with the
    alternatives reaches the run's ledger entry) instead of planning again, and meters, reserves and
    records under its own settings. ``budget`` refuses to schedule anything when that budget is
    already spent (:class:`BudgetExceeded`).

    ``**options`` are the planning options of :class:`~greenflow.options.PlanningOptions` (``provider``,
    ``provider_options``, ``expected_duration``, ``deadline``, ``max_delay``, ``min_savings``,
    ``threshold``, ``on_provider_error``, ``max_staleness``, ``forecast_correction``; each documented
    there, with its default), checked before anything is asked of Prefect. ``tags`` are the flow run's
    tags in Prefect. The run's entry is ``deferred`` when it waited for the window (its start is after
    this call's request), ``ran_now`` when it was due at once.
    """
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.states import Scheduled

    check_option_names(options, PLANNING_OPTION_NAMES)  # e.g. an estimate: the run's own decorator has it
    targets = _Targets.of(deployment_name, region, regions)
    declared = {"region": targets.region, "regions": targets.regions, "budget": budget, **options}
    spec = CarbonSpec.declare(declared, "schedule_green")  # the table's rules, the budget's name included
    _check_deployments(targets)
    book = resolve_ledger(ledger)
    if spec.budget is not None:
        _refuse_spent(book, spec.budget)
    spec, replay = on_replay_clock(spec, "process")
    planner = Lifecycle(
        spec,
        Identity("prefect", targets.home.split("/")[0], f"planned-{utcnow().isoformat()}", "schedule_green"),
        ledger=book,
        provider=resolve_provider(spec, credentials),
    )
    step = planner.advance(reserve=False)  # the run reserves under its own settings when it starts
    if isinstance(step, Fail):
        raise step.error  # no forecast and on_provider_error="fail": the failed entry is written
    decision = step.decision
    chosen = targets.deployment_for(decision.region)
    alternatives = _options(decision, targets, spec.candidate_regions)
    flow_run: FlowRun = run_deployment(  # type: ignore[call-arg, assignment]  # _sync: a FlowRun even in async code
        chosen,
        parameters=dict(parameters or {}),
        scheduled_time=decision.wake_at,
        timeout=0,
        as_subflow=False,
        flow_run_name=flow_run_name,
        tags=[*tags, "greenflow"],
        work_queue_name=work_queue_name,
        job_variables=dict(job_variables) if job_variables is not None else None,
        _sync=True,
    )
    # The deferral is attached right after the run is created: a waiting run is not due before its
    # window, and a run due now still needs a worker poll and a process start (seconds) to read it.
    # If it ever started first, the flow would simply plan again at once.
    write_deferral(flow_run.id, Deferral(decision, 0, "schedule_green", replay))
    if decision.deferred or decision.action == "retry":
        # Only a waiting run gets its message: forcing a state onto a run that is due now could race a
        # worker that already picked it up.
        message = f"greenflow: {describe(decision, reason=False)}"
        if len(alternatives) > 1:
            message += f"; weighed {', '.join(option.describe() for option in alternatives)}"
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(
                flow_run.id,
                Scheduled(scheduled_time=decision.wake_at, name=GREEN_WINDOW_STATE, message=message),
                force=True,
            )
    return ScheduledRun(
        flow_run_id=str(flow_run.id),
        flow_run_name=flow_run.name,
        deployment=chosen,
        scheduled_time=decision.wake_at,
        decision=decision,
        region=decision.region,
        alternatives=alternatives,
    )


def _refuse_spent(book: Ledger, budget: str) -> None:
    """Schedule nothing when ``budget`` (or a spent budget counting the same work) has nothing left."""
    status = book.budgets.binding_status(budget)
    if status.exhausted:
        from greenflow.prefect.budget import emit_budget_exhausted

        emit_budget_exhausted(status)
        raise BudgetExceeded(
            f"budget {budget!r} is spent ({status.format(status.spent)} of "
            f"{status.format(status.budget.limit.value)} until {status.period_end.isoformat()}): nothing scheduled",
            fix="schedule after the period ends, or raise the limit with `greenflow budget set`",
        )


def on_replay_clock(
    spec: CarbonSpec, scope: str, carried: ReplayClock | None = None
) -> tuple[CarbonSpec, ReplayClock | None]:
    """``spec`` on the one replay clock of ``scope``, and that clock (``None`` unless it replays a trace).

    ``carried`` is the clock a rescheduled run planned on in its earlier process: the run keeps it (see
    :func:`~greenflow.intensity.replay_clock.shared_replay_clock`).
    """
    if spec.provider != "trace":
        return spec, None
    clock = shared_replay_clock(spec.provider_options, scope, carried=carried)
    if clock is None:
        return spec, None
    options = clock.provider_options(spec.provider_options)
    if options == dict(spec.provider_options):
        return spec, clock
    return replace(spec, provider_options=options), clock


def _options(decision: Decision, targets: _Targets, regions: Sequence[str]) -> tuple[RegionAlternative, ...]:
    """Each candidate region as the planner saw it (home first); without a plan, the regions alone."""
    planned = {str(option["region"]): option for option in (decision.plan or {}).get("alternatives", [])}
    options = []
    for name in regions:
        seen = planned.get(name, {})
        start = seen.get("start")
        options.append(
            RegionAlternative(
                region=name,
                deployment=targets.deployment_for(name),
                chosen=name == decision.region,
                start=None if start is None else parse_time(start, "start"),
                expected_gco2_per_kwh=seen.get("expected_gco2_per_kwh"),
                now_gco2_per_kwh=seen.get("now_gco2_per_kwh"),
            )
        )
    return tuple(options)


def _check_name(name: object, what: str) -> None:
    if not isinstance(name, str) or "/" not in name or name.startswith("/") or name.endswith("/"):
        raise InvalidInput(
            f"{what} {name!r} is not '<flow name>/<deployment name>'",
            fix="name it as `prefect deployment ls` shows it, e.g. train/nightly",
        )


def _check_deployments(targets: _Targets) -> None:
    """Fail before planning when a deployment does not exist (a typo should not cost a forecast call)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    missing = []
    with get_client(sync_client=True) as client:
        for name in targets.names:
            try:
                client.read_deployment_by_name(name)
            except ObjectNotFound:
                regions = [
                    region for region, deployment in targets.deployments.items() if deployment == name and region
                ]
                missing.append(f"{name!r}" + (f" (region {', '.join(regions)})" if regions else ""))
    if missing:
        raise InvalidInput(
            f"{'deployments' if len(missing) > 1 else 'deployment'} {' and '.join(missing)} "
            f"{'were' if len(missing) > 1 else 'was'} not found on the Prefect server: nothing scheduled",
            fix="check `prefect deployment ls` and PREFECT_API_URL",
        )


def _uuid(value: str | UUID) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))


def _duration(value: timedelta) -> str:
    seconds = round(value.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"
