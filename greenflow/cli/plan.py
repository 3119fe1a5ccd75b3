"""``greenflow plan``: when (and where) a job of a given duration should start to emit least.

The same declaration and lifecycle as every entry point: the flags are the options table's
(:mod:`greenflow.options`, with its defaults for ``plan``), the spec is :meth:`CarbonSpec.declare`'d and
:meth:`Lifecycle.advance` plans it without reserving, so the outage policy (``--on-provider-error``,
``--max-staleness``) applies as it would to a run. Nothing is written to the ledger. Prints the decision,
or with ``--json`` the documented shape::

    {"decision": "run_now" | "defer" | "retry", "region", "start", "end", "expected_gco2_per_kwh",
     "now_gco2_per_kwh", "savings_pct", "deferred_seconds", "provider"}

(plus ``attribution`` when the data's licence asks for one, as replayed traces do, and when the forecast
was corrected or a correction asked for (the table's default ``auto`` corrects where the provider
publishes its past forecasts; ``--forecast-correction`` always tries; ``--no-forecast-correction`` never)
a ``forecast_correction`` object: ``{"mode", "regions": {region: {"applied", "reason", "parameters"}}}``,
the record the lifecycle keeps in the ledger). ``retry`` is the outage policy's
answer when no forecast can be had (``--on-provider-error wait``): a run would ask again at ``start``, until
its latest start; the intensities are then ``null``. ``--now`` replays history with the ``trace``
provider: the points after that time are the forecast. ``--deadline`` is a time or a duration after the
request; ``--max-delay`` counts from now, or from ``--earliest``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from greenflow.cli.flags import given_options, with_option_flags
from greenflow.cli.output import handle_errors, print_json, print_table
from greenflow.clock import parse_time
from greenflow.errors import InvalidInput
from greenflow.intensity.cache import CachedForecast, ForecastCache
from greenflow.ledger.entry import Identity
from greenflow.lifecycle import Decision, Lifecycle
from greenflow.spec import CarbonSpec
from greenflow.steps import Fail

if TYPE_CHECKING:
    from greenflow.intensity.providers.base import IntensityProvider

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
# Who a plan is in the lifecycle's terms: nothing is recorded under it (the lifecycle writes nothing here).
_PLAN_IDENTITY = Identity("cli", "plan", "plan", "plan")


@handle_errors
@with_option_flags("plan", aliases={"expected_duration": ("--duration",)})
def plan_command(
    earliest: str | None = typer.Option(
        None, "--earliest", help="Earliest start (default: now), ISO 8601 with a zone; --max-delay counts from it."
    ),
    now: str | None = typer.Option(None, "--now", help="Replay time for the trace provider, ISO 8601 with a zone."),
    trace: Path | None = typer.Option(None, "--trace", help="CSV trace to replay (implies --provider trace)."),
    column: str | None = typer.Option(None, "--column", help="Value column of the trace when it has several."),
    actuals: Path | None = typer.Option(
        None,
        "--actuals",
        help="CSV of the actual intensities beside a --trace of your own forecast snapshots: the forecast "
        "correction (on by default) learns the snapshots' past errors from it.",
    ),
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
    **options: Any,
) -> None:
    """Plan the lowest-carbon start for a job before its deadline (nothing is written to the ledger).

    The carbon flags are the options table's (greenflow.options), with its defaults for `greenflow plan`;
    --duration is kept as another name for --expected-duration.
    """
    outcome = plan_from(
        given_options(options, "plan"), earliest=earliest, now=now, trace=trace, column=column, actuals=actuals
    )
    if json_output:
        print_json(outcome.to_json())
    else:
        _print(outcome)


@dataclass(frozen=True)
class PlanOutcome:
    """What ``greenflow plan`` found: the lifecycle's decision, the job's duration and the data's credit.

    ``corrections`` is ``None`` unless ``--forecast-correction`` was given; then it is the lifecycle's record
    of it (``{"mode", "regions": {region: {"applied", "reason", ...}}}``), regions in the order given.
    """

    decision: Decision
    duration: timedelta
    provider: str
    attribution: str | None = None
    corrections: dict[str, Any] | None = None
    alternatives: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The documented ``--json`` shape, plus ``attribution`` and ``forecast_correction`` when they apply."""
        decision = self.decision
        if decision.plan is not None and decision.action != "retry":
            payload = {key: decision.plan[key] for key in _JSON_KEYS}
            payload["decision"] = decision.action  # the lifecycle's: "run_now" once the latest start has passed
        else:  # no forecast: the outage policy's answer, with nothing to compare
            payload = {
                "decision": decision.action,
                "region": decision.region,
                "start": _iso(decision.start_at),
                "end": _iso(decision.start_at + self.duration),
                "expected_gco2_per_kwh": None,
                "now_gco2_per_kwh": None,
                "savings_pct": None,
                "deferred_seconds": decision.deferred_seconds,
                "provider": self.provider,
            }
        if self.attribution:
            payload["attribution"] = self.attribution
        if self.corrections is not None:
            payload["forecast_correction"] = self.corrections
        return payload


def plan_from(
    given: dict[str, Any],
    *,
    earliest: str | None = None,
    now: str | None = None,
    trace: Path | None = None,
    column: str | None = None,
    actuals: Path | None = None,
) -> PlanOutcome:
    """Declare the options at ``plan`` and let the lifecycle plan them (no reservation, no ledger)."""
    replay = {"path": trace, "column": column, "now": now, "actuals": actuals}
    if trace is not None:
        given.setdefault("provider", "trace")
    provider = str(given.get("provider", "")).strip().lower()
    if provider != "trace":
        used = [f"--{name}" for name, value in replay.items() if value is not None]
        if used:
            raise InvalidInput(
                f"{', '.join(used)} given with --provider {provider}",
                fix="--trace, --column, --actuals and --now replay an offline trace: use --provider trace",
            )
    else:
        given["provider_options"] = {
            **given.get("provider_options", {}),
            **{name: value for name, value in replay.items() if value is not None},
        }
        if "region" not in given and trace is not None:
            given["region"] = trace.stem  # a file of one region: its name labels it
    if "region" not in given:
        raise InvalidInput(f"--region is missing for --provider {provider}", fix="give --region, e.g. --region ES")
    spec = CarbonSpec.declare(given, "plan")
    cache = _CreditingCache()  # one process, one plan: nothing shared, nothing written
    lifecycle = Lifecycle(spec, _PLAN_IDENTITY, cache=cache, record_failures=False)
    first = None
    if earliest is not None:
        first = lifecycle.plan(requested_at=parse_time(earliest, "--earliest"))
    step = lifecycle.advance(first, reserve=False)
    if isinstance(step, Fail):
        raise step.error  # no forecast and --on-provider-error fail
    decision = step.decision
    alternatives = list((decision.plan or {}).get("alternatives", []))
    credits = [cache.credits.get(region) for region in spec.candidate_regions]
    unique = list(dict.fromkeys(c for c in credits if c))
    return PlanOutcome(
        decision=decision,
        duration=spec.expected_duration,
        provider=lifecycle.provider.name,
        attribution="; ".join(unique) or None,
        corrections=decision.correction,
        alternatives=alternatives,
    )


class _CreditingCache(ForecastCache):
    """An in-memory cache that keeps each region's data credit: every forecast that informed the plan
    is credited, not only the chosen region's."""

    def __init__(self) -> None:
        super().__init__()
        self.credits: dict[str, str] = {}

    def get(
        self, provider: IntensityProvider, region: str, *, start: datetime | None = None, hours: float = 48
    ) -> CachedForecast:
        """:meth:`ForecastCache.get`, noting the forecast's attribution."""
        cached = super().get(provider, region, start=start, hours=hours)
        credit = cached.forecast.meta.get("attribution")
        if isinstance(credit, str) and credit:
            self.credits[region] = credit
        return cached


def _print(outcome: PlanOutcome) -> None:
    payload = outcome.to_json()
    expected = _number(payload["expected_gco2_per_kwh"])
    now = _number(payload["now_gco2_per_kwh"])
    saving = "" if payload["savings_pct"] is None else f", {payload['savings_pct']:.1f} % lower"
    typer.echo(
        f"{payload['decision']}: start {payload['start']} in {payload['region']}, finish {payload['end']}; "
        f"expected {expected} gCO2e/kWh vs {now} starting now{saving}"
    )
    typer.echo(outcome.decision.reason)
    if len(outcome.alternatives) > 1:
        rows = [
            [
                option["region"],
                option["start"],
                None if option["expected_gco2_per_kwh"] is None else f"{option['expected_gco2_per_kwh']:.1f}",
                None if option["now_gco2_per_kwh"] is None else f"{option['now_gco2_per_kwh']:.1f}",
            ]
            for option in outcome.alternatives
        ]
        print_table("regions", ["region", "best start", "expected gCO2e/kWh", "now gCO2e/kWh"], rows)
    for region, corrected in ((outcome.corrections or {}).get("regions") or {}).items():
        # The reason alone says both: "corrected (bias+carry): ..." or "forecast correction not applied: ...".
        typer.echo(f"{region}: {corrected['reason']}")
    if outcome.attribution:
        typer.echo(f"Data: {outcome.attribution}")


def _number(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.1f}"


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
