"""The carbon options, declared once: name, type, default, parser, bounds, help and entry points.

:data:`OPTIONS` is the one table. Everything else is derived from it:

* :meth:`greenflow.spec.CarbonSpec.build` parses and bounds every option with the row's ``parse``, so a
  bad value is refused with the same message by every entry point;
* the Airflow operators' arguments and parse-time checks, the Prefect decorator and ``schedule_green``
  (``**options: Unpack[CarbonOptions]``), and the flags of ``greenflow run`` / ``greenflow plan`` take
  their names, defaults and help from here (tests compare each signature with the table);
* docs/configuration.md's option table is :func:`markdown_table`'s output (a test keeps them equal).

One default per option. Where an entry point must differ, the row's ``defaults`` says so and why (shown in
the docs): ``greenflow run`` and ``greenflow plan`` start at once unless given a delay, because a command
typed at a shell is expected to run now.

The :class:`CarbonOptions` TypedDict gives IDEs and mypy each keyword's type; a test keeps its keys equal
to the table's.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal, TypedDict

from greenflow import bounds
from greenflow.clock import parse_duration, parse_time
from greenflow.errors import InvalidInput
from greenflow.units import Quantity, parse_quantity

EntryPoint = Literal["airflow", "prefect", "schedule_green", "run", "plan"]
"""Where options are given: Airflow operators and ``@task.carbon_aware``; the Prefect decorator;
``schedule_green``; ``greenflow run``; ``greenflow plan``."""
ENTRY_POINTS: Final[tuple[EntryPoint, ...]] = ("airflow", "prefect", "schedule_green", "run", "plan")
_ALL: Final[frozenset[EntryPoint]] = frozenset(ENTRY_POINTS)
_PLANNERS: Final[frozenset[EntryPoint]] = _ALL  # every entry point plans
_WORKERS: Final[frozenset[EntryPoint]] = frozenset({"airflow", "prefect", "run"})  # those that run work
_BUDGETED: Final[frozenset[EntryPoint]] = frozenset({"airflow", "prefect", "schedule_green", "run"})

PROVIDER_NAMES: Final[tuple[str, ...]] = ("ukgrid", "electricitymaps", "watttime", "carbon-aware-sdk", "trace")
"""The intensity providers (``greenflow.intensity.providers.base.PROVIDERS`` registers the same names)."""
ON_PROVIDER_ERROR: Final[tuple[str, ...]] = ("run", "wait", "fail")
ON_BUDGET_EXCEEDED: Final[tuple[str, ...]] = ("skip", "fail")
CORRECTION_MODE_NAMES: Final[tuple[str, ...]] = ("bias+carry",)
DEFAULT_MAX_DELAY: Final[timedelta] = timedelta(hours=12)
"""How far the start may move when neither ``deadline`` nor ``max_delay`` is given."""
MAX_EXPECTED_DURATION: Final[timedelta] = bounds.MAX_DURATION
FALLBACK_DURATION: Final[timedelta] = timedelta(hours=1)
"""``expected_duration`` when it is not given and the task's history cannot tell (fewer than 3 attempts)."""
DEFAULT_MIN_SAVINGS: Final[float] = 5.0
"""Chosen from benchmarks/min_savings.py (persistence forecasts, four Electricity Maps zones, every zone
home): against no minimum it keeps 95 % of the time-only reduction and 99.8 % of the where-and-when one,
while the mean delay falls from 6.5 h to 4.3-4.9 h and the share of jobs that wait from ~77 % to 44-50 %."""


class PlanningOptions(TypedDict, total=False):
    """The options that decide *when* work starts (a subset of :class:`CarbonOptions`; see :data:`OPTIONS`)."""

    provider: str
    provider_options: Mapping[str, Any] | None
    expected_duration: str | timedelta | float | None
    deadline: str | datetime | timedelta | None
    max_delay: str | timedelta | float | None
    min_savings: float
    threshold: float | None
    on_provider_error: str
    max_staleness: str | timedelta
    forecast_correction: bool | str


class CarbonOptions(PlanningOptions, total=False):
    """Every carbon option of a carbon-aware task (each documented in :data:`OPTIONS`)."""

    region: str | None
    regions: Sequence[str]
    budget: str | None
    estimate: str | Quantity | None
    pue: float | None
    embodied: str | float | None
    functional_unit: str | None
    functional_units: float | None
    tags: Sequence[str]
    team: str | None
    sample_interval: float
    interruptible: bool | str
    resume_overhead: str | timedelta | float
    min_segment: str | timedelta | float
    grace: str | timedelta | float


# -- parsers: each takes what a user writes and returns the spec's value, or refuses naming the option ----
def _text(name: str, limit: int, *, optional: bool = True) -> Callable[[Any], str | None]:
    def parse(value: Any) -> str | None:
        if value is None and optional:
            return None
        text = bounds.check_text(value, name, limit=limit)
        if not text.strip() or text.strip() != text:
            raise InvalidInput(
                f"{name}={text!r} is empty or has surrounding spaces",
                fix=f"give {name} as 1-{limit} characters without surrounding spaces",
            )
        return text

    return parse


def check_budget_name(value: Any, name: str = "budget") -> str:
    """The one rule for a budget's name, here and in ``greenflow budget set``: 1-120 characters, no
    surrounding spaces, valid UTF-8 without NUL."""
    text = _text(name, bounds.BUDGET_NAME_LENGTH, optional=False)(value)
    assert text is not None
    return text


def _texts(name: str, limit: int) -> Callable[[Any], tuple[str, ...]]:
    one = _text(name, limit, optional=False)

    def parse(value: Any) -> tuple[str, ...]:
        if value is None:
            return ()
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise InvalidInput(f"{name}s={value!r} is not a list", fix=f'give a list, e.g. ["{name}-a", "{name}-b"]')
        items = tuple(str(one(item)) for item in value)
        for item in items:
            if "," in item:
                raise InvalidInput(f"{name} {item!r} contains a comma", fix=f"give one {name} per list item")
        return items

    return parse


def _choice(name: str, choices: Sequence[str], fix: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = value.strip().lower() if isinstance(value, str) else value
        if text not in choices:
            raise InvalidInput(f"{name}={value!r} is not one of {', '.join(choices)}", fix=fix)
        return str(text)

    return parse


def _number(
    name: str, *, low: float, high: float, fix: str, low_open: bool = False, optional: bool = True
) -> Callable[[Any], float | None]:
    def parse(value: Any) -> float | None:
        if value is None and optional:
            return None
        if isinstance(value, str):  # a CLI flag or a templated Airflow argument arrives as text
            try:
                value = float(value)
            except ValueError:
                raise InvalidInput(f"{name}={value!r} is not a number", fix=fix) from None
        return bounds.check_number(value, name, low=low, high=high, fix=fix, low_open=low_open)

    return parse


def _duration(name: str, *, positive: bool, optional: bool = False) -> Callable[[Any], timedelta | None]:
    def parse(value: Any) -> timedelta | None:
        if value is None and optional:
            return None
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidInput(f"{name}={value!r} is not a duration", fix="write it like 90m, 2h, 1d or PT2H")
        duration = parse_duration(value, name)
        if positive and duration <= timedelta(0):
            raise InvalidInput(f"{name}={value!r} is not positive", fix=f"give how long, e.g. {name}='2h'")
        return bounds.check_duration(duration, name)

    return parse


def _expected_duration(value: Any) -> timedelta:
    """``expected_duration``: a positive duration; ``None`` (not given) is the 1 h fallback (see parse_options)."""
    if value is None:
        return FALLBACK_DURATION
    duration = _duration("expected_duration", positive=True)(value)
    assert duration is not None
    return duration


def parse_deadline(value: Any) -> datetime | timedelta | None:
    """``deadline``: an aware time (``"2024-05-01T06:00Z"``) or a positive duration after the request."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return bounds.check_time(parse_time(value, "deadline"), "deadline")
    if isinstance(value, str) and ("T" in value or (value.strip()[:4].isdigit() and "-" in value)):
        return bounds.check_time(parse_time(value, "deadline"), "deadline")
    return _duration("deadline", positive=True)(value)


def _estimate(value: Any) -> Quantity | None:
    if value is None:
        return None
    quantity = value if isinstance(value, Quantity) else parse_quantity(value, name="estimate")
    if not math.isfinite(quantity.value) or quantity.value < 0:
        raise InvalidInput(f"estimate={value!r} is negative or not finite", fix="give e.g. 20g or 0.5kWh")
    high = bounds.MAX_GRAMS if quantity.unit == "gCO2e" else bounds.MAX_KWH
    bounds.check_number(quantity.value, "estimate", low=0, high=high, fix="give e.g. 20g or 0.5kWh")
    return quantity


def _flag(name: str) -> Callable[[Any], bool]:
    def parse(value: Any) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.strip().lower() in ("true", "yes", "on", "1")
        raise InvalidInput(f"{name}={value!r} is not true or false", fix=f"give {name}=True or {name}=False")

    return parse


def _embodied(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidInput(f"embodied={value!r} is not an amount of CO2e", fix="give e.g. 120g or 1.5kg")
    quantity = parse_quantity(value, name="embodied", default_unit="gCO2e")
    if quantity.unit != "gCO2e":
        raise InvalidInput(f"embodied={value!r} is not an amount of CO2e", fix="give e.g. 120g or 1.5kg")
    return bounds.check_number(quantity.value, "embodied", low=0, high=bounds.MAX_GRAMS, fix="give e.g. 120g or 1.5kg")


def parse_correction(value: Any) -> str | None:
    """``forecast_correction``: ``"auto"`` (the default) → ``"auto"``; ``False``/``"off"`` → ``None``;
    ``True``/``"on"``/a mode's name → that mode (corrected wherever it can be, with the reason where not)."""
    if value is None or value is False:
        return None
    if value is True:
        return CORRECTION_MODE_NAMES[0]
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("off", "false", "no", "none", ""):
            return None
        if text == "auto":
            return "auto"
        if text in ("on", "true", "yes"):
            return CORRECTION_MODE_NAMES[0]
        if text in CORRECTION_MODE_NAMES:
            return text
    raise InvalidInput(
        f"forecast_correction={value!r} is not on or off",
        fix=f"use 'auto' (the default: correct where the provider publishes its past forecasts), False (plan on "
        f"the forecast as given), True or {CORRECTION_MODE_NAMES[0]!r}",
    )


def _provider_options(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInput(f"provider_options={value!r} is not a mapping", fix='give a dict, e.g. {"speed": 60}')
    return dict(value)


def _provider(value: Any) -> str:
    text = value.strip().lower() if isinstance(value, str) else value
    if text not in PROVIDER_NAMES:
        raise InvalidInput(f"provider={value!r} is unknown", fix=f"use one of {', '.join(PROVIDER_NAMES)}")
    return str(text)


def _region(value: Any) -> str | None:
    return _text("region", bounds.ENTRY_TEXT_LIMITS["region"])(value)


# -- the table ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Option:
    """One carbon option: how users write it, what it becomes, its default and where it is taken.

    ``parse`` turns the user's form into the spec's value (``spec_field``), refusing a bad value with a message
    that names the option and the fix; it is the option's bounds check too. ``defaults`` holds an entry
    point's own default with the reason (shown in the docs); every other entry point uses ``default``.
    ``flag`` is the command-line spelling (``None``: the commands do not take it).
    """

    name: str
    type: str
    default: Any
    parse: Callable[[Any], Any]
    help: str
    spec_field: str = ""
    entry_points: frozenset[EntryPoint] = _ALL
    flag: str | None = None
    repeated: bool = False
    defaults: Mapping[EntryPoint, tuple[Any, str]] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "spec_field", self.spec_field or self.name)
        if self.flag is None and ({"run", "plan"} & self.entry_points):
            object.__setattr__(self, "flag", "--" + self.name.replace("_", "-"))

    def default_for(self, entry_point: EntryPoint | None) -> Any:
        """The default at ``entry_point`` (the table's own default where the row names no exception)."""
        if entry_point is not None and entry_point in self.defaults:
            return self.defaults[entry_point][0]
        return self.default


_RUN_AT_ONCE = "a command typed at a shell is expected to run now: it waits only when given --max-delay or --deadline"

OPTIONS: Final[tuple[Option, ...]] = (
    Option(
        "region", "str | None", None, _region,
        "The home region, in the provider's naming (`GB`, `national`, `DE`). None: runs at once, nothing to plan.",
        flag="--region", repeated=True,
    ),
    Option(
        "regions", "list[str]", (), _texts("region", bounds.ENTRY_TEXT_LIMITS["region"]),
        "More regions the work may run in (spatial shifting); savings count against the home region.",
        flag="--region", repeated=True,
    ),
    Option(
        "provider", "str", "ukgrid", _provider,
        f"The intensity provider: {', '.join(f'`{p}`' for p in PROVIDER_NAMES)}.",
    ),
    Option(
        "provider_options", "dict", None, _provider_options,
        "Provider options (a trace's `path`, `now`, `speed`; a URL). Credentials come from a connection, block "
        "or environment variable, never from here.",
        flag="--provider-option", repeated=True,
    ),
    Option(
        "expected_duration", "duration | None", None, _expected_duration,
        "How long the work runs: `90m`, `2h`, `PT2H`, a timedelta or seconds; more than 0, at most 366 days. "
        "None: learned from history (the 90th percentile of the task's last successful attempts' run time, "
        "interruptible ones' segments summed, from 3 attempts on), else 1 h; never longer than a deadline after the "
        "request. The entry's policy says which (`duration_source`).",
        flag="--expected-duration",
    ),
    Option(
        "deadline", "time | duration | None", None, parse_deadline,
        "The latest *finish*: an aware time (`2024-05-01T06:00Z`), not in the past when declared, or a duration "
        "after the request (`12h`). Give this or `max_delay`.",
    ),
    Option(
        "max_delay", "duration | None", None, _duration("max_delay", positive=False, optional=True),
        f"The latest *start* after the request, instead of `deadline`. None: "
        f"{int(DEFAULT_MAX_DELAY.total_seconds() // 3600)} hours.",
        defaults={"run": (timedelta(0), _RUN_AT_ONCE), "plan": (timedelta(0), _RUN_AT_ONCE)},
    ),
    Option(
        "min_savings", "percent", DEFAULT_MIN_SAVINGS,
        _number("min_savings", low=0, high=100, fix="give a percentage from 0 to 100", optional=False),
        "The smallest saving (percent, 0-100) over the greenest start *now* in any allowed region that is worth "
        "waiting for: below it the work starts at once there. The default 5 keeps 95-99.8 % of the reduction "
        "while jobs wait 1.6-2.2 h less (benchmarks/results/min_savings.md).",
        spec_field="min_savings_pct",
    ),
    Option(
        "threshold", "gCO2e/kWh | None", None,
        _number("threshold", low=0, high=bounds.MAX_INTENSITY, fix="give gCO2e/kWh of zero or more, e.g. 150"),
        "An intensity (gCO2e/kWh, zero or more) at or below which the work starts at once.",
    ),
    Option(
        "on_provider_error", "run | wait | fail", "wait",
        _choice(
            "on_provider_error", ON_PROVIDER_ERROR,
            "use run (start now, recorded), wait (retry until the latest start, then run) or fail",
        ),
        "When no forecast can be had: `run` (start now, recorded), `wait` (retry until the latest start, then "
        "run) or `fail` (a `failed` entry, nothing runs).",
    ),
    Option(
        "max_staleness", "duration", timedelta(hours=6), _duration("max_staleness", positive=False),
        "How old a forecast (a last good one during an outage, or a trace snapshot) may be and still be planned on.",
    ),
    Option(
        "forecast_correction", "auto | bool | str", "auto", parse_correction,
        "Correct each forecast with its own recent errors before planning. `auto`: wherever the provider "
        "publishes the forecasts it issued for past slots (ukgrid national, a trace of forecast snapshots), "
        "silent elsewhere; `True` (`bias+carry`): always try, the entry saying why where it could not; `False`: "
        "plan on the forecast as given. The entry records whether it was applied and why.",
    ),
    Option(
        "interruptible", "bool", False, _flag("interruptible"),
        "The work can pause and resume from its own checkpoint: it runs in the greenest segments before the "
        "deadline instead of in one piece (commands get SIGTERM at a segment's end; see docs/interruptible.md).",
        entry_points=_WORKERS | {"plan"},
    ),
    Option(
        "resume_overhead", "duration", timedelta(minutes=5), _duration("resume_overhead", positive=False),
        "Time lost per pause and resume (reloading a checkpoint), counted against each extra segment.",
        entry_points=_WORKERS | {"plan"},
    ),
    Option(
        "min_segment", "duration", timedelta(minutes=30), _duration("min_segment", positive=True),
        "The shortest segment an interruptible job is given.",
        entry_points=_WORKERS | {"plan"},
    ),
    Option(
        "grace", "duration", timedelta(minutes=2), _duration("grace", positive=False),
        "How long a command has after SIGTERM at a segment's end to checkpoint and exit, before SIGKILL.",
        entry_points=frozenset({"airflow", "run"}),
    ),
    Option(
        "budget", "str | None", None, lambda v: None if v is None else check_budget_name(v),
        "The carbon budget the attempt reserves its estimate against (the name rule of `greenflow budget set`).",
        entry_points=_BUDGETED,
    ),
    Option(
        "estimate", "quantity | None", None, _estimate,
        "The attempt's estimate (`20g` or `0.5kWh`). None: the median of past attempts, then a default.",
        entry_points=_BUDGETED - {"schedule_green"},
    ),
    Option(
        "on_budget_exceeded", "skip | fail", "skip",
        _choice("on_budget_exceeded", ON_BUDGET_EXCEEDED, "use skip or fail"),
        "When the budget cannot cover the estimate: `skip` (Airflow: a skipped task; Prefect: returns None; "
        "`greenflow run`: exit 3) or `fail` (a failed task / a raised BudgetExceeded). Both record `skipped_budget`.",
        entry_points=frozenset({"airflow", "prefect"}),
    ),
    Option(
        "pue", "float | None", None,
        _number("pue", low=1, high=bounds.MAX_PUE, fix=f"PUE is facility / IT energy: 1.0 to {bounds.MAX_PUE:g}"),
        "The facility's power usage effectiveness, 1.0 or more (kept apart from device energy).",
        entry_points=_WORKERS,
    ),
    Option(
        "embodied", "quantity | None", None, _embodied,
        "Embodied emissions charged to each attempt (`120g`; a number is grams).",
        spec_field="embodied_g", entry_points=_WORKERS,
    ),
    Option(
        "functional_unit", "str | None", None, _text("functional_unit", bounds.ENTRY_TEXT_LIMITS["functional_unit"]),
        "What R counts in SCI (`1k images`).",
        entry_points=_WORKERS,
    ),
    Option(
        "functional_units", "float | None", None,
        _number("functional_units", low=0, high=bounds.MAX_GRAMS, low_open=True, fix="give R (a count above 0)"),
        "How many functional units one attempt delivers (R, more than 0).",
        entry_points=_WORKERS,
    ),
    Option(
        "tags", "list[str]", (), _texts("tag", bounds.TAG_LENGTH),
        "Ledger tags (budgets can be scoped by tag).",
        flag="--tag", repeated=True, entry_points=_BUDGETED,
    ),
    Option(
        "team", "str | None", None, _text("team", bounds.ENTRY_TEXT_LIMITS["team"]),
        "The owning team, in the ledger (budgets can be scoped by team).",
        entry_points=_BUDGETED,
    ),
    Option(
        "sample_interval", "seconds", 0.1,
        _number("sample_interval", low=0.01, high=60, fix="give seconds between 0.01 and 60", optional=False),
        "Seconds between power samples while metering (0.01 to 60).",
        entry_points=_WORKERS,
    ),
)  # fmt: skip
"""Every carbon option, in the order the docs list them."""

OPTION: Final[Mapping[str, Option]] = {option.name: option for option in OPTIONS}
"""The table by option name."""
ADAPTER_OPTION_NAMES: Final[frozenset[str]] = frozenset({"on_budget_exceeded"})
"""Options an adapter acts on itself (not part of the :class:`~greenflow.spec.CarbonSpec`)."""
CARBON_OPTION_NAMES: Final[frozenset[str]] = frozenset(OPTION) - ADAPTER_OPTION_NAMES
"""Every option :meth:`~greenflow.spec.CarbonSpec.build` takes."""
PLANNING_OPTION_NAMES: Final[frozenset[str]] = frozenset(PlanningOptions.__annotations__)
"""The names of :class:`PlanningOptions`."""
CARBON_DEFAULTS: Final[Mapping[str, Any]] = {name: OPTION[name].default for name in sorted(CARBON_OPTION_NAMES)}
"""Each carbon option's default (the value a missing option takes)."""


def options_for(entry_point: EntryPoint) -> tuple[Option, ...]:
    """The options ``entry_point`` takes, in table order."""
    return tuple(option for option in OPTIONS if entry_point in option.entry_points)


def defaults_for(entry_point: EntryPoint | None) -> dict[str, Any]:
    """Every carbon option's default at ``entry_point``."""
    return {name: OPTION[name].default_for(entry_point) for name in sorted(CARBON_OPTION_NAMES)}


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


def parse_options(given: Mapping[str, Any], entry_point: EntryPoint | None = None) -> dict[str, Any]:
    """Every carbon option parsed and bounded by its row, missing ones at ``entry_point``'s default.

    Returns the values keyed by their spec field. A name that is not an option is refused first.
    ``duration_declared`` says whether ``expected_duration`` was given (not ``None``): when it was not, the
    spec's duration is the fallback (1 h, or a shorter deadline after the request), learned at the first plan.
    """
    check_option_names(given)
    values: dict[str, Any] = {}
    for name in sorted(CARBON_OPTION_NAMES):
        option = OPTION[name]
        raw = given[name] if name in given else option.default_for(entry_point)
        if name == "max_delay" and name not in given and given.get("deadline") is not None:
            raw = None  # a deadline bounds the start itself: an entry point's default delay does not apply
        values[option.spec_field] = option.parse(raw)
        if name == "expected_duration":
            values["duration_declared"] = raw is not None
    deadline = values["deadline"]
    if not values["duration_declared"] and isinstance(deadline, timedelta):
        # Not given, so it must not be what makes a short deadline invalid.
        values["expected_duration"] = min(values["expected_duration"], deadline)
    return values


def default_text(value: Any) -> str:
    """A default as the docs show it."""
    if isinstance(value, timedelta):
        seconds = int(value.total_seconds())
        if seconds == 0:
            return "`0s`"
        if seconds % 3600 == 0:
            return f"`{seconds // 3600}h`"
        return f"`{seconds // 60}m`" if seconds % 60 == 0 else f"`{seconds}s`"
    if value in (None, ()):
        return "none"
    return f"`{value!r}`" if not isinstance(value, str) else f'`"{value}"`'


_ENTRY_POINT_LABELS: Final[Mapping[EntryPoint, str]] = {
    "airflow": "Airflow",
    "prefect": "Prefect",
    "schedule_green": "schedule_green",
    "run": "run",
    "plan": "plan",
}


def markdown_table() -> str:
    """The options as docs/configuration.md lists them (generated here; a test compares the two)."""
    lines = [
        "| option | type | default | where | meaning |",
        "|---|---|---|---|---|",
    ]
    for option in OPTIONS:
        where = ", ".join(_ENTRY_POINT_LABELS[e] for e in ENTRY_POINTS if e in option.entry_points)
        if option.flag and ({"run", "plan"} & option.entry_points):
            where += f" (`{option.flag}`)"
        default = default_text(option.default)
        exceptions: dict[tuple[str, str], list[str]] = {}
        for entry_point, (value, why) in option.defaults.items():
            exceptions.setdefault((default_text(value), why), []).append(_ENTRY_POINT_LABELS[entry_point])
        for (value_text, why), labels in exceptions.items():
            default += f"; {' and '.join(labels)}: {value_text} ({why})"
        kind = option.type.replace(" | ", " or ")  # a bare | would split the Markdown cell
        lines.append(f"| `{option.name}` | {kind} | {default} | {where} | {option.help} |")
    return "\n".join(lines) + "\n"
