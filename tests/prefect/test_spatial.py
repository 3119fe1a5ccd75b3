"""Spatial shifting with ``schedule_green(regions={region: deployment})``: the run goes to the greener region's pool.

Two deployments of one flow stand for two regions' work pools (Spain and Norway, June 2022, replayed
from the shipped Electricity Maps traces). The expected region and window are worked out here from the
trace itself, by brute force over every start the planner could pick, not taken from the planner.
Flow runs are executed in this process with ``run_flow`` (what a worker's process does).
"""

from __future__ import annotations

import importlib.util
import json
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
import typer
from prefect import Flow, flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.flow_engine import run_flow
from typer.testing import CliRunner

from greenflow.clock import utcnow
from greenflow.errors import InvalidInput
from greenflow.intensity.providers.base import get_provider
from greenflow.prefect import GREEN_WINDOW_STATE, carbon_aware, schedule_green
from greenflow.prefect.deferral import read_deferral

pytestmark = [pytest.mark.xdist_group("prefect"), pytest.mark.usefixtures("prefect_server")]

DURATION = timedelta(hours=2)
MAX_DELAY = timedelta(hours=14)


def _deploy_per_region(flow_obj: Flow[Any, Any], regions: list[str]) -> dict[str, str]:
    """One deployment of ``flow_obj`` per region, each on its own process work pool (no worker: run in-process)."""
    suffix = uuid4().hex[:6]
    names: dict[str, str] = {}
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name(flow_obj.name)
        for region in regions:
            pool = f"{region.lower()}-pool-{suffix}"
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
            client.create_deployment(
                flow_id=flow_id, name=pool, work_pool_name=pool, entrypoint="tests/prefect/test_spatial.py:flow"
            )
            names[region] = f"{flow_obj.name}/{pool}"
    return names


def _runs_of(deployment: str) -> list[Any]:
    with get_client(sync_client=True) as client:
        found = client.read_deployment_by_name(deployment)
        return client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[found.id])))


def _read(flow_run_id: str) -> Any:
    with get_client(sync_client=True) as client:
        return client.read_flow_run(UUID(flow_run_id))


def _best_window(region: str, now: datetime) -> tuple[float, datetime]:
    """(lowest mean, earliest start reaching it) over every start in [now, now + MAX_DELAY], from the trace.

    The mean over a window is piecewise linear in its start, so its minimum is at a start where the
    window's start or end meets a slot boundary, or at an end of the range: those are all tried.
    """
    latest = now + MAX_DELAY
    trace = get_provider("trace", now=now.isoformat())  # the replay clock standing still at the request
    forecast = trace.forecast(region, start=now, hours=(MAX_DELAY + DURATION).total_seconds() / 3600 + 1)
    bounds = {p.start for p in forecast.points} | {p.end for p in forecast.points}
    starts = {now, latest} | {b - shift for b in bounds for shift in (timedelta(0), DURATION)}
    scored = []
    for start in sorted(s for s in starts if now <= s <= latest):
        mean, coverage = forecast.mean_intensity(start, start + DURATION)
        if mean is not None and coverage == 1.0:
            scored.append((mean, start))
    return min(scored)


def test_the_run_goes_to_the_greener_regions_deployment_at_its_window_and_the_ledger_keeps_the_choice(  # type: ignore[no-untyped-def]
    replay, fake_gpu_meter, run_entries
) -> None:
    ran: list[int] = []

    @flow(name="spatial-training")
    @carbon_aware(
        region="ES",  # the flow's home: its ledger entry counts savings against starting there at once
        provider="trace",
        provider_options=replay(speed=4000),
        expected_duration="2h",
        max_delay="1h",
        meter_factory=fake_gpu_meter,
    )
    def spatial_training(epochs: int = 1) -> int:
        ran.append(epochs)
        return epochs

    deployments = _deploy_per_region(spatial_training, ["ES", "NO"])
    scheduled = schedule_green(
        regions=deployments,
        parameters={"epochs": 2},
        provider="trace",
        provider_options=replay(speed=4000),  # 14 h of grid time pass in ~13 s
        expected_duration=DURATION,
        max_delay=MAX_DELAY,
        min_savings=0,  # the scenario weighs every window: NO's best is only ~3 % under starting there now
    )
    requested = scheduled.decision.requested_at
    best = {region: _best_window(region, requested) for region in deployments}
    greener = min(best, key=lambda region: best[region][0])
    other = next(region for region in deployments if region != greener)
    assert best[greener][0] < 0.5 * best[other][0], "the scenario needs one clearly greener region"

    assert scheduled.region == greener and scheduled.deployment == deployments[greener]
    assert abs((scheduled.decision.start_at - best[greener][1]).total_seconds()) < 1
    [created] = _runs_of(deployments[greener])
    assert str(created.id) == scheduled.flow_run_id and created.parameters == {"epochs": 2}
    assert created.next_scheduled_start_time == scheduled.scheduled_time == scheduled.decision.wake_at
    assert _runs_of(deployments[other]) == []  # the other region's pool gets nothing

    # The choice and what each region offered, home first, as the user gets it back.
    assert [(a.region, a.deployment, a.chosen) for a in scheduled.alternatives] == [
        ("ES", deployments["ES"], greener == "ES"),
        ("NO", deployments["NO"], greener == "NO"),
    ]
    for option in scheduled.alternatives:
        assert option.expected_gco2_per_kwh == pytest.approx(best[option.region][0], rel=1e-6)
    shown = scheduled.to_dict()
    assert shown["region"] == greener and [a["region"] for a in shown["alternatives"]] == ["ES", "NO"]
    json.dumps(shown)  # the CLI's --json shape

    # The greener region's best window is later than the request: the run waits for it, and says why.
    assert best[greener][1] > requested and scheduled.decision.deferred, "the scenario needs a later window"
    assert created.state.name == GREEN_WINDOW_STATE
    assert f"in {greener}" in created.state.message
    assert all(f"{region}: " in created.state.message for region in deployments)
    carried = read_deferral(scheduled.flow_run_id)
    assert carried is not None and carried.decision.plan is not None
    assert {a["region"] for a in carried.decision.plan["alternatives"]} == {"ES", "NO"}

    time.sleep(max((scheduled.scheduled_time - utcnow()).total_seconds(), 0) + 0.2)
    assert run_flow(spatial_training, flow_run=_read(scheduled.flow_run_id)) == 2
    assert ran == [2]
    [entry] = run_entries(scheduled.flow_run_id)
    # The entry the run wrote keeps the decision made before it existed: region, window and alternatives.
    assert entry.region == greener and entry.planned_start == scheduled.decision.start_at
    recorded = {a["region"]: a["expected_gco2_per_kwh"] for a in entry.extra["plan"]["alternatives"]}
    assert recorded == pytest.approx({region: value for region, (value, _) in best.items()}, rel=1e-6)
    # It was accounted in the region it ran in, against starting at once at home.
    assert entry.intensity_g_per_kwh is not None and entry.counterfactual_intensity_g_per_kwh is not None
    assert greener != "ES", "the scenario moves the work away from home"
    assert entry.intensity_g_per_kwh < 0.5 * entry.counterfactual_intensity_g_per_kwh
    assert entry.saved_g is not None and entry.saved_g > 0


def test_one_deployment_planned_across_regions_keeps_todays_meaning(replay) -> None:  # type: ignore[no-untyped-def]
    @flow(name="one-pool-spatial")
    def one_pool() -> None: ...

    [deployment] = _deploy_per_region(one_pool, ["ANY"]).values()
    scheduled = schedule_green(
        deployment,
        region="ES",
        regions=["NO"],
        provider="trace",
        provider_options=replay(speed=1),
        expected_duration=DURATION,
        max_delay=MAX_DELAY,
        min_savings=0,  # the scenario weighs every window: NO's best is only ~3 % under starting there now
    )
    requested = scheduled.decision.requested_at
    greener = min(("ES", "NO"), key=lambda region: _best_window(region, requested)[0])
    assert scheduled.deployment == deployment and scheduled.region == greener
    assert [(a.region, a.deployment) for a in scheduled.alternatives] == [("ES", deployment), ("NO", deployment)]
    assert [run.id for run in _runs_of(deployment)] == [UUID(scheduled.flow_run_id)]


def test_bad_region_mappings_fail_before_anything_is_scheduled(replay) -> None:  # type: ignore[no-untyped-def]
    @flow(name="never-spatial")
    def never_spatial() -> None: ...

    deployments = _deploy_per_region(never_spatial, ["ES", "NO"])
    options: dict[str, Any] = {"provider": "trace", "provider_options": replay(speed=1)}
    with pytest.raises(InvalidInput, match=r"given with regions=.*each region names its deployment"):
        schedule_green(deployments["ES"], regions=deployments, **options)
    with pytest.raises(InvalidInput, match=r"region='NO' given with regions=.*first key is the home region"):
        schedule_green(region="NO", regions=deployments, **options)
    with pytest.raises(InvalidInput, match=r"regions=\{\} names no region"):
        schedule_green(regions={}, **options)
    with pytest.raises(InvalidInput, match=r"deployment for region 'NO' 'no-pool' is not '<flow name>/"):
        schedule_green(regions={"ES": deployments["ES"], "NO": "no-pool"}, **options)
    with pytest.raises(InvalidInput, match="no deployment given"):
        schedule_green(region="ES", **options)
    with pytest.raises(InvalidInput, match="regions='NO' is a string"):
        schedule_green(deployments["ES"], region="ES", regions="NO", **options)
    with pytest.raises(InvalidInput, match="no shipped trace for region 'XX'"):
        schedule_green(regions={"ES": deployments["ES"], "XX": deployments["NO"]}, **options)
    missing = {"ES": deployments["ES"], "NO": "never-spatial/typo-pool"}
    with pytest.raises(InvalidInput, match=r"'never-spatial/typo-pool' \(region NO\) was not found"):
        schedule_green(regions=missing, **options)
    assert _runs_of(deployments["ES"]) == [] and _runs_of(deployments["NO"]) == []


def test_cli_schedules_across_region_deployments(replay) -> None:  # type: ignore[no-untyped-def]
    from greenflow.cli import prefect as prefect_cli

    @flow(name="cli-spatial")
    def cli_spatial(epochs: int = 1) -> None: ...

    deployments = _deploy_per_region(cli_spatial, ["ES", "NO"])
    app = typer.Typer()
    app.add_typer(prefect_cli.app, name="prefect")
    runner = CliRunner()
    common = ["--provider", "trace", "--provider-option", f"now={replay()['now']}", "--duration", "2h"]
    common += ["--max-delay", "14h"]
    pairs = ["--region-deployment", f"ES={deployments['ES']}", "--region-deployment", f"NO={deployments['NO']}"]
    result = runner.invoke(app, ["prefect", "schedule", *pairs, "--param", "epochs=3", *common, "--json"])
    assert result.exit_code == 0, (result.stdout, result.stderr)
    shown = json.loads(result.stdout)
    greener = min(("ES", "NO"), key=lambda region: _best_window(region, datetime.fromisoformat(replay()["now"]))[0])
    assert shown["region"] == greener and shown["deployment"] == deployments[greener]
    assert [a["region"] for a in shown["alternatives"]] == ["ES", "NO"]
    [created] = _runs_of(deployments[greener])
    assert str(created.id) == shown["flow_run_id"] and created.parameters == {"epochs": 3}

    human = runner.invoke(app, ["prefect", "schedule", *pairs, *common])
    assert human.exit_code == 0, human.stderr
    assert f"of {deployments[greener]}" in human.stdout
    assert all(f"{region}: " in human.stdout for region in ("ES", "NO"))

    both = runner.invoke(app, ["prefect", "schedule", deployments["ES"], *pairs, *common])
    assert both.exit_code == 2 and "each region names its deployment" in both.stderr
    region_too = runner.invoke(app, ["prefect", "schedule", *pairs, "--region", "ES", *common])
    assert region_too.exit_code == 2 and "--region-deployment" in region_too.stderr
    malformed = runner.invoke(app, ["prefect", "schedule", "--region-deployment", "ES", *common])
    assert malformed.exit_code == 2 and "--region-deployment 'ES' is not REGION=" in malformed.stderr
    twice = runner.invoke(app, ["prefect", "schedule", *pairs, "--region-deployment", "ES=x/y", *common])
    assert twice.exit_code == 2 and "ES is given twice" in twice.stderr
    nothing = runner.invoke(app, ["prefect", "schedule", *common])
    assert nothing.exit_code == 2 and "no deployment given" in nothing.stderr


def test_the_spatial_example_schedules_its_run_on_the_greener_regions_pool(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("GREENFLOW_REPLAY_SPEED", "36000")
    monkeypatch.delenv("GREENFLOW_REPLAY_STARTED_AT", raising=False)
    path = Path(__file__).resolve().parents[2] / "flows" / "spatial.py"
    spec = importlib.util.spec_from_file_location(f"greenflow_example_spatial_{uuid4().hex}", path)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name(example.FLOW_NAME)
        for deployment in example.REGIONS.values():
            client.create_deployment(flow_id=flow_id, name=deployment.split("/")[1], entrypoint="spatial.py:x")

    run = example.schedule()
    greener = min(example.REGIONS, key=lambda region: _best_window(region, run.decision.requested_at)[0])
    assert (run.region, run.deployment) == (greener, example.REGIONS[greener])
    assert [str(r.id) for r in _runs_of(example.REGIONS[greener])] == [run.flow_run_id]
    assert all(_runs_of(name) == [] for region, name in example.REGIONS.items() if region != greener)
    assert _read(run.flow_run_id).job_variables["env"]["GREENFLOW_REPLAY_STARTED_AT"]  # the run replays alike
