"""CarbonWindowTrigger: waits in the triggerer until a task's green window, or its latest start.

While it waits it re-plans at the provider's refresh cadence, reading forecasts through the process's
shared cache (one fetch per region per refresh however many tasks wait), in a worker thread so the
triggerer's event loop never blocks. A fresh plan is taken only when it starts no later than the one the
trigger holds: the start moves earlier when a greener window opens sooner, never later than promised,
and never past the latest start that still meets the deadline. The trigger writes nothing to the ledger
(the task records the attempt when it runs), so running it twice (HA, redistribution) is harmless.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from greenflow.airflow.ledger_access import aledger_url
from greenflow.airflow.resources import ledger_at
from greenflow.airflow.spec_params import aconnection_options, spec_with_connection
from greenflow.clock import utcnow
from greenflow.intensity.cache import ForecastCache
from greenflow.ledger import Identity
from greenflow.lifecycle import Decision, Lifecycle

log = logging.getLogger(__name__)

# Never re-plan more often than this (wall clock), whatever a fast replay asks for.
MIN_REFRESH_WALL = timedelta(seconds=0.2)
# A process-local cache for when the ledger (the shared layer) cannot be opened in the triggerer.
_LOCAL_CACHE = ForecastCache()


class CarbonWindowTrigger(BaseTrigger):
    """Fires when a carbon-aware task should start.

    :param decision: the task's :class:`~greenflow.lifecycle.Decision` (``to_dict()`` form).
    :param spec: the task's spec as :meth:`CarbonSpec.to_kwargs` primitives, without credentials.
    :param identity: the attempt (primitives), used only to build the lifecycle; nothing is written.
    :param provider_conn_id: connection holding the provider's credentials, read again here.
    :param ledger_conn_id: the ledger whose database shares forecasts between processes.
    :param refresh_seconds: re-plan cadence in the task's clock (a replay divides it by its speed).
    """

    def __init__(
        self,
        *,
        decision: dict[str, Any],
        spec: dict[str, Any],
        identity: dict[str, Any],
        provider_conn_id: str | None = None,
        ledger_conn_id: str | None = None,
        refresh_seconds: float = 1800.0,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.decision = decision
        self.spec = spec
        self.identity = identity
        self.provider_conn_id = provider_conn_id
        self.ledger_conn_id = ledger_conn_id
        self.refresh_seconds = float(refresh_seconds)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and primitive arguments (Airflow's serde stores them in the metadata database)."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "decision": self.decision,
                "spec": self.spec,
                "identity": self.identity,
                "provider_conn_id": self.provider_conn_id,
                "ledger_conn_id": self.ledger_conn_id,
                "refresh_seconds": self.refresh_seconds,
            },
        )

    def __repr__(self) -> str:
        # The default repr prints every argument, forecast points included, into the triggerer's log.
        d = self.decision
        return (
            f"<CarbonWindowTrigger {self.identity.get('workflow_id')}.{self.identity.get('task_id')} "
            f"region={d.get('region')} start_at={d.get('start_at')} latest_start={d.get('latest_start')}>"
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Sleep until the planned start, re-planning at each refresh; fire at the start or the latest start."""
        decision = Decision.from_dict(self.decision)
        first_start = decision.start_at
        refreshes = 0
        lifecycle = await self._lifecycle()
        refresh_wall = self._refresh_wall(lifecycle)
        while True:
            now = utcnow()
            waiting_for_forecast = decision.action == "retry"
            if not waiting_for_forecast and now >= decision.wake_at:
                yield self._event(decision, "planned_start", refreshes, first_start)
                return
            latest_wall = lifecycle.wall_time(decision.latest_start) if lifecycle else decision.wake_at
            if now >= latest_wall:
                if waiting_for_forecast and lifecycle is not None:
                    # The deadline has come: the outage policy (or a forecast back in time) decides how to run.
                    final = await self._replan(lifecycle, decision)
                    if final is not None and final.action != "retry":
                        decision = final
                yield self._event(decision, "latest_start", refreshes, first_start)
                return
            moments = [latest_wall]
            if not waiting_for_forecast:
                moments.append(decision.wake_at)
            next_replan = None
            if lifecycle is not None:
                # A provider outage re-asks at the policy's retry time; a plan re-reads at the refresh cadence.
                next_replan = max(
                    decision.wake_at if waiting_for_forecast else now + refresh_wall, now + MIN_REFRESH_WALL
                )
                moments.append(next_replan)
            await asyncio.sleep(max((min(moments) - now).total_seconds(), 0.0))
            now = utcnow()
            if lifecycle is None or next_replan is None or now < next_replan or now >= latest_wall:
                continue
            if not waiting_for_forecast and now >= decision.wake_at:
                continue  # the start has come: fire rather than re-plan
            fresh = await self._replan(lifecycle, decision)
            refreshes += 1
            if fresh is not None:
                decision = preferred(decision, fresh)

    # -- internals -------------------------------------------------------------------------------
    async def _lifecycle(self) -> Lifecycle | None:
        """The lifecycle used to re-plan, or ``None`` (then the trigger just keeps the plan it was given)."""
        try:
            conn_options = await aconnection_options(str(self.spec.get("provider")), self.provider_conn_id)
            spec, provider = await asyncio.to_thread(
                spec_with_connection, self._refresh_spec(), conn_options, self.provider_conn_id
            )
            cache = await self._cache()
            return Lifecycle(spec, Identity(**self.identity), cache=cache, provider=provider)
        except Exception as error:
            log.warning("greenflow: cannot re-plan %r (%s); keeping its plan", self, error)
            return None

    def _refresh_spec(self) -> dict[str, Any]:
        # A refresh must never end the wait or write an entry: under on_provider_error="fail" the
        # lifecycle would record a failed attempt and raise. The plan the task already holds stands instead.
        spec = dict(self.spec)
        if spec.get("on_provider_error") == "fail":
            spec["on_provider_error"] = "wait"
        return spec

    async def _cache(self) -> ForecastCache:
        from greenflow.lifecycle import shared_cache

        try:
            url = await aledger_url(self.ledger_conn_id)
            ledger = await asyncio.to_thread(ledger_at, url)
            return shared_cache(ledger)
        except Exception as error:
            log.warning("greenflow: ledger unavailable in the triggerer (%s); forecasts cached per process", error)
            return _LOCAL_CACHE

    def _refresh_wall(self, lifecycle: Lifecycle | None) -> timedelta:
        cadence = timedelta(seconds=max(self.refresh_seconds, 1.0))
        speed = lifecycle.replay_speed if lifecycle is not None else None
        wall = cadence / speed if speed else cadence
        return max(wall, MIN_REFRESH_WALL)

    async def _replan(self, lifecycle: Lifecycle, decision: Decision) -> Decision | None:
        try:
            return await asyncio.to_thread(lifecycle.plan, previous=decision)
        except Exception as error:  # a refresh is an improvement, never a reason to fail the wait
            log.warning("greenflow: re-planning %r failed (%s); keeping its plan", self, error)
            return None

    def _event(self, decision: Decision, fired: str, refreshes: int, first_start: datetime) -> TriggerEvent:
        moved = decision.start_at < first_start
        return TriggerEvent(  # type: ignore[no-untyped-call]
            {
                "decision": decision.to_dict(),
                "fired": fired,
                "refreshes": refreshes,
                "moved_earlier_from": first_start.isoformat() if moved else None,
            }
        )


def preferred(current: Decision, fresh: Decision) -> Decision:
    """Which plan a waiting task holds after a refresh (see the module docstring)."""
    if current.action == "retry":
        # Waiting for a forecast: whatever the policy says now (a plan, another retry, or run) replaces it.
        return fresh
    if fresh.action == "retry" or fresh.forecast is None:
        return current  # the provider failed this time: the plan already held stands
    if fresh.start_at <= current.start_at:
        return fresh
    return current
