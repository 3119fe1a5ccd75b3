"""The carbon options, written once: their names, types, defaults and meaning.

Every carbon-aware entry point takes the same options: :meth:`greenflow.spec.CarbonSpec.build`, the
Prefect decorator ``@carbon_aware`` and :func:`~greenflow.prefect.deferral.schedule_green` (its planning
subset, :class:`PlanningOptions`) take them as ``**options: Unpack[CarbonOptions]``, so IDEs and mypy
see each keyword with its type. Airflow's operators list them as explicit parameters instead: Airflow
fills ``default_args`` only into the parameters named in an operator's ``__init__`` signature.

A missing option takes its default from :data:`CARBON_DEFAULTS`; validation happens in
:meth:`~greenflow.spec.CarbonSpec.build`, which also refuses names that are not options.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final, TypedDict

from greenflow.errors import InvalidInput
from greenflow.units import Quantity


class PlanningOptions(TypedDict, total=False):
    """The options that decide *when* work starts (a subset of :class:`CarbonOptions`)."""

    provider: str
    """The intensity provider: ``ukgrid``, ``electricitymaps``, ``watttime``, ``carbon-aware-sdk`` or ``trace``.
    Default ``"ukgrid"``."""
    provider_options: Mapping[str, Any] | None
    """Provider options (a trace replay's ``now``/``speed``, a URL; credentials only where the adapter
    allows them). Default none."""
    expected_duration: str | timedelta | float
    """How long the work runs: ``"2h"``, a timedelta or seconds. Default 1 hour."""
    deadline: str | datetime | timedelta | None
    """The latest *finish*: an aware datetime (``"2024-05-01T06:00Z"``) or a duration after the request
    (``"12h"``). Default none."""
    max_delay: str | timedelta | float | None
    """The latest *start* after the request, instead of ``deadline``. Default none: 12 hours."""
    min_savings: float
    """The smallest saving (percent) worth waiting for. Default 0."""
    threshold: float | None
    """An intensity (gCO2e/kWh) at or below which the work starts at once. Default none."""
    on_provider_error: str
    """When no forecast can be had: ``run`` (start now, recorded), ``wait`` (retry until the latest start,
    then run) or ``fail``. Default ``"wait"``."""
    max_staleness: str | timedelta
    """How old a last good forecast may be during a provider outage. Default 6 hours."""
    forecast_correction: bool | str
    """Correct each forecast with its own recent errors before planning: ``True`` or ``"bias+carry"`` (a
    per-slot-of-day bias from the last 7 days of (forecast, actual) pairs, plus the latest error carried
    forward). Needs a provider that serves the forecasts it issued for past slots (``ukgrid`` national, a
    trace of forecast snapshots); where there are no such pairs the forecast is used as it is and the
    decision says why. The ledger keeps the raw forecast and the correction's parameters. Default
    ``False``."""


class CarbonOptions(PlanningOptions, total=False):
    """Every carbon option of a carbon-aware task: where, when, its budget and its accounting."""

    region: str | None
    """The home region (provider's naming: ``GB``, ``national``, ``DE``). Default none: runs at once."""
    regions: Sequence[str]
    """More regions the work may run in (spatial shifting); home is counted first. Default none."""
    budget: str | None
    """The carbon budget the attempt reserves its estimate against. Default none."""
    estimate: str | Quantity | None
    """The attempt's estimate (``"20g"`` or ``"0.5kWh"``). Default: from history, then a default."""
    pue: float | None
    """The facility's power usage effectiveness (kept apart from device energy). Default none."""
    embodied: str | float | None
    """Embodied emissions charged to each attempt (``"120g"``; a number is grams). Default none."""
    functional_unit: str | None
    """What R counts in SCI (``"1k images"``). Default none."""
    functional_units: float | None
    """How many functional units one attempt delivers (R). Default none."""
    tags: Sequence[str]
    """Ledger tags (budgets can be scoped by tag). Default none."""
    team: str | None
    """The owning team, in the ledger. Default none."""
    sample_interval: float
    """Seconds between power samples while metering (0.01 to 60). Default 0.1."""


CARBON_DEFAULTS: Final[Mapping[str, Any]] = {
    "region": None,
    "regions": (),
    "provider": "ukgrid",
    "provider_options": None,
    "expected_duration": timedelta(hours=1),
    "deadline": None,
    "max_delay": None,
    "min_savings": 0.0,
    "threshold": None,
    "budget": None,
    "estimate": None,
    "on_provider_error": "wait",
    "max_staleness": timedelta(hours=6),
    "forecast_correction": False,
    "pue": None,
    "embodied": None,
    "functional_unit": None,
    "functional_units": None,
    "tags": (),
    "team": None,
    "sample_interval": 0.1,
}
"""Each carbon option's default (the value a missing option takes)."""

CARBON_OPTION_NAMES: Final[frozenset[str]] = frozenset(CarbonOptions.__annotations__) | frozenset(
    PlanningOptions.__annotations__
)
"""Every carbon option's name."""
PLANNING_OPTION_NAMES: Final[frozenset[str]] = frozenset(PlanningOptions.__annotations__)
"""The names of :class:`PlanningOptions`."""


def check_option_names(given: Mapping[str, Any], allowed: frozenset[str] = CARBON_OPTION_NAMES) -> None:
    """Refuse a name that is not an option (a typo would otherwise be ignored), suggesting the closest."""
    unknown = sorted(set(given) - allowed)
    if not unknown:
        return
    name = unknown[0]
    close = difflib.get_close_matches(name, sorted(allowed), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise InvalidInput(
        f"{name!r} is not a carbon option" + (f" (nor are {unknown[1:]})" if len(unknown) > 1 else ""),
        fix=f"{hint}the options are {', '.join(sorted(allowed))}",
    )
