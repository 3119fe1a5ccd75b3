"""``greenflow forecast``: print a provider's carbon-intensity forecast as a table or JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from greenflow.cli.output import fail, print_json, print_table
from greenflow.clock import parse_time
from greenflow.errors import GreenflowError, InvalidInput
from greenflow.intensity.forecast import Forecast
from greenflow.intensity.providers.base import PROVIDERS, get_provider

_TRACE_ONLY = "--trace, --column and --now replay an offline trace"


def forecast(
    provider: Annotated[str | None, typer.Option("--provider", help=f"One of: {', '.join(PROVIDERS)}.")] = None,
    region: Annotated[
        str | None,
        typer.Option("--region", help="Zone/region/location as the provider names it (trace: ES, GB... or a label)."),
    ] = None,
    hours: Annotated[float, typer.Option("--hours", help="How far ahead, in hours.")] = 48.0,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    trace: Annotated[
        Path | None, typer.Option("--trace", help="CSV trace to replay (implies --provider trace).")
    ] = None,
    column: Annotated[
        str | None, typer.Option("--column", help="Value column of the trace when it has several.")
    ] = None,
    now: Annotated[str | None, typer.Option("--now", help="Replay time for the trace, ISO 8601 with a zone.")] = None,
) -> None:
    """Show the carbon-intensity forecast for a region (gCO2e/kWh)."""
    try:
        result = _fetch(provider, region, hours, trace, column, now)
    except GreenflowError as error:
        fail(error)
    if json_output:
        print_json(forecast_json(result))
    else:
        _print_table(result)


def forecast_json(result: Forecast) -> dict[str, Any]:
    """The documented ``--json`` shape (plus ``attribution`` when the data's licence requires one)."""
    full = result.to_dict()
    payload: dict[str, Any] = {key: full[key] for key in ("provider", "region", "signal", "unit", "generated_at")}
    payload["points"] = [{k: p[k] for k in ("start", "end", "value")} for p in full["points"]]
    if result.meta.get("attribution"):
        payload["attribution"] = result.meta["attribution"]
    return payload


def _fetch(
    provider: str | None,
    region: str | None,
    hours: float,
    trace: Path | None,
    column: str | None,
    now: str | None,
) -> Forecast:
    name = (provider or ("trace" if trace is not None else "")).strip().lower()
    if not name:
        raise InvalidInput("--provider is missing", fix=f"give --provider, one of: {', '.join(PROVIDERS)}")
    options: dict[str, Any] = {}
    if name == "trace":
        if trace is not None:
            options["path"] = trace
        if column is not None:
            options["column"] = column
        if now is not None:
            options["now"] = parse_time(now, "--now")
        if region is None and trace is not None:
            region = trace.stem
    else:
        used = [flag for flag, value in (("--trace", trace), ("--column", column), ("--now", now)) if value is not None]
        if used:
            raise InvalidInput(
                f"{', '.join(used)} given with --provider {name}", fix=f"{_TRACE_ONLY}: use --provider trace"
            )
    if region is None:
        raise InvalidInput(f"--region is missing for --provider {name}", fix="give --region, e.g. --region ES")
    source = get_provider(name, **options)
    return source.forecast(region, hours=hours)


def _print_table(result: Forecast) -> None:
    title = (
        f"{result.provider} {result.region}: {result.signal} intensity, {result.unit}, "
        f"generated {result.generated_at.isoformat()}"
    )
    rows = [
        [
            point.start.isoformat(),
            point.end.isoformat(),
            None if point.value is None else f"{point.value:.1f}",
            "yes" if point.estimated else "",
        ]
        for point in result.points
    ]
    print_table(title, ["start", "end", result.unit, "estimated"], rows)
    if result.meta.get("attribution"):
        typer.echo(f"Data: {result.meta['attribution']}")
