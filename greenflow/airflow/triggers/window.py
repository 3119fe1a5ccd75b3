"""CarbonWindowTrigger: waits in the triggerer until a task's green window, or its latest start.

While it waits it re-plans at the provider's refresh cadence (a provider outage: at the outage policy's
retry times) with the core's one rule, :meth:`Lifecycle.refresh <greenflow.lifecycle.Lifecycle.refresh>`
(:mod:`greenflow.replanning`: never later, sooner only for a greener window, never past the latest start),
reading forecasts through the process's shared cache (one fetch per region per refresh however many
tasks wait). At the latest start (for a later segment of an interruptible attempt: the latest start of
the rest of its work, :func:`latest_start`) it fires with the plan it holds; a task still waiting for a forecast then
resumes through :meth:`Lifecycle.advance <greenflow.lifecycle.Lifecycle.advance>`, whose outage policy
decides how it runs. The trigger writes nothing to the ledger (the task records the attempt when it
runs), so running it twice (HA, redistribution) is harmless.

The triggerer imports this module, builds the trigger and starts :meth:`~CarbonWindowTrigger.run` on its
event loop, a thousand at a time when a mapped task defers. So the module imports nothing heavy, the
constructor only stores its arguments, and everything else (parsing the plan, building the spec and the
provider, opening the ledger, planning, building the event) runs in greenflow's thread pool
(:func:`~greenflow.airflow.resources.run_blocking`); the loop only awaits, sleeps and compares times.
Connections are read with Airflow's async lookups, which are themselves non-blocking on the loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from greenflow.airflow.hooks.connection_fields import ConnectionLike
from greenflow.airflow.hooks.lookup import aget_connection
from greenflow.airflow.ledger_access import configured_ledger
from greenflow.airflow.resources import run_blocking
from greenflow.clock import utcnow

if TYPE_CHECKING:
    from greenflow.intensity.cache import ForecastCache
    from greenflow.lifecycle import Decision, Lifecycle

log = logging.getLogger(__name__)

# Never re-plan more often than this (wall clock), whatever a fast replay asks for.
MIN_REFRESH_WALL = timedelta(seconds=0.2)
# Tasks deferred together (a mapped task) would all re-plan in the same instant, every refresh: a burst of
# a thousand thread jobs whose CPU the event loop's thread then has to share the GIL with. Each trigger
# delays its first re-plan by a stable share of this fraction of the refresh period (at most
# MAX_STAGGER), which spreads the re-plans of later refreshes as well. The forecast is still fetched once
# per refresh: the re-plans share it through the cache.
STAGGER = 0.2
MAX_STAGGER = timedelta(minutes=2)

_local_lock = threading.Lock()
_local_cache: ForecastCache | None = None


def _process_cache() -> ForecastCache:
    """A process-local cache for when the ledger (the shared layer) cannot be opened in the triggerer."""
    global _local_cache
    from greenflow.intensity.cache import ForecastCache

    with _local_lock:
        if _local_cache is None:
            _local_cache = ForecastCache()
        return _local_cache


@dataclass(frozen=True)
class _Connections:
    """What the trigger read through Airflow's async lookups, handed to a thread; an error if a lookup failed."""

    provider: ConnectionLike | Exception | None  # None: no provider_conn_id
    ledger: str | ConnectionLike | Exception  # a ledger URL, or the connection to build one from


@dataclass(frozen=True)
class _Waiting:
    """A trigger ready to wait: the plan it holds and how it re-plans (``lifecycle`` None: it cannot).

    ``first_refresh_wall`` is ``refresh_wall`` plus this trigger's stagger (see :data:`STAGGER`).
    """

    decision: Decision
    lifecycle: Lifecycle | None
    refresh_wall: timedelta
    first_refresh_wall: timedelta


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
        # Runs on the triggerer's event loop: store the arguments, nothing more (see the module docstring).
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
        connections = await self._connections()
        waiting = await run_blocking(self._prepare, connections)
        decision, lifecycle = waiting.decision, waiting.lifecycle
        first_start = decision.start_at
        refreshes = 0
        while True:
            now = utcnow()
            waiting_for_forecast = decision.action == "retry"
            if not waiting_for_forecast and now >= decision.wake_at:
                yield await run_blocking(self._event, decision, "planned_start", refreshes, first_start)
                return
            if lifecycle is not None:
                latest_wall = lifecycle.wall_time(latest_start(decision, lifecycle.spec.resume_overhead))
            else:
                latest_wall = decision.wake_at
            if now >= latest_wall:
                yield await run_blocking(self._event, decision, "latest_start", refreshes, first_start)
                return
            moments = [latest_wall]
            if not waiting_for_forecast:
                moments.append(decision.wake_at)
            next_replan = None
            if lifecycle is not None:
                # A provider outage re-asks at the policy's retry time; a plan re-reads at the refresh cadence.
                refresh_wall = waiting.refresh_wall if refreshes else waiting.first_refresh_wall
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
            decision = await run_blocking(lifecycle.refresh, decision)
            refreshes += 1

    # -- on the event loop: only awaits ---------------------------------------------------------------
    async def _connections(self) -> _Connections:
        """The provider and ledger connections, through Airflow's async lookups (errors kept for later)."""
        provider: ConnectionLike | Exception | None = None
        if self.provider_conn_id:
            try:
                provider = await aget_connection(self.provider_conn_id)
            except Exception as error:  # kept: the thread logs it and keeps the plan
                provider = error
        ledger: str | ConnectionLike | Exception
        try:
            conn_id, url = await run_blocking(configured_ledger, self.ledger_conn_id)  # reads Airflow's config
            ledger = await aget_connection(conn_id) if conn_id is not None else str(url)
        except Exception as error:
            ledger = error
        return _Connections(provider, ledger)

    # -- in greenflow's thread pool ------------------------------------------------------------------
    def _prepare(self, connections: _Connections) -> _Waiting:
        from greenflow.lifecycle import Decision

        lifecycle = self._lifecycle(connections)
        refresh_wall = self._refresh_wall(lifecycle)
        return _Waiting(
            Decision.from_dict(self.decision), lifecycle, refresh_wall, refresh_wall + self._stagger(refresh_wall)
        )

    def _stagger(self, refresh_wall: timedelta) -> timedelta:
        """This trigger's delay of its first re-plan: the same on every run of the same attempt."""
        share = zlib.crc32(json.dumps(self.identity, sort_keys=True, default=str).encode()) / 2**32
        return min(refresh_wall * STAGGER, MAX_STAGGER) * share

    def _lifecycle(self, connections: _Connections) -> Lifecycle | None:
        """The lifecycle used to re-plan, or ``None`` (then the trigger just keeps the plan it was given)."""
        from greenflow.airflow.hooks.intensity import hook_for_connection
        from greenflow.airflow.spec_params import spec_with_connection
        from greenflow.ledger import Identity
        from greenflow.lifecycle import Lifecycle

        try:
            conn = connections.provider
            if isinstance(conn, Exception):
                raise conn
            conn_options: dict[str, Any] = {}
            if conn is not None:
                conn_options = hook_for_connection(conn, str(self.spec.get("provider"))).options_from(conn)
            spec, provider = spec_with_connection(self._refresh_spec(), conn_options, self.provider_conn_id)
            return Lifecycle(spec, Identity(**self.identity), cache=self._cache(connections), provider=provider)
        except Exception as error:
            log.warning("greenflow: cannot re-plan %r (%s); keeping its plan", self, error)
            return None

    def _refresh_spec(self) -> dict[str, Any]:
        # A refresh must never end the wait or write an entry, but under on_provider_error="fail" the core's
        # plan() records a failed attempt before it raises (Lifecycle.refresh then keeps the plan, the entry
        # stays written). Here a failed refresh keeps the plan the task holds; the task itself applies "fail"
        # when it resumes.
        spec = dict(self.spec)
        if spec.get("on_provider_error") == "fail":
            spec["on_provider_error"] = "wait"
        return spec

    def _cache(self, connections: _Connections) -> ForecastCache:
        from greenflow.airflow.hooks.ledger import ledger_url_from_connection
        from greenflow.airflow.resources import ledger_at
        from greenflow.lifecycle import shared_cache

        try:
            given = connections.ledger
            if isinstance(given, Exception):
                raise given
            url = given if isinstance(given, str) else ledger_url_from_connection(given)
            return shared_cache(ledger_at(url))
        except Exception as error:
            log.warning("greenflow: ledger unavailable in the triggerer (%s); forecasts cached per process", error)
            return _process_cache()

    def _refresh_wall(self, lifecycle: Lifecycle | None) -> timedelta:
        cadence = timedelta(seconds=max(self.refresh_seconds, 1.0))
        speed = lifecycle.replay_speed if lifecycle is not None else None
        wall = cadence / speed if speed else cadence
        return max(wall, MIN_REFRESH_WALL)

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


def latest_start(decision: Decision, resume_overhead: timedelta = timedelta(0)) -> datetime:
    """The latest moment the work ``decision`` waits for can start and still meet the deadline.

    For an attempt (or its first segment) that is its ``latest_start``. An interruptible attempt waiting
    for a later segment has done the work of the segments before it, so the rest can start that much later
    (its next planned segment often starts after the attempt's own latest start), less the
    ``resume_overhead`` the resumption costs.
    """
    index = decision.segment_index
    segments = (decision.plan or {}).get("segments")
    if not index or not isinstance(segments, list):
        return decision.latest_start
    done = sum(float(segment["work_seconds"]) for segment in segments[:index])
    return decision.latest_start + timedelta(seconds=done) - resume_overhead
