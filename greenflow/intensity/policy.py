"""What to do when the intensity provider cannot be reached: an explicit, recorded decision.

``on_provider_error``:

* ``run``: start now without a forecast;
* ``wait``: keep retrying until the deadline (the latest start that still meets the task's deadline),
  then run;
* ``fail``: raise :class:`~greenflow.errors.ProviderError`.

Before any of those, a last good forecast younger than ``max_staleness`` is used instead, flagged stale
with its age. A replayed forecast snapshot (a trace of forecasts as published) is judged by its issue time
in the task's clock: one issued longer than ``max_staleness`` ago is an outage, not a forecast. Every
outcome carries a ``reason`` for the ledger: there is no silent "run now".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from greenflow.clock import format_duration, parse_time, require_aware, utcnow
from greenflow.errors import InvalidInput, ProviderError
from greenflow.intensity.cache import CachedForecast, ForecastCache
from greenflow.intensity.forecast import Forecast
from greenflow.intensity.providers.base import IntensityProvider, ProviderUnavailable, is_retryable

SNAPSHOT_ISSUED_AT = "snapshot_issued_at"
"""The ``Forecast.meta`` key of a replayed snapshot's issue time (the trace provider sets it): its age."""
OnProviderError = Literal["run", "wait", "fail"]
ON_PROVIDER_ERROR: tuple[OnProviderError, ...] = ("run", "wait", "fail")


@dataclass(frozen=True)
class UseForecast:
    """Plan with this forecast. ``stale`` is true when it is a last good copy used during an outage."""

    forecast: Forecast
    fetched_at: datetime
    age: timedelta
    stale: bool
    reason: str
    kind: Literal["forecast"] = "forecast"

    def to_dict(self) -> dict[str, Any]:
        """What the ledger records about this decision."""
        return {
            "kind": self.kind,
            "stale": self.stale,
            "age_seconds": self.age.total_seconds(),
            "fetched_at": self.fetched_at.isoformat(),
            "forecast_hash": self.forecast.content_hash(),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class RunNow:
    """Start now with no forecast used; ``reason`` says why (the ledger records it)."""

    reason: str
    error: str
    kind: Literal["run_now"] = "run_now"

    def to_dict(self) -> dict[str, Any]:
        """What the ledger records about this decision."""
        return {"kind": self.kind, "reason": self.reason, "error": self.error}


@dataclass(frozen=True)
class RetryUntil:
    """Ask again at ``retry_at``; keep doing so until ``deadline``, after which the policy says run."""

    retry_at: datetime
    deadline: datetime
    reason: str
    error: str
    kind: Literal["retry"] = "retry"

    def to_dict(self) -> dict[str, Any]:
        """What the ledger records about this decision."""
        return {
            "kind": self.kind,
            "retry_at": self.retry_at.isoformat(),
            "deadline": self.deadline.isoformat(),
            "reason": self.reason,
            "error": self.error,
        }


Decision = UseForecast | RunNow | RetryUntil


@dataclass(frozen=True)
class OutagePolicy:
    """The user's rule for provider outages (see the module docstring)."""

    on_provider_error: OnProviderError = "wait"
    max_staleness: timedelta = timedelta(hours=6)
    retry_interval: timedelta = timedelta(minutes=5)

    def __post_init__(self) -> None:
        if self.on_provider_error not in ON_PROVIDER_ERROR:
            raise InvalidInput(
                f"on_provider_error={self.on_provider_error!r} is not one of {', '.join(ON_PROVIDER_ERROR)}",
                fix="use run (start now, recorded), wait (retry until the deadline, then run) or fail",
            )
        if not isinstance(self.max_staleness, timedelta) or self.max_staleness < timedelta(0):
            raise InvalidInput(
                f"max_staleness={self.max_staleness!r} is not a duration of zero or more",
                fix="give e.g. timedelta(hours=6), or timedelta(0) to never use an old forecast",
            )
        if not isinstance(self.retry_interval, timedelta) or self.retry_interval <= timedelta(0):
            raise InvalidInput(
                f"retry_interval={self.retry_interval!r} is not a positive duration",
                fix="give e.g. timedelta(minutes=5)",
            )

    def decide(
        self,
        error: ProviderError,
        last_good: CachedForecast | None,
        *,
        now: datetime | None = None,
        deadline: datetime | None = None,
        wall_ages: bool = False,
    ) -> Decision:
        """The decision after ``error``, given the last good forecast (if any).

        ``deadline`` is the latest start that still meets the task's deadline; ``wait`` retries until it
        (``None``: no later start is possible). Raises :class:`ProviderError` under ``fail``.
        ``wall_ages``: ``now`` is not the wall clock (a replayed trace's time), so a forecast's age (its
        ``fetched_at`` is wall time) is measured against the wall clock instead.
        """
        now = utcnow() if now is None else require_aware(now, "now")
        problem = error.message
        if last_good is not None:
            age = last_good.age(utcnow() if wall_ages else now)
            usable = last_good.forecast.after(now).known_points()
            if age <= self.max_staleness and usable:
                return UseForecast(
                    forecast=last_good.forecast,
                    fetched_at=last_good.fetched_at,
                    age=age,
                    stale=True,
                    reason=(
                        f"{problem}; using the last good forecast fetched {format_duration(age)} ago "
                        f"(max_staleness {format_duration(self.max_staleness)})"
                    ),
                )
            why_not = "no longer covers now" if not usable else f"is {format_duration(age)} old"
            problem += f"; the last good forecast {why_not}"
        else:
            problem += "; no earlier forecast to fall back on"

        if self.on_provider_error == "fail":
            raise ProviderError(f"{problem}; on_provider_error=fail", fix=error.fix) from error
        if self.on_provider_error == "wait":
            if not is_retryable(error):
                return RunNow(
                    reason=f"{problem}; waiting cannot fix this error, so running now without a forecast "
                    "(on_provider_error=wait)",
                    error=error.one_line(),
                )
            if deadline is not None and require_aware(deadline, "deadline") > now:
                return RetryUntil(
                    retry_at=min(now + self.retry_interval, deadline),
                    deadline=deadline,
                    reason=f"{problem}; retrying until {deadline.isoformat()} (on_provider_error=wait)",
                    error=error.one_line(),
                )
            return RunNow(
                reason=f"{problem}; the deadline to start has come, running now without a forecast "
                "(on_provider_error=wait)",
                error=error.one_line(),
            )
        return RunNow(
            reason=f"{problem}; running now without a forecast (on_provider_error=run)",
            error=error.one_line(),
        )

    def _too_old_snapshot(
        self, provider: IntensityProvider, region: str, forecast: Forecast, now: datetime | None
    ) -> ProviderUnavailable | None:
        """An outage when ``forecast`` is a replayed snapshot issued more than ``max_staleness`` before ``now``.

        A snapshot (a trace of forecasts as published, ``meta["snapshot_issued_at"]``) is as old as its issue
        time says, in the task's clock, however recently it was read: planning on one issued 31 hours ago is
        planning on a stale forecast. Retryable: a later snapshot may be issued before the latest start.
        """
        issued_text = forecast.meta.get(SNAPSHOT_ISSUED_AT)
        if not issued_text:
            return None
        moment = utcnow() if now is None else require_aware(now, "now")
        issued = parse_time(str(issued_text), SNAPSHOT_ISSUED_AT)
        age = moment - issued
        if age <= self.max_staleness:
            return None
        return ProviderUnavailable(
            f"the latest {provider.name} forecast for {region} was issued {format_duration(age)} before "
            f"{moment.isoformat()} (at {issued.isoformat()}), older than max_staleness "
            f"{format_duration(self.max_staleness)}",
            fix="replay from a moment nearer a snapshot, or raise max_staleness (the shipped GB snapshots are "
            "about 12 hours apart)",
        )

    def resolve(
        self,
        cache: ForecastCache,
        provider: IntensityProvider,
        region: str,
        *,
        start: datetime | None = None,
        hours: float = 48,
        deadline: datetime | None = None,
        now: datetime | None = None,
        wall_ages: bool = False,
    ) -> Decision:
        """Get a forecast through ``cache``; on a provider failure, apply this policy.

        Bad input (unknown region, missing configuration) is not an outage and is raised as is.
        ``wall_ages``: see :meth:`decide`.
        """
        try:
            cached = cache.get(provider, region, start=start, hours=hours)
        except ProviderError as error:
            return self.decide(
                error, cache.last_good(provider, region), now=now, deadline=deadline, wall_ages=wall_ages
            )
        too_old = self._too_old_snapshot(provider, region, cached.forecast, now)
        if too_old is not None:
            # The same snapshot is all a fallback could offer: nothing younger to fall back on.
            return self.decide(too_old, None, now=now, deadline=deadline, wall_ages=wall_ages)
        moment = utcnow() if now is None or wall_ages else require_aware(now, "now")
        return UseForecast(
            forecast=cached.forecast,
            fetched_at=cached.fetched_at,
            age=cached.age(moment),
            stale=False,
            reason=f"forecast from {provider.name} ({cached.source})",
        )
