"""What a carbon-aware task declares: where it may run, how long it takes, its limits and its budget.

A :class:`CarbonSpec` is validated when it is built, which in Airflow is when the DAG file is parsed:
a bad provider, region, duration or time zone fails the DAG import with a message naming the value
and the fix, instead of failing a task hours later.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Unpack

from greenflow import bounds
from greenflow.clock import parse_duration, parse_time
from greenflow.errors import ConfigError, InvalidInput
from greenflow.intensity.correction import CORRECTION_MODES, CorrectionMode
from greenflow.intensity.policy import ON_PROVIDER_ERROR, OnProviderError, OutagePolicy
from greenflow.intensity.providers.base import PROVIDERS, IntensityProvider, get_provider
from greenflow.options import CARBON_DEFAULTS, CarbonOptions, check_option_names
from greenflow.units import Quantity, parse_quantity

DEFAULT_MAX_DELAY = timedelta(hours=12)
# Provider options that are credentials: kept out of every repr, log line and ledger entry.
SECRET_OPTIONS = frozenset({"token", "password", "api_key", "auth_token"})


@dataclass(frozen=True)
class CarbonSpec:
    """A carbon-aware task's declaration (all inputs validated on construction).

    ``deadline`` is the latest *finish*: an aware datetime, or a duration after the request (``"12h"``).
    ``max_delay`` bounds the *start* instead; with neither, the start may move up to 12 hours.
    ``regions`` lists more places the task could run (spatial shifting): the first of ``region`` +
    ``regions`` is the task's home, against which savings are counted. ``forecast_correction`` is the
    correction mode (``"bias+carry"``) or ``None`` when forecasts are planned on as the provider gave them.
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
    forecast_correction: CorrectionMode | None = None
    pue: float | None = None
    embodied_g: float | None = None
    functional_unit: str | None = None
    functional_units: float | None = None
    tags: tuple[str, ...] = ()
    team: str | None = None
    sample_interval: float = 0.1

    def __post_init__(self) -> None:
        if self.provider not in PROVIDERS:
            raise InvalidInput(f"provider={self.provider!r} is unknown", fix=f"use one of {', '.join(PROVIDERS)}")
        object.__setattr__(self, "regions", tuple(self.regions))
        object.__setattr__(self, "tags", tuple(self.tags))
        for tag in self.tags:
            if not tag or "," in tag:
                raise InvalidInput(f"tag {tag!r} is empty or contains a comma", fix="use short tags without commas")
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
        if self.max_delay is not None and self.max_delay < timedelta(0):
            raise InvalidInput(f"max_delay={self.max_delay} is negative", fix="give a delay of zero or more")
        if self.min_savings_pct < 0:
            raise InvalidInput(f"min_savings_pct={self.min_savings_pct} is negative", fix="give a percentage, e.g. 10")
        if self.pue is not None and self.pue < 1:
            raise InvalidInput(f"pue={self.pue} is below 1", fix="PUE is facility energy / IT energy: 1.0 or more")
        if self.functional_units is not None and self.functional_units <= 0:
            raise InvalidInput(
                f"functional_units={self.functional_units} is not positive", fix="give R, the count of functional units"
            )
        if not 0.01 <= self.sample_interval <= 60:
            raise InvalidInput(
                f"sample_interval={self.sample_interval} is out of range", fix="give seconds between 0.01 and 60"
            )
        if self.forecast_correction is not None and self.forecast_correction not in CORRECTION_MODES:
            raise InvalidInput(
                f"forecast_correction={self.forecast_correction!r} is not a correction mode",
                fix=f"use one of {', '.join(CORRECTION_MODES)}, or None for none",
            )
        self._check_bounds()
        OutagePolicy(self.on_provider_error, self.max_staleness)  # validates both
        try:
            provider = self.make_provider()
        except ConfigError:
            # Credentials or a URL may come later from an Airflow connection or a Prefect block: a
            # missing one is a run-time matter, not a bad declaration.
            return
        for region in self.candidate_regions:
            provider.validate_region(region)  # no network: names and ids only

    def _check_bounds(self) -> None:
        """Every value within what the ledger holds (see :mod:`greenflow.bounds`), before anything runs."""
        text_limits = {"region": bounds.ENTRY_TEXT_LIMITS["region"], "budget": bounds.BUDGET_NAME_LENGTH}
        text_limits |= {
            "team": bounds.ENTRY_TEXT_LIMITS["team"],
            "functional_unit": bounds.ENTRY_TEXT_LIMITS["functional_unit"],
        }
        for name, limit in text_limits.items():
            if (value := getattr(self, name)) is not None:
                bounds.check_text(value, name, limit=limit)
        for region in self.regions:
            bounds.check_text(region, "region", limit=bounds.ENTRY_TEXT_LIMITS["region"])
        for tag in self.tags:
            bounds.check_text(tag, "tag", limit=bounds.TAG_LENGTH)
        for name in ("expected_duration", "max_delay", "max_staleness"):
            if (duration := getattr(self, name)) is not None:
                bounds.check_duration(duration, name)
        if isinstance(self.deadline, timedelta):
            bounds.check_duration(self.deadline, "deadline")
        elif isinstance(self.deadline, datetime):
            bounds.check_time(self.deadline, "deadline")
        bounds.check_number(self.min_savings_pct, "min_savings", low=0, high=100, fix="give a percentage from 0 to 100")
        if self.threshold is not None:
            bounds.check_number(
                self.threshold, "threshold", low=0, high=bounds.MAX_INTENSITY, fix="give gCO2e/kWh, e.g. 150"
            )
        if self.pue is not None:
            bounds.check_number(
                self.pue,
                "pue",
                low=1,
                high=bounds.MAX_PUE,
                fix=f"PUE is facility energy / IT energy: from 1.0 to {bounds.MAX_PUE:g}",
            )
        if self.embodied_g is not None:
            bounds.check_number(
                self.embodied_g, "embodied", low=0, high=bounds.MAX_GRAMS, fix="give e.g. 120g or 1.5kg"
            )
        if self.functional_units is not None:
            bounds.check_number(
                self.functional_units,
                "functional_units",
                low=0,
                high=bounds.MAX_GRAMS,
                low_open=True,
                fix="give R, the count of functional units",
            )
        bounds.check_number(
            self.sample_interval, "sample_interval", low=0.01, high=60, fix="give seconds between 0.01 and 60"
        )

    @classmethod
    def build(cls, **options: Unpack[CarbonOptions]) -> CarbonSpec:
        """Build from the forms users write (``"2h"``, ``"2024-05-01T06:00Z"``, ``"20g"``, ``"0.5kWh"``).

        Takes the carbon options of :class:`~greenflow.options.CarbonOptions` (each documented there,
        defaults in :data:`~greenflow.options.CARBON_DEFAULTS`); a name that is not an option is refused.
        """
        check_option_names(options)
        given: dict[str, Any] = {**CARBON_DEFAULTS, **options}
        on_provider_error = given["on_provider_error"]
        if on_provider_error not in ON_PROVIDER_ERROR:
            raise InvalidInput(
                f"on_provider_error={on_provider_error!r} is not one of {', '.join(ON_PROVIDER_ERROR)}",
                fix="use run (start now, recorded), wait (retry until the deadline, then run) or fail",
            )
        max_delay, estimate, embodied = given["max_delay"], given["estimate"], given["embodied"]
        return cls(
            region=given["region"],
            regions=tuple(given["regions"]),
            provider=given["provider"],
            provider_options=dict(given["provider_options"] or {}),
            expected_duration=parse_duration(given["expected_duration"], "expected_duration"),
            deadline=_deadline(given["deadline"]),
            max_delay=None if max_delay is None else parse_duration(max_delay, "max_delay"),
            min_savings_pct=float(given["min_savings"]),
            threshold=given["threshold"],
            budget=given["budget"],
            estimate=None if estimate is None else _estimate(estimate),
            on_provider_error=on_provider_error,
            max_staleness=parse_duration(given["max_staleness"], "max_staleness"),
            forecast_correction=_correction_mode(given["forecast_correction"]),
            pue=given["pue"],
            embodied_g=None if embodied is None else _grams(embodied, "embodied"),
            functional_unit=given["functional_unit"],
            functional_units=given["functional_units"],
            tags=tuple(given["tags"]),
            team=given["team"],
            sample_interval=given["sample_interval"],
        )

    @property
    def candidate_regions(self) -> tuple[str, ...]:
        """Home region first, then the alternatives, without duplicates."""
        ordered = ((self.region,) if self.region else ()) + self.regions
        return tuple(dict.fromkeys(ordered))

    @property
    def outage_policy(self) -> OutagePolicy:
        """The provider-outage rule."""
        return OutagePolicy(self.on_provider_error, self.max_staleness)

    def make_provider(self) -> IntensityProvider:
        """A provider instance for this spec (credentials from options or the environment)."""
        return get_provider(self.provider, **dict(self.provider_options))

    def policy_inputs(self) -> dict[str, Any]:
        """The inputs of the decision, for the ledger (credentials left out)."""
        return {
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

    def to_kwargs(self) -> dict[str, Any]:
        """Primitive keyword arguments that rebuild this spec with :meth:`from_kwargs` (trigger kwargs)."""
        return {
            "region": self.region,
            "regions": list(self.regions),
            "provider": self.provider,
            "provider_options": dict(self.provider_options),
            "expected_duration": self.expected_duration.total_seconds(),
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
        }

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> CarbonSpec:
        """Inverse of :meth:`to_kwargs`."""
        return cls.build(**kwargs)


def _deadline(value: str | datetime | timedelta | None) -> datetime | timedelta | None:
    if value is None or isinstance(value, (datetime, timedelta)):
        return parse_time(value, "deadline") if isinstance(value, datetime) else value
    text = value.strip()
    if "T" in text or (text[:4].isdigit() and "-" in text):
        return parse_time(text, "deadline")
    return parse_duration(text, "deadline")


def _correction_mode(value: bool | str | None) -> CorrectionMode | None:
    """``False``/``None``/``"off"`` -> ``None``; ``True`` or a mode's name -> that mode."""
    if value is None or value is False:
        return None
    if value is True:
        return CORRECTION_MODES[0]
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("off", "false", "no", "none", ""):
            return None
        if text in ("on", "true", "yes"):
            return CORRECTION_MODES[0]
        for mode in CORRECTION_MODES:
            if text == mode:
                return mode
    raise InvalidInput(
        f"forecast_correction={value!r} is not on or off",
        fix=f"use False (plan on the forecast as given), True or {CORRECTION_MODES[0]!r}",
    )


def _estimate(value: str | Quantity) -> Quantity:
    quantity = value if isinstance(value, Quantity) else parse_quantity(value, name="estimate")
    if quantity.value < 0:
        raise InvalidInput(f"estimate={value!r} is negative", fix="give e.g. 20g or 0.5kWh")
    return quantity


def _grams(value: str | float, name: str) -> float:
    quantity = parse_quantity(value, name=name, default_unit="gCO2e")
    if quantity.unit != "gCO2e" or quantity.value < 0:
        raise InvalidInput(f"{name}={value!r} is not an amount of CO2e", fix="give e.g. 120g or 1.5kg")
    return quantity.value


def _quantity_text(quantity: Quantity) -> str:
    return f"{quantity.value!r}g" if quantity.unit == "gCO2e" else f"{quantity.value!r}kWh"
