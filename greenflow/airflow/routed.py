"""A task started by a region route runs at the route's start instead of planning a second wait.

``GreenGateOperator(regions={"GB": "train_gb", "NO": "train_no"})`` plans over the regions, waits for
the chosen start, branches to the chosen region's task and pushes XCom ``greenflow_route``. The routed
task (a :class:`~greenflow.airflow.operators.carbon_aware.CarbonAwareOperator`, ``@task.carbon_aware``
or a ``CarbonAwareBashOperator``, whose ``greenflow run`` writes the entry from the decision) finds that
XCom on a direct upstream task, checks that the route sent it to its own region, and runs at once under
a decision built from the route's ledger entry: the route's request time and start (so the entry says
``deferred`` when the route waited, with the wait upstream), the route's plan and forecast (so the
budget estimate uses the planned intensity), and ``extra["route"]`` linking the entry to the route's
(carried in :attr:`~greenflow.lifecycle.Decision.entry_extra`). Savings are counted against the
route's home region.

A retry of the routed task (try 2 on) did not wait: the route waited for the first try. It runs at once
in the routed region and is recorded ``ran_now``, as any retry that runs at once (the core's rule, see
:attr:`greenflow.lifecycle.Decision.deferred`); the route's request stays the deadline's anchor.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from greenflow.clock import parse_time, utcnow
from greenflow.errors import InvalidInput
from greenflow.ledger import Entry, Ledger
from greenflow.lifecycle import Decision, Lifecycle
from greenflow.spec import CarbonSpec

ROUTE_XCOM_KEY = "greenflow_route"
"""XCom key of the routing choice a GreenGateOperator pushes and routed tasks read:
``{"region", "task_id", "start_at", "entry_id"}``. Here, with the reader, so that the operators' shared
base (which follows routes) needs no operator module."""


@dataclass(frozen=True)
class Route:
    """The route that started this task: who routed it, where, from when, and the route's ledger entry.

    ``requested_at``, ``home``, ``plan`` and ``forecast`` come from the route's entry; ``None`` when that
    entry is not in this task's ledger (``note`` says so) or was planned with another provider.
    """

    gate_task_id: str
    region: str
    start_at: datetime
    entry_id: str
    requested_at: datetime | None = None
    home: str | None = None
    plan: dict[str, Any] | None = None
    forecast: dict[str, Any] | None = None
    note: str | None = None

    @classmethod
    def from_xcom(cls, gate_task_id: str, pushed: dict[str, Any], entry: Entry | None, provider: str) -> Route:
        """The route pushed by ``gate_task_id``, completed from its ledger ``entry`` when there is one."""
        start = parse_time(pushed["start_at"], "start_at")
        route = cls(gate_task_id, str(pushed["region"]), start, str(pushed["entry_id"]))
        if entry is None:
            return replace(
                route,
                note="the route's entry is not in this task's ledger: its request time is unknown, "
                "so the route's wait is not counted here",
            )
        extra = entry.extra or {}
        home = (extra.get("route") or {}).get("home")
        if entry.policy.get("provider") != provider:
            # Another provider's forecast and plan would not match this task's intensity accounting.
            return replace(
                route,
                requested_at=entry.requested_at,
                note=f"the route planned with provider {entry.policy.get('provider')!r}, this task uses "
                f"{provider!r}: the route's plan and forecast are not reused",
            )
        return replace(
            route,
            requested_at=entry.requested_at,
            home=None if home is None else str(home),
            plan=extra.get("plan"),
            forecast=entry.forecast,
        )

    def to_dict(self) -> dict[str, Any]:
        """The routed entry's ``extra["route"]``."""
        return {
            "entry_id": self.entry_id,
            "gate_task_id": self.gate_task_id,
            "region": self.region,
            "home": self.home,
            "requested_at": None if self.requested_at is None else self.requested_at.isoformat(),
            "start_at": self.start_at.isoformat(),
            "note": self.note,
        }


def find_route(task_id: str, upstream_task_ids: set[str], ti: Any) -> tuple[str, dict[str, Any]] | None:
    """The ``greenflow_route`` XCom a direct upstream task pushed naming ``task_id``, with that task's id.

    Raises :class:`InvalidInput` when two upstream routes name this task (which one to follow is unclear).
    """
    found = []
    for upstream in sorted(upstream_task_ids):
        pushed = ti.xcom_pull(task_ids=upstream, key=ROUTE_XCOM_KEY)
        if isinstance(pushed, dict) and pushed.get("task_id") == task_id:
            found.append((upstream, pushed))
    if len(found) > 1:
        raise InvalidInput(
            f"{task_id} is routed by {[gate for gate, _ in found]}: more than one route names it",
            fix="route each task from one GreenGateOperator (give each route its own tasks)",
        )
    return found[0] if found else None


def check_region(task_id: str, route: Route, region: str | None) -> None:
    """Refuse a route to another region than the task's own: the DAG binds the wrong task to the region."""
    if route.region != region:
        raise InvalidInput(
            f"{route.gate_task_id} routed region {route.region!r} to {task_id}, which declares region={region!r}",
            fix=f"map {route.region!r} to the task bound to that region's workers, or set region="
            f"{route.region!r} on {task_id}",
        )


def routed_spec(spec: CarbonSpec, route: Route) -> CarbonSpec:
    """The task's spec with the route's home first, so savings are counted against starting at home at once."""
    if route.home is None or route.home == spec.region:
        return spec
    regions = tuple(r for r in spec.candidate_regions if r != route.home)
    return replace(spec, region=route.home, regions=regions)


class RoutedLifecycle(Lifecycle):
    """A lifecycle whose plan is the route's: run at once in the routed region, recorded as routed."""

    def __init__(self, route: Route, spec: CarbonSpec, *args: Any, **kwargs: Any) -> None:
        super().__init__(routed_spec(spec, route), *args, **kwargs)
        self.route = route

    def plan(
        self,
        *,
        requested_at: datetime | None = None,
        previous: Decision | None = None,
        retry: bool = False,
        record_failure: bool = True,
    ) -> Decision:
        """The route's decision (the route already waited); a re-plan of an earlier decision is the core's.

        From the second try on, the attempt is a retry: it asks now, after the route's start, and runs at
        once, so it is ``ran_now`` (only the first try waited for the route's window).
        """
        if previous is not None:
            return super().plan(previous=previous, retry=retry, record_failure=record_failure)
        route = self.route
        requested = route.requested_at or route.start_at
        gate = f"{route.gate_task_id} (entry {route.entry_id})"
        reason = (
            f"routed by {gate} to {route.region} for {route.start_at.isoformat()}: runs at once, the route did "
            "the waiting"
        )
        start, retried = route.start_at, None
        if self.identity.attempt > 1:
            # Never before the route's start: the route's and the task's clocks may differ in a replay.
            start = retried = max(self.now(), route.start_at)
            reason = (
                f"try {self.identity.attempt} of a task routed by {gate} to {route.region}: runs at once; the "
                "route's wait was the first try's"
            )
        return Decision(
            requested_at=requested,
            start_at=start,
            latest_start=max(route.start_at, requested),
            wake_at=utcnow(),
            region=route.region,
            action="run_now",
            reason=reason,
            retry_requested_at=retried,
            plan=route.plan,
            forecast=route.forecast,
            forecast_note=route.note,
            replay_speed=self.replay_speed,
            budget=self.spec.budget,
            # Travels with the decision, so an entry written elsewhere (greenflow run) links the route too.
            entry_extra={"route": route.to_dict()},
        )


def route_for(task_id: str, upstream_task_ids: set[str], ti: Any, ledger: Ledger, spec: CarbonSpec) -> Route | None:
    """The route that started this task (checked against its region), or ``None`` when it was not routed."""
    if not upstream_task_ids:
        return None
    found = find_route(task_id, upstream_task_ids, ti)
    if found is None:
        return None
    gate, pushed = found
    route = Route.from_xcom(gate, pushed, ledger.get(str(pushed["entry_id"])), spec.provider)
    check_region(task_id, route, spec.region)
    return route
