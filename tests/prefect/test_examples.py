"""The example flows in ``flows/`` run, offline, on the shipped trace (replayed fast here) and say what they did."""

from __future__ import annotations

import importlib.util
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = [pytest.mark.xdist_group("prefect"), pytest.mark.usefixtures("prefect_server")]

FLOWS = Path(__file__).resolve().parents[2] / "flows"


@pytest.fixture
def example(monkeypatch):  # type: ignore[no-untyped-def]
    """``example("training")`` imports flows/training.py afresh, replaying at 36000x from midnight."""
    monkeypatch.setenv("GREENFLOW_REPLAY_SPEED", "36000")
    monkeypatch.delenv("GREENFLOW_REPLAY_STARTED_AT", raising=False)

    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(
            f"greenflow_example_{name}_{uuid.uuid4().hex}", FLOWS / f"{name}.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


def test_training_defers_training_and_evaluates_while_the_budget_has_room(example, ledger) -> None:  # type: ignore[no-untyped-def]
    training = example("training")
    result = training.training(epochs=1)
    assert result["metrics"] == {"top1": 0.761}
    train, evaluate = ledger.entries()
    assert (train.task_id.split("-")[0], train.decision, train.region) == ("train", "deferred", "ES")
    assert train.deferred_seconds > 3600 and train.budget == training.BUDGET and train.team == "vision"
    assert train.energy_gpu_kwh is None and "no NVIDIA GPU" in train.measurement_notes["gpu"]  # honest, not faked
    assert train.charged_g == 50.0 and "declared estimate" in train.estimate_source  # kept, labelled
    assert evaluate.decision == "ran_now"


def test_training_skips_evaluation_when_the_budget_is_too_small(example, ledger) -> None:  # type: ignore[no-untyped-def]
    training = example("training")
    result = training.training(epochs=1, budget_limit="60g")
    assert result["metrics"] is None
    decisions = [(e.task_id.split("-")[0], e.decision) for e in ledger.entries()]
    assert decisions == [("train", "deferred"), ("carbon", "skipped_budget")]


def test_validation_is_reduced_on_a_dirty_grid(example, ledger) -> None:  # type: ignore[no-untyped-def]
    validation = example("validation")
    result = validation.validation(samples=1000)
    assert (result["choice"], result["validated"]) == ("reduced", 100)
    gate, validate = ledger.entries()
    assert gate.decision == "degraded" and gate.intensity_g_per_kwh > 250
    assert validate.decision == "ran_now"


def test_the_deployment_example_waits_in_process_when_run_outside_a_deployment(example, ledger) -> None:  # type: ignore[no-untyped-def]
    deployment = example("green_deployment")
    assert deployment.nightly_training(epochs=1)["epochs"] == 1
    [entry] = ledger.entries()
    assert entry.task_id == deployment.FLOW_NAME and entry.decision == "deferred"


def test_the_monthly_report_publishes_last_months_report_and_is_scheduled_monthly(example, ledger, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from greenflow.prefect.report_artifact import last_month
    from tests.prefect.report_seed import seed_month, totals

    month = last_month()
    entries = seed_month(ledger, month.start + timedelta(days=2))
    seed_month(ledger, month.end + timedelta(hours=1))  # this month's: not in last month's report
    monthly = example("monthly_report")
    key = monthly.monthly_report()
    assert key == f"greenflow-report-{month.label}"
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])), limit=1, sort="CREATED_DESC"
        )
    expected = totals(entries)
    assert f"| energy_kwh | {expected['energy_kwh']:.6g} | kWh |" in artifact.data
    assert f"| location_based_g | {expected['location_based_g']:.6g} | gCO2e |" in artifact.data
    monkeypatch.setitem(sys.modules, monthly.__name__, monthly)  # to_deployment imports the flow's module
    (schedule,) = monthly.deployment().schedules
    assert schedule.schedule.cron == monthly.CRON == "0 6 1 * *"
