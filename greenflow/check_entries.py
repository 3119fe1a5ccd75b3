"""Ledger entries for what greenflow decides but does not meter: a gate's choice, a sensor's check.

The lifecycle records the attempts it runs itself. Gates and sensors run no work, but their decisions
belong in the record too, and every adapter writes them through :func:`record_check`, so one set of rules
makes them tell the truth whichever orchestrator ran them:

* **What happened, not what was planned.** ``actual_start`` is when the check let the work behind it go
  on (``None`` when it let nothing through); ``deferred_seconds`` is how long it waited for its window,
  and only a check that waited is ``deferred``. A check that acts at once whatever its plan said (a
  governance gate: ``at_once=True``) waited for nothing, even when the plan it read proposed a later
  window (that plan stays in ``extra["plan"]`` as the evidence it judged by).
* **One clock.** A check planned on a replayed trace keeps the lifecycle's clock: its times are the
  trace's and the entry is marked so (``extra["replay"]``), as an attempt's entry is. Without a plan the
  check's clock is the wall clock.
* **Nothing measured, and why.** ``measurement_notes["reason"]`` says why nothing was metered.

A check that planned passes its ``lifecycle`` and ``decision`` (the entry then carries the forecast,
policy inputs, region and plan as an attempt's does); a check that only read a budget passes the
``ledger`` and its ``identity``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from greenflow.clock import require_aware, utcnow
from greenflow.ledger.entry import Decision as Outcome
from greenflow.ledger.entry import Entry, Identity

if TYPE_CHECKING:  # a budget check must not pay for the lifecycle's imports
    from greenflow.ledger.store import Ledger
    from greenflow.lifecycle import Decision, Lifecycle

CheckOutcome = Literal["ran_now", "deferred", "degraded", "skipped_budget"]
CHECK_OUTCOMES: tuple[CheckOutcome, ...] = ("ran_now", "deferred", "degraded", "skipped_budget")


def record_check(
    outcome: Outcome | None = None,
    *,
    not_metered: str,
    lifecycle: Lifecycle | None = None,
    decision: Decision | None = None,
    at_once: bool = False,
    let_through: bool | None = None,
    ledger: Ledger | None = None,
    identity: Identity | None = None,
    requested_at: datetime | None = None,
    budget: str | None = None,
    policy: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    error: str | None = None,
    intensity_g_per_kwh: float | None = None,
    intensity_source: str | None = None,
) -> Entry:
    """Append (idempotently per attempt) the entry of a gate's or sensor's decision; returns it as stored.

    :param outcome: ``ran_now``, ``degraded`` (a reduced path), ``skipped_budget`` (nothing let through) or
        ``deferred``; a planned check's default: ``deferred`` when it waited for its decision's start, else
        ``ran_now``. An unplanned check names it.
    :param not_metered: why nothing was measured (the entry's ``measurement_notes["reason"]``).
    :param lifecycle: a planned check's lifecycle (its ledger, identity and clock), with ``decision``.
    :param decision: the plan the check acted on.
    :param at_once: the check acted when it asked, whatever the plan said (it waits for nothing).
    :param let_through: whether the work behind the check went on (its ``actual_start``, else ``None``);
        default: unless the outcome is ``skipped_budget``.
    :param ledger: an unplanned check's ledger, with ``identity``.
    :param identity: the check's own attempt (an unplanned check).
    :param requested_at: when an unplanned check asked (a sensor resumed after a deferral); default now.
    :param budget: the budget the check read; default the decision's.
    :param policy: an unplanned check's rule; a planned check records the lifecycle's policy inputs and
        keeps this under ``extra["check_policy"]``.
    :param extra: adapter context for ``extra`` (the gate's choice, the budget's status, a route).
    :param error: why the work behind the check did not go on (a closed budget).
    :param intensity_g_per_kwh: the intensity the check judged by, when it is the entry's figure.
    :param intensity_source: where that intensity came from.
    """
    if outcome is not None and outcome not in CHECK_OUTCOMES:
        # A check runs no work: it cannot have failed or been interrupted (those are an attempt's outcomes).
        raise ValueError(f"outcome={outcome!r} is not a check's: use one of {', '.join(CHECK_OUTCOMES)}")
    if lifecycle is not None:
        if decision is None or ledger is not None or identity is not None or requested_at is not None:
            raise ValueError("a planned check takes lifecycle= and decision= (its ledger, identity and request)")
        fields, started = _planned(lifecycle, decision, at_once=at_once)
        store, who = lifecycle.ledger, lifecycle.identity
        waited = decision.deferred and not at_once
        if policy:
            fields["extra"]["check_policy"] = dict(policy)
    else:
        if decision is not None or ledger is None or identity is None or outcome is None:
            raise ValueError("a check without a plan takes outcome=, ledger= and identity= (and no decision)")
        started = utcnow()
        requested = started if requested_at is None else require_aware(requested_at, "requested_at")
        fields = {"requested_at": requested, "planned_start": None, "policy": dict(policy or {}), "extra": {}}
        store, who = ledger, identity
        # Without a plan, the check waited when it asked before now (a sensor resumed after its deferral).
        waited = started > requested
    decided: Outcome = outcome or ("deferred" if waited else "ran_now")
    if decided == "deferred" and not waited:
        raise ValueError("a check that did not wait cannot be recorded as deferred")
    requested = fields["requested_at"]
    went_on = decided != "skipped_budget" if let_through is None else let_through
    actual = max(started, requested) if went_on else None
    if lifecycle is None:
        # No plan: the wait is what passed between the request and now (a sensor resumed after its deferral).
        fields["deferred_seconds"] = (started - requested).total_seconds() if decided == "deferred" else 0.0
    fields["extra"] = {**fields["extra"], **(extra or {})}
    if budget is not None or "budget" not in fields:
        fields["budget"] = budget
    if intensity_g_per_kwh is not None:
        fields["intensity_g_per_kwh"] = intensity_g_per_kwh
        fields["intensity_source"] = intensity_source
    entry = Entry.for_attempt(
        who,
        decided,
        **fields,
        actual_start=actual,
        error=error,
        measurement_notes={"reason": not_metered},
    )
    return store.append(entry)


def _planned(lifecycle: Lifecycle, decision: Decision, *, at_once: bool) -> tuple[dict[str, Any], datetime]:
    """The decision's entry fields as the check carried it out, and when it let the work go on."""
    if at_once and decision.deferred:
        # The plan's later start is evidence of "not green now", not a wait: the check acted when it asked.
        requested = decision.attempt_requested_at
        decision = replace(
            decision,
            start_at=requested,
            wake_at=requested,
            reason=f"acted at once (this check never waits); the plan said: {decision.reason}",
        )
    fields = lifecycle.decision_fields(decision)
    fields["extra"] = dict(fields.get("extra") or {})
    # The lifecycle's clock (a replay's trace time, clamped to the planned start so that the replay's own
    # drift is not taken for a wait), exactly as a metered attempt's start.
    return fields, lifecycle.start_time(decision)
