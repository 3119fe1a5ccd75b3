"""``greenflow plan``: when (and where) a job of a given duration should start to emit least.

Fetches a forecast for every ``--region`` from one provider, runs :func:`greenflow.planning.plan` and
prints the decision, or with ``--json`` the documented shape::

    {"decision": "run_now" | "defer", "region", "start", "end", "expected_gco2_per_kwh",
     "now_gco2_per_kwh", "savings_pct", "deferred_seconds", "provider"}

(plus ``attribution`` when the data's licence asks for one, as replayed traces do, and with
``--forecast-correction`` a ``forecast_correction`` object: ``{"mode", "regions": {region: {"applied",
"reason", "parameters"}}}``, the record the lifecycle keeps in the ledger). ``--now`` replays history with
the ``trace`` provider: the points after that time are the forecast.

``--forecast-correction`` corrects each region's forecast with its recent errors before planning, with
the core's correction (:func:`greenflow.intensity.correction.correct`) over the same past window the
lifecycle uses; the times and intensities shown are then the corrected forecast's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from greenflow.cli.output import fail, print_json, print_table
from greenflow.clock import parse_duration, parse_time, utcnow
from greenflow.errors import GreenflowError, InvalidInput
from greenflow.intensity.cache import ForecastCache
from greenflow.intensity.correction import CORRECTION_MODES, CorrectionResult, correct_from_provider
from greenflow.intensity.forecast import Forecast
from greenflow.intensity.providers.base import PROVIDERS, IntensityProvider, get_provider
from greenflow.planning import Candidate, Plan, plan

_JSON_KEYS = (
    "decision",
    "region",
    "start",
    "end",
    "expected_gco2_per_kwh",
    "now_gco2_per_kwh",
    "savings_pct",
    "deferred_seconds",
    "provider",
)


def plan_command(
    provider: Annotated[str | None, typer.Option("--provider", help=f"One of: {', '.join(PROVIDERS)}.")] = None,
    region: Annotated[
        list[str] | None,
        typer.Option(
            "--region",
            help="Region as the provider names it; repeat to let the job move (the first is its home).",
        ),
    ] = None,
    duration: Annotated[str | None, typer.Option("--duration", help="Expected run time: 90m, 2h, 1d or PT2H.")] = None,
    deadline: Annotated[str | None, typer.Option("--deadline", help="Latest finish, ISO 8601 with a zone.")] = None,
    max_delay: Annotated[
        str | None, typer.Option("--max-delay", help="Latest start after the earliest start, e.g. 12h.")
    ] = None,
    earliest: Annotated[
        str | None, typer.Option("--earliest", help="Earliest start (default: now), ISO 8601 with a zone.")
    ] = None,
    min_savings: Annotated[
        float, typer.Option("--min-savings", help="Run now unless waiting saves at least this many percent.")
    ] = 0.0,
    threshold: Annotated[
        float | None,
        typer.Option("--threshold", help="Start as soon as the run's mean intensity is at or below this gCO2e/kWh."),
    ] = None,
    now: Annotated[
        str | None, typer.Option("--now", help="Replay time for the trace provider, ISO 8601 with a zone.")
    ] = None,
    trace: Annotated[
        Path | None, typer.Option("--trace", help="CSV trace to replay (implies --provider trace).")
    ] = None,
    column: Annotated[
        str | None, typer.Option("--column", help="Value column of the trace when it has several.")
    ] = None,
    forecast_correction: Annotated[
        bool,
        typer.Option(
            "--forecast-correction",
            help="Correct each forecast with its recent errors before planning (bias by slot of day + the latest "
            "error carried forward); the output says per region whether it was applied and why not.",
        ),
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Plan the lowest-carbon start for a job before its deadline."""
    try:
        outcome = _plan(
            provider,
            region or [],
            duration,
            deadline,
            max_delay,
            earliest,
            min_savings,
            threshold,
            now,
            trace,
            column,
            forecast_correction,
        )
    except GreenflowError as error:
        fail(error)
    if json_output:
        print_json(plan_json(outcome.plan, outcome.attribution, outcome.corrections))
    else:
        _print(outcome)


@dataclass(frozen=True)
class PlanOutcome:
    """What ``greenflow plan`` found: the plan, the data's credit, and each region's forecast correction.

    ``corrections`` is ``None`` unless ``--forecast-correction`` was given; then it maps every region to
    its :class:`~greenflow.intensity.correction.CorrectionResult` (applied, or why not), in the order given.
    """

    plan: Plan
    attribution: str | None = None
    corrections: dict[str, CorrectionResult] | None = None


def plan_json(
    result: Plan, attribution: str | None = None, corrections: dict[str, CorrectionResult] | None = None
) -> dict[str, Any]:
    """The documented ``--json`` shape, plus ``attribution`` and ``forecast_correction`` when they apply.

    ``attribution`` appears when the data's licence requires one; ``forecast_correction`` when a
    correction was asked for, shaped as the lifecycle's record of it in the ledger.
    """
    full = result.to_dict()
    payload = {key: full[key] for key in _JSON_KEYS}
    if attribution:
        payload["attribution"] = attribution
    if corrections is not None:
        payload["forecast_correction"] = {
            "mode": CORRECTION_MODES[0],
            "regions": {region: corrected.to_dict() for region, corrected in corrections.items()},
        }
    return payload


def _plan(
    provider: str | None,
    regions: list[str],
    duration_text: str | None,
    deadline_text: str | None,
    max_delay_text: str | None,
    earliest_text: str | None,
    min_savings: float,
    threshold: float | None,
    now_text: str | None,
    trace: Path | None,
    column: str | None,
    forecast_correction: bool = False,
) -> PlanOutcome:
    name = (provider or ("trace" if trace is not None else "")).strip().lower()
    if not name:
        raise InvalidInput("--provider is missing", fix=f"give --provider, one of: {', '.join(PROVIDERS)}")
    if duration_text is None:
        raise InvalidInput("--duration is missing", fix="give the job's expected run time, e.g. --duration 2h")
    duration = parse_duration(duration_text, "--duration")
    if duration <= timedelta(0):
        raise InvalidInput(f"--duration={duration_text!r} is not positive", fix="give e.g. --duration 2h")
    if (deadline_text is None) == (max_delay_text is None):
        raise InvalidInput(
            "give exactly one of --deadline and --max-delay"
            + (" (both were given)" if deadline_text is not None else " (neither was given)"),
            fix="--deadline is the latest finish (e.g. 2024-05-02T06:00Z); --max-delay bounds the start (e.g. 12h)",
        )
    deadline = None if deadline_text is None else parse_time(deadline_text, "--deadline")
    max_delay = None if max_delay_text is None else parse_duration(max_delay_text, "--max-delay")
    earliest = None if earliest_text is None else parse_time(earliest_text, "--earliest")
    if not math.isfinite(min_savings) or min_savings < 0:
        raise InvalidInput(f"--min-savings={min_savings!r} is not a percentage of zero or more", fix="e.g. 10")

    options: dict[str, Any] = {}
    if name == "trace":
        if trace is not None:
            options["path"] = trace
        if column is not None:
            options["column"] = column
        if now_text is not None:
            options["now"] = parse_time(now_text, "--now")
        if not regions and trace is not None:
            regions = [trace.stem]
    else:
        used = [flag for flag, value in (("--trace", trace), ("--column", column), ("--now", now_text)) if value]
        if used:
            raise InvalidInput(
                f"{', '.join(used)} given with --provider {name}",
                fix="--trace, --column and --now replay an offline trace: use --provider trace",
            )
    if not regions:
        raise InvalidInput(f"--region is missing for --provider {name}", fix="give --region, e.g. --region ES")
    source = get_provider(name, **options)
    labels = [source.validate_region(label) for label in regions]

    moment = parse_time(now_text, "--now") if now_text is not None else utcnow()
    first = max(moment, earliest) if earliest is not None else moment
    # Ask for the forecast up to the latest possible finish; the planner checks the limits themselves.
    finish = deadline if deadline is not None else (earliest or moment) + (max_delay or timedelta(0)) + duration
    hours = max((finish - moment).total_seconds() / 3600, duration.total_seconds() / 3600, 1 / 60)
    forecasts = [_forecast(source, label, moment, hours, first, finish) for label in labels]
    corrections = None
    if forecast_correction:
        cache = ForecastCache()  # one process, one plan: the cache only shares the two past fetches per region
        corrections = {
            label: correct_from_provider(source, cache, label, forecast, moment)
            for label, forecast in zip(labels, forecasts, strict=True)
        }
    planned = forecasts if corrections is None else [corrections[label].forecast for label in labels]
    result = plan(
        [Candidate(label, forecast) for label, forecast in zip(labels, planned, strict=True)],
        duration=duration,
        earliest=earliest,
        deadline=deadline,
        max_delay=max_delay,
        min_savings_pct=min_savings,
        threshold=threshold,
        now=moment,
    )
    # Every forecast that informed the decision is credited, not only the chosen region's.
    credits = [f.meta.get("attribution") for f in forecasts]
    unique = list(dict.fromkeys(c for c in credits if isinstance(c, str) and c))
    return PlanOutcome(result, "; ".join(unique) or None, corrections)


def _forecast(
    source: IntensityProvider, region: str, moment: datetime, hours: float, first: datetime, finish: datetime
) -> Forecast:
    # A deadline before now is the planner's to reject with its clear message, not the provider's.
    if finish <= first:
        return Forecast(region=region, provider=source.name, signal=source.signal, generated_at=moment, points=())
    return source.forecast(region, start=moment, hours=hours)


def _print(outcome: PlanOutcome) -> None:
    result = outcome.plan
    expected = "unknown" if result.expected_intensity is None else f"{result.expected_intensity:.1f}"
    now = "unknown" if result.now_intensity is None else f"{result.now_intensity:.1f}"
    saving = "" if result.savings_pct is None else f", {result.savings_pct:.1f} % lower"
    typer.echo(
        f"{result.decision}: start {_iso(result.start)} in {result.region}, finish {_iso(result.end)}; "
        f"expected {expected} gCO2e/kWh vs {now} starting now{saving}"
    )
    typer.echo(result.reason)
    if len(result.alternatives) > 1:
        rows = [
            [
                option.region,
                _iso(option.start),
                None if option.expected_intensity is None else f"{option.expected_intensity:.1f}",
                None if option.now_intensity is None else f"{option.now_intensity:.1f}",
            ]
            for option in result.alternatives
        ]
        print_table("regions", ["region", "best start", "expected gCO2e/kWh", "now gCO2e/kWh"], rows)
    for region, corrected in (outcome.corrections or {}).items():
        # The reason alone says both: "corrected (bias+carry): ..." or "forecast correction not applied: ...".
        typer.echo(f"{region}: {corrected.reason}")
    if outcome.attribution:
        typer.echo(f"Data: {outcome.attribution}")


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
