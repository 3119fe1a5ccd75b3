"""``greenflow prefect …``: Prefect helpers on the command line (registered by ``greenflow.cli.main``).

The Prefect work itself is the adapter's (:func:`greenflow.prefect.deferral.schedule_green`), called by
name through :mod:`greenflow.adapter_actions`: this module imports no adapter.

``greenflow prefect schedule train/nightly --region ES --duration 2h --deadline 12h`` plans the greenest
start and creates the deployment's flow run at it (``run_deployment(..., scheduled_time=...)``):
nothing runs, and no worker is held, until the window. With GPUs in several regions, name each region's
deployment instead (the first is home)::

    greenflow prefect schedule --region-deployment GB=train/gb-pool --region-deployment NO=train/no-pool \
        --duration 2h --deadline 12h

and the run is created for the deployment of the greenest (region, start). ``--forecast-correction``
corrects each region's forecast with its recent errors before planning (the core's ``forecast_correction``);
the output says per region whether it was applied, and why not (``--json``: ``decision.correction``).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from greenflow.adapter_actions import adapter_action
from greenflow.cli.context import open_ledger
from greenflow.cli.output import console, handle_errors, print_json
from greenflow.decision_text import describe
from greenflow.errors import InvalidInput
from greenflow.intensity.providers.base import PROVIDERS

app = typer.Typer(help="Prefect: runs of deployments at green windows.", no_args_is_help=True)


@app.command("schedule")
@handle_errors
def schedule(
    deployment: Annotated[
        str | None,
        typer.Argument(help="The deployment, as <flow name>/<deployment name> (not with --region-deployment)."),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="A flow parameter, key=value (the value is read as JSON when it is JSON)."),
    ] = None,
    region: Annotated[str | None, typer.Option("--region", help="Where the work runs (the provider's zone).")] = None,
    also_region: Annotated[
        list[str] | None, typer.Option("--also-region", help="Another region the work could run in (repeatable).")
    ] = None,
    region_deployment: Annotated[
        list[str] | None,
        typer.Option(
            "--region-deployment",
            help="REGION=<flow>/<deployment>: a region and the deployment on its work pool (repeatable; first is "
            "home). The run goes to the deployment of the greenest region.",
        ),
    ] = None,
    provider: Annotated[str, typer.Option("--provider", help=f"One of: {', '.join(PROVIDERS)}.")] = "ukgrid",
    provider_option: Annotated[
        list[str] | None,
        typer.Option("--provider-option", help="A provider option, key=value (e.g. now=2022-06-01T00:00Z)."),
    ] = None,
    duration: Annotated[str, typer.Option("--duration", help="Expected run time: 90m, 2h, PT2H.")] = "1h",
    deadline: Annotated[
        str | None, typer.Option("--deadline", help="Latest finish: ISO 8601 with a zone, or a duration (12h).")
    ] = None,
    max_delay: Annotated[str | None, typer.Option("--max-delay", help="Latest start after now, e.g. 12h.")] = None,
    min_savings: Annotated[
        float, typer.Option("--min-savings", help="Start now unless waiting saves at least this many percent.")
    ] = 0.0,
    threshold: Annotated[
        float | None, typer.Option("--threshold", help="Start as soon as the intensity is at or below this gCO2e/kWh.")
    ] = None,
    budget: Annotated[
        str | None, typer.Option("--budget", help="Schedule nothing if this budget is already spent.")
    ] = None,
    on_provider_error: Annotated[
        str, typer.Option("--on-provider-error", help="run, wait or fail when no forecast can be had.")
    ] = "wait",
    forecast_correction: Annotated[
        bool,
        typer.Option(
            "--forecast-correction",
            help="Correct each forecast with its recent errors before planning (bias by slot of day + the latest "
            "error carried forward); the output says per region whether it was applied and why not.",
        ),
    ] = False,
    credentials: Annotated[
        str | None, typer.Option("--credentials", help="Name of a GreenflowCredentials block.")
    ] = None,
    flow_run_name: Annotated[str | None, typer.Option("--name", help="Name of the flow run.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="A tag for the flow run (repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Plan the greenest start (and region) of a deployment's run and create the run there."""
    # Looked up by name: the CLI imports no adapter (greenflow.adapter_actions says why).
    schedule_green = adapter_action("prefect.schedule_green")
    regions: list[str] | dict[str, str] = also_region or []
    if region_deployment:
        if region is not None or also_region:
            raise InvalidInput(
                "--region/--also-region given with --region-deployment",
                fix="name every region with --region-deployment REGION=<flow>/<deployment>, home first",
            )
        regions = _region_deployments(region_deployment)
    scheduled = schedule_green(
        deployment,
        _pairs(param or [], "--param"),
        region=region,
        regions=regions,
        provider=provider,
        provider_options=_pairs(provider_option or [], "--provider-option"),
        expected_duration=duration,
        deadline=deadline,
        max_delay=max_delay,
        min_savings=min_savings,
        threshold=threshold,
        budget=budget,
        on_provider_error=on_provider_error,
        forecast_correction=forecast_correction,
        credentials=credentials,
        ledger=open_ledger(),
        flow_run_name=flow_run_name,
        tags=tag or [],
    )
    if as_json:
        print_json(scheduled.to_dict())
        return
    console.print(f"flow run {scheduled.flow_run_name} ({scheduled.flow_run_id}) of {scheduled.deployment}")
    console.print(f"scheduled at {scheduled.scheduled_time.isoformat()}: {describe(scheduled.decision)}")
    for region, corrected in _corrections(scheduled.decision.correction):
        console.print(f"{region}: {corrected}", markup=False, highlight=False)
    if len(scheduled.alternatives) > 1:
        console.print("weighed:", markup=False)
        for option in scheduled.alternatives:
            console.print(f"  {option.describe()} -> {option.deployment}", markup=False, highlight=False)


def _corrections(record: dict[str, Any] | None) -> list[tuple[str, str]]:
    """(region, why) per region from a decision's ``correction`` record; none when no correction was asked."""
    regions = (record or {}).get("regions") or {}
    return [(str(region), str(result.get("reason", ""))) for region, result in regions.items()]


def _region_deployments(items: list[str]) -> dict[str, str]:
    """``GB=train/gb-pool`` pairs, in the order given (the first is home)."""
    mapping: dict[str, str] = {}
    for item in items:
        key, sep, name = item.partition("=")
        if not sep or not key.strip() or not name.strip():
            raise InvalidInput(
                f"--region-deployment {item!r} is not REGION=<flow>/<deployment>",
                fix="write it like --region-deployment GB=train/gb-pool",
            )
        if key.strip() in mapping:
            raise InvalidInput(f"--region-deployment: region {key.strip()} is given twice", fix="name each region once")
        mapping[key.strip()] = name.strip()
    return mapping


def _pairs(items: list[str], option: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"{option} {item!r} is not key=value", fix=f"write it like {option} epochs=3")
        try:
            values[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            values[key.strip()] = raw
    return values
