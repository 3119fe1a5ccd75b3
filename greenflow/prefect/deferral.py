"""Waiting for the green window, and holding as little as possible while waiting.

Three ways to wait, chosen by where the work runs:

* **A deployment's flow run, at flow level** (``@flow`` on top of ``@carbon_aware``): the run is put back
  into a ``Scheduled`` state named ``AwaitingGreenWindow`` at the window, its process exits and frees the
  worker's slot and infrastructure; a worker picks it up again at the window. The decision (with its
  budget reservation and original request time) rides along as a flow-run input, so the resumed run
  does not plan again and the deadline stays anchored to the first request.
* **Before the run exists**: :func:`schedule_green` plans, then creates the flow run of a deployment
  with ``run_deployment(..., scheduled_time=window)``: nothing runs or is held until then.
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
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn
from uuid import UUID

from greenflow.clock import utcnow
from greenflow.errors import BudgetExceeded, InvalidInput
from greenflow.ledger import Identity
from greenflow.lifecycle import Decision, Lifecycle
from greenflow.prefect.connections import CredentialsOption, LedgerOption, resolve_ledger, resolve_provider
from greenflow.spec import CarbonSpec

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


# -- the decision a waiting flow run carries ---------------------------------------------------------
@dataclass(frozen=True)
class Deferral:
    """What a rescheduled (or pre-scheduled) flow run needs when it starts: the decision and its history."""

    decision: Decision
    deferrals: int
    source: str  # "deferred" (the run rescheduled itself) or "schedule_green"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe."""
        return {"decision": self.decision.to_dict(), "deferrals": self.deferrals, "source": self.source}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Deferral:
        """Inverse of :meth:`to_dict`."""
        return cls(Decision.from_dict(data["decision"]), int(data["deferrals"]), str(data["source"]))


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


# -- telling people what is going on -----------------------------------------------------------------
def describe(decision: Decision, *, reason: bool = True) -> str:
    """One line: where and when the attempt starts, what that is expected to save, the deadline (and why)."""
    plan = decision.plan or {}
    clock = " (trace replay time)" if decision.replay_speed else ""
    where = f" in {decision.region}" if decision.region else ""
    waits = decision.action == "defer" and decision.deferred
    if decision.action == "retry":
        head = f"forecast unavailable; asking again at {_short(decision.start_at)}{clock}"
    elif waits:
        head = f"deferred to {_short(decision.start_at)}{where}{clock}"
    else:
        head = f"runs now{where}"
    numbers = []
    if plan.get("expected_gco2_per_kwh") is not None:
        numbers.append(f"expected {plan['expected_gco2_per_kwh']:.0f} gCO2e/kWh")
    if plan.get("now_gco2_per_kwh") is not None and waits:
        numbers.append(f"vs {plan['now_gco2_per_kwh']:.0f} now")
    if plan.get("savings_pct") is not None and waits:
        numbers.append(f"saves {plan['savings_pct']:.0f}%")
    detail = f" ({', '.join(numbers)})" if numbers else ""
    line = f"{head}{detail}; latest start {_short(decision.latest_start)}{clock}"
    return f"{line}: {decision.reason}" if reason else line


# -- waiting in process ------------------------------------------------------------------------------
def wait_in_process(
    lifecycle: Lifecycle,
    decision: Decision,
    logger: Logger,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Sleep until the decision's start (wall clock), never past its latest start; log the remaining wait."""
    target = _wake_target(lifecycle, decision)
    _log_wait(logger, target)
    next_log = utcnow() + LOG_EVERY
    while (remaining := (target - utcnow()).total_seconds()) > 0:
        sleep(min(remaining, max((next_log - utcnow()).total_seconds(), 0.05)))
        if utcnow() >= next_log and utcnow() < target:
            _log_wait(logger, target)
            next_log = utcnow() + LOG_EVERY


async def wait_in_process_async(
    lifecycle: Lifecycle,
    decision: Decision,
    logger: Logger,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """:func:`wait_in_process` for coroutines: the event loop keeps running while the task waits."""
    target = _wake_target(lifecycle, decision)
    _log_wait(logger, target)
    next_log = utcnow() + LOG_EVERY
    while (remaining := (target - utcnow()).total_seconds()) > 0:
        await sleep(min(remaining, max((next_log - utcnow()).total_seconds(), 0.05)))
        if utcnow() >= next_log and utcnow() < target:
            _log_wait(logger, target)
            next_log = utcnow() + LOG_EVERY


def _wake_target(lifecycle: Lifecycle, decision: Decision) -> datetime:
    # The deadline wins: even if the clock mapping drifted (a replay), never sleep past the latest start.
    return min(decision.wake_at, lifecycle.wall_time(decision.latest_start))


def _log_wait(logger: Logger, target: datetime) -> None:
    remaining = max(target - utcnow(), timedelta(0))
    logger.info(
        "greenflow: waiting in this process until %s, %s left (no deployment flow run to reschedule)",
        _short(target),
        _duration(remaining),
    )


# -- giving the infrastructure back ------------------------------------------------------------------
def release_flow_run(flow_run_id: str, decision: Decision, *, deferrals: int, logger: Logger) -> NoReturn:
    """Reschedule the running flow run at the decision's wall-clock start and end this process.

    The deferral is attached first, so the resumed run finds it; the ``Scheduled`` state carries a
    message that says why and until when. Raises (never returns): the engine exits without a final state.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.responses import SetStateStatus
    from prefect.states import Scheduled

    write_deferral(flow_run_id, Deferral(decision, deferrals + 1, "deferred"))
    message = f"greenflow: {describe(decision, reason=False)}"
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
        _short(decision.wake_at),
    )
    exit_without_final_state(result.state)


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
class ScheduledRun:
    """A flow run :func:`schedule_green` created at the green window."""

    flow_run_id: str
    flow_run_name: str
    deployment: str
    scheduled_time: datetime
    decision: Decision

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (the CLI's ``--json`` shape)."""
        return {
            "flow_run_id": self.flow_run_id,
            "flow_run_name": self.flow_run_name,
            "deployment": self.deployment,
            "scheduled_time": self.scheduled_time.isoformat(),
            "decision": self.decision.to_dict(),
            "summary": describe(self.decision),
        }


def schedule_green(
    deployment_name: str,
    parameters: Mapping[str, Any] | None = None,
    *,
    region: str | None = None,
    regions: Sequence[str] = (),
    provider: str = "ukgrid",
    provider_options: Mapping[str, Any] | None = None,
    expected_duration: str | timedelta | float = timedelta(hours=1),
    deadline: str | datetime | timedelta | None = None,
    max_delay: str | timedelta | float | None = None,
    min_savings: float = 0.0,
    threshold: float | None = None,
    budget: str | None = None,
    on_provider_error: str = "wait",
    credentials: CredentialsOption = None,
    ledger: LedgerOption = None,
    flow_run_name: str | None = None,
    tags: Sequence[str] = (),
    work_queue_name: str | None = None,
    job_variables: Mapping[str, Any] | None = None,
) -> ScheduledRun:
    """Plan the greenest start of a deployment's next run and create the run at it; nothing runs until then.

    ``deployment_name`` is ``"<flow name>/<deployment name>"``. The run is created with
    ``run_deployment(..., scheduled_time=window, timeout=0)`` in a ``Scheduled`` state named
    ``AwaitingGreenWindow`` when it waits. If the deployment's flow is ``@carbon_aware`` at flow level,
    the run uses this decision (window, region, deadline) instead of planning again, and meters,
    reserves and records under its own settings. ``budget`` refuses to schedule anything when that
    budget is already spent (:class:`BudgetExceeded`).
    """
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.states import Scheduled

    if not deployment_name or "/" not in deployment_name:
        raise InvalidInput(
            f"deployment {deployment_name!r} is not '<flow name>/<deployment name>'",
            fix="name it as `prefect deployment ls` shows it, e.g. train/nightly",
        )
    spec = CarbonSpec.build(
        region=region,
        regions=regions,
        provider=provider,
        provider_options=provider_options,
        expected_duration=expected_duration,
        deadline=deadline,
        max_delay=max_delay,
        min_savings=min_savings,
        threshold=threshold,
        on_provider_error=on_provider_error,
    )
    _check_deployment(deployment_name)
    book = resolve_ledger(ledger)
    if budget is not None:
        status = book.budgets.status(budget)
        if status.exhausted:
            from greenflow.prefect.budget import emit_budget_exhausted

            emit_budget_exhausted(status)
            raise BudgetExceeded(
                f"budget {budget!r} is spent ({status.format(status.spent)} of "
                f"{status.format(status.budget.limit.value)} until {status.period_end.isoformat()}): nothing scheduled",
                fix="schedule after the period ends, or raise the limit with `greenflow budget set`",
            )
    planner = Lifecycle(
        spec,
        Identity("prefect", deployment_name.split("/")[0], f"planned-{utcnow().isoformat()}", "schedule_green"),
        ledger=book,
        provider=resolve_provider(spec, credentials),
    )
    decision = planner.plan()
    flow_run: FlowRun = run_deployment(  # type: ignore[call-arg, assignment]  # _sync: a FlowRun even in async code
        deployment_name,
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
    write_deferral(flow_run.id, Deferral(decision, 0, "schedule_green"))
    if decision.deferred or decision.action == "retry":
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(
                flow_run.id,
                Scheduled(
                    scheduled_time=decision.wake_at,
                    name=GREEN_WINDOW_STATE,
                    message=f"greenflow: {describe(decision, reason=False)}",
                ),
                force=True,
            )
    return ScheduledRun(
        flow_run_id=str(flow_run.id),
        flow_run_name=flow_run.name,
        deployment=deployment_name,
        scheduled_time=decision.wake_at,
        decision=decision,
    )


def _check_deployment(name: str) -> None:
    """Fail before planning when the deployment does not exist (a typo should not cost a forecast call)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_deployment_by_name(name)
        except ObjectNotFound:
            raise InvalidInput(
                f"deployment {name!r} was not found on the Prefect server",
                fix="check `prefect deployment ls` and PREFECT_API_URL",
            ) from None


def _uuid(value: str | UUID) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))


def _short(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def _duration(value: timedelta) -> str:
    seconds = round(value.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"
