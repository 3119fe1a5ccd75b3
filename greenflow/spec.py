"""What a carbon-aware task declares: where it may run, how long it takes, its limits and its budget.

A :class:`CarbonSpec` is validated when it is built, which in Airflow is when the DAG file is parsed:
a bad provider, region, duration or time zone fails the DAG import with a message naming the value
and the fix, instead of failing a task hours later.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Unpack

from greenflow.clock import parse_time, utcnow
from greenflow.errors import ConfigError, InvalidInput
from greenflow.options import DEFAULT_MAX_DELAY, OPTION, PROVIDER_NAMES, CarbonOptions, EntryPoint, parse_options
from greenflow.units import Quantity

if TYPE_CHECKING:  # loaded where forecasts are planned on, not by a spec that only declares (`greenflow run`)
    from greenflow.intensity.correction import CorrectionSetting
    from greenflow.intensity.policy import OnProviderError, OutagePolicy
    from greenflow.intensity.providers.base import IntensityProvider

__all__ = ["DEFAULT_MAX_DELAY", "SECRET_OPTIONS", "CarbonSpec"]
# Provider options that are credentials: kept out of every repr, log line and ledger entry.
SECRET_OPTIONS = frozenset({"token", "password", "api_key", "auth_token"})


@dataclass(frozen=True)
class CarbonSpec:
    """A carbon-aware task's declaration (all inputs validated on construction).

    ``deadline`` is the latest *finish*: an aware datetime, or a duration after the request (``"12h"``).
    ``max_delay`` bounds the *start* instead; with neither, the start may move up to 12 hours.
    ``regions`` lists more places the task could run (spatial shifting): the first of ``region`` +
    ``regions`` is the task's home, against which savings are counted. ``forecast_correction`` is
    ``"auto"`` (where the provider publishes its past forecasts), a correction mode (``"bias+carry"``) or
    ``None`` when forecasts are planned on as the provider gave them.

    ``duration_declared`` says whether ``expected_duration`` was given. :meth:`build` / :meth:`declare` set it
    ``False`` when the option was left out: ``expected_duration`` is then the 1 h fallback, and the lifecycle
    learns the attempt's duration from the task's history at its first plan (``greenflow.lifecycle``). A spec
    built directly states its duration (``True``).
    """

    region: str | None = None
    regions: tuple[str, ...] = ()
    provider: str = "ukgrid"
    provider_options: Mapping[str, Any] = field(default_factory=dict, repr=False)
    expected_duration: timedelta = timedelta(hours=1)
    deadline: datetime | timedelta | None = None
    max_delay: timedelta | None = None
    min_savings_pct: float = 0.0
    threshold: float | None = None
    budget: str | None = None
    estimate: Quantity | None = None
    on_provider_error: OnProviderError = "wait"
    max_staleness: timedelta = timedelta(hours=6)
    forecast_correction: CorrectionSetting | None = None
    pue: float | None = None
    embodied_g: float | None = None
    functional_unit: str | None = None
    functional_units: float | None = None
    tags: tuple[str, ...] = ()
    team: str | None = None
    sample_interval: float = 0.1
    interruptible: bool = False
    resume_overhead: timedelta = timedelta(minutes=5)
    min_segment: timedelta = timedelta(minutes=30)
    grace: timedelta = timedelta(minutes=2)
    duration_declared: bool = True

    def __post_init__(self) -> None:
        # The per-option rules (types, bounds) live in the options table and ran in build(); these are
        # the rules between options, and they hold for a spec built directly too.
        object.__setattr__(self, "regions", tuple(self.regions))
        object.__setattr__(self, "tags", tuple(self.tags))
        if self.provider not in PROVIDER_NAMES:
            raise InvalidInput(f"provider={self.provider!r} is unknown", fix=f"use one of {', '.join(PROVIDER_NAMES)}")
        if self.expected_duration <= timedelta(0):
            raise InvalidInput(
                f"expected_duration={self.expected_duration} is not positive",
                fix="give how long the task runs, e.g. 2h",
            )
        if isinstance(self.deadline, timedelta) and self.deadline < self.expected_duration:
            raise InvalidInput(
                f"deadline={self.deadline} after the request is shorter than "
                f"expected_duration={self.expected_duration}",
                fix="give a deadline at least as long as the task, or a shorter expected_duration",
            )
        if self.deadline is not None and self.max_delay is not None:
            raise InvalidInput(
                "both deadline and max_delay are set", fix="give one: deadline (finish) or max_delay (start)"
            )
        if self.interruptible and self.min_segment <= self.resume_overhead:
            raise InvalidInput(
                f"min_segment={self.min_segment} is not longer than resume_overhead={self.resume_overhead}: "
                "a segment that short would carry no work",
                fix="give a min_segment longer than resume_overhead (defaults: 30m and 5m)",
            )
        for name in ("on_provider_error", "max_staleness"):  # the table's rules, for a spec built directly too
            OPTION[name].parse(getattr(self, name))
        if not self.candidate_regions:
            return  # nothing to plan: no provider is needed (and `greenflow run` does not import its client)
        try:
            provider = self.make_provider()
        except ConfigError:
            # Credentials or a URL may come later from an Airflow connection or a Prefect block: a
            # missing one is a run-time matter, not a bad declaration.
            return
        for region in self.candidate_regions:
            provider.validate_region(region)  # no network: names and ids only

    @classmethod
    def build(cls, **options: Unpack[CarbonOptions]) -> CarbonSpec:
        """Build from the forms users write (``"2h"``, ``"2024-05-01T06:00Z"``, ``"20g"``, ``"0.5kWh"``).

        Every option is parsed and bounded by its row of :data:`~greenflow.options.OPTIONS` (the same
        message in every entry point); a name that is not an option is refused. This is a declaration: a
        ``deadline`` already past is refused too (:meth:`from_kwargs` rebuilds a declared spec and does not).
        """
        return cls.declare(options)

    @classmethod
    def declare(
        cls, options: Mapping[str, Any], entry_point: EntryPoint | None = None, *, now: datetime | None = None
    ) -> CarbonSpec:
        """:meth:`build` at an entry point: missing options take that entry point's defaults."""
        spec = cls(**parse_options(options, entry_point))
        spec.check_declared(now)
        return spec

    def check_declared(self, now: datetime | None = None) -> None:
        """Refuse a ``deadline`` that leaves no room to run when declared (in a replay: from the trace's now).

        Without a declared ``expected_duration`` only a deadline already past is refused: the duration is
        learned later, and a task that turns out longer than its deadline allows runs at once.
        """
        if not isinstance(self.deadline, datetime):
            return
        reference = now
        if reference is None and self.provider == "trace":
            replay_now = self.provider_options.get("now")
            reference = None if replay_now is None else parse_time(replay_now, "now")
        elif reference is None:
            reference = utcnow()
        room = self.expected_duration if self.duration_declared else timedelta(0)
        if reference is not None and self.deadline - room < reference:
            raise InvalidInput(
                f"deadline={self.deadline.isoformat()} leaves no room for expected_duration="
                f"{room} after now ({reference.isoformat()})",
                fix="give a later deadline, a duration after the request (e.g. deadline='12h'), or max_delay",
            )

    def with_duration(self, duration: timedelta) -> CarbonSpec:
        """This declaration planned with another ``expected_duration`` (a learned one); still not declared.

        Only the duration changes, so nothing is validated again (no provider is built): ``duration`` must be
        positive and, with a deadline after the request, no longer than it.
        """
        if duration <= timedelta(0) or (isinstance(self.deadline, timedelta) and duration > self.deadline):
            raise InvalidInput(
                f"expected_duration={duration} does not fit deadline={self.deadline}",
                fix="give a positive duration no longer than a deadline after the request",
            )
        spec = copy.copy(self)
        object.__setattr__(spec, "expected_duration", duration)
        object.__setattr__(spec, "duration_declared", False)
        return spec

    @property
    def candidate_regions(self) -> tuple[str, ...]:
        """Home region first, then the alternatives, without duplicates."""
        ordered = ((self.region,) if self.region else ()) + self.regions
        return tuple(dict.fromkeys(ordered))

    @property
    def outage_policy(self) -> OutagePolicy:
        """The provider-outage rule."""
        from greenflow.intensity.policy import OutagePolicy

        return OutagePolicy(self.on_provider_error, self.max_staleness)

    def make_provider(self) -> IntensityProvider:
        """A provider instance for this spec (credentials from options or the environment)."""
        from greenflow.intensity.providers.base import get_provider

        return get_provider(self.provider, **dict(self.provider_options))

    def policy_inputs(self) -> dict[str, Any]:
        """The inputs of the decision, for the ledger (credentials left out)."""
        inputs = {
            "provider": self.provider,
            "provider_options": {k: v for k, v in self.provider_options.items() if k not in SECRET_OPTIONS},
            "regions": list(self.candidate_regions),
            "expected_duration_s": self.expected_duration.total_seconds(),
            "deadline": self.deadline.isoformat() if isinstance(self.deadline, datetime) else None,
            "deadline_after_request_s": self.deadline.total_seconds() if isinstance(self.deadline, timedelta) else None,
            "max_delay_s": None if self.max_delay is None else self.max_delay.total_seconds(),
            "min_savings_pct": self.min_savings_pct,
            "threshold_g_per_kwh": self.threshold,
            "on_provider_error": self.on_provider_error,
            "max_staleness_s": self.max_staleness.total_seconds(),
            "forecast_correction": self.forecast_correction,
            "budget": self.budget,
            "estimate": None if self.estimate is None else str(self.estimate),
            "pue": self.pue,
        }
        if self.interruptible:
            inputs |= {
                "interruptible": True,
                "resume_overhead_s": self.resume_overhead.total_seconds(),
                "min_segment_s": self.min_segment.total_seconds(),
            }
        return inputs

    def to_kwargs(self) -> dict[str, Any]:
        """Primitive keyword arguments that rebuild this spec with :meth:`from_kwargs` (trigger kwargs)."""
        return {
            "region": self.region,
            "regions": list(self.regions),
            "provider": self.provider,
            "provider_options": dict(self.provider_options),
            # Left out when not declared: the rebuilt spec is not declared either (the learned duration
            # travels with the attempt's Decision, not the spec).
            "expected_duration": self.expected_duration.total_seconds() if self.duration_declared else None,
            "deadline": self.deadline.isoformat()
            if isinstance(self.deadline, datetime)
            else (None if self.deadline is None else f"{self.deadline.total_seconds()}s"),
            "max_delay": None if self.max_delay is None else self.max_delay.total_seconds(),
            "min_savings": self.min_savings_pct,
            "threshold": self.threshold,
            "budget": self.budget,
            "estimate": None if self.estimate is None else _quantity_text(self.estimate),
            "on_provider_error": self.on_provider_error,
            "max_staleness": f"{self.max_staleness.total_seconds()}s",
            "forecast_correction": self.forecast_correction or False,
            "pue": self.pue,
            "embodied": self.embodied_g,
            "functional_unit": self.functional_unit,
            "functional_units": self.functional_units,
            "tags": list(self.tags),
            "team": self.team,
            "sample_interval": self.sample_interval,
            "interruptible": self.interruptible,
            "resume_overhead": self.resume_overhead.total_seconds(),
            "min_segment": self.min_segment.total_seconds(),
            "grace": self.grace.total_seconds(),
        }

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> CarbonSpec:
        """Inverse of :meth:`to_kwargs` (a rebuild, not a declaration: a deadline may have passed since)."""
        return cls(**parse_options(kwargs))


def _quantity_text(quantity: Quantity) -> str:
    return f"{quantity.value!r}g" if quantity.unit == "gCO2e" else f"{quantity.value!r}kWh"
