"""The report as a Prefect markdown artifact: key ``greenflow-report-<period>``, the report's totals in it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from greenflow.errors import InvalidInput
from greenflow.ledger import Entry, Identity, Ledger
from greenflow.prefect.report_artifact import (
    MAX_UNMEASURED,
    last_month,
    publish_report_artifact,
    report_key,
    report_markdown,
)
from greenflow.report import ReportPeriod, ReportScope, build_report
from tests.prefect.report_seed import seed_month, totals

NOVEMBER = datetime(2026, 11, 10, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "label"),
    [
        (datetime(2026, 12, 1, 6, tzinfo=UTC), "2026-11"),
        (datetime(2027, 1, 31, 23, 59, tzinfo=UTC), "2026-12"),
        (datetime(2026, 3, 15, tzinfo=UTC), "2026-02"),
    ],
)
def test_last_month(now: datetime, label: str) -> None:
    period = last_month(now)
    assert period.label == label and period.end <= now and period.end == now.replace(day=1, hour=0, minute=0)


def test_keys_are_what_prefect_accepts() -> None:
    november = ReportPeriod.parse("2026-11")
    assert report_key(november) == "greenflow-report-2026-11"
    assert report_key(november, ReportScope.parse("all")) == "greenflow-report-2026-11"
    assert report_key(ReportPeriod.parse("2026-Q4")) == "greenflow-report-2026-q4"
    team = report_key(november, ReportScope.parse("team:Vision Lab"))
    assert team.startswith("greenflow-report-2026-11-team-vision-lab-")
    span = report_key(ReportPeriod.parse(start="2026-11-01", end="2026-11-15"))
    for key in (team, span):
        assert all(c.islower() or c.isdigit() or c == "-" for c in key) and len(key) < 100
    assert team != report_key(november, ReportScope.parse("team:vision lab"))


def test_the_markdown_holds_the_reports_totals_and_lists_what_was_not_measured(ledger: Ledger) -> None:
    entries = seed_month(ledger, NOVEMBER)
    report = build_report(ledger, ReportPeriod.parse("2026-11"))
    text = report_markdown(report)
    expected = totals(entries)
    assert f"| energy_kwh | {expected['energy_kwh']:.6g} | kWh |" in text
    assert f"| location_based_g | {expected['location_based_g']:.6g} | gCO2e |" in text
    assert f"| saved_g | {expected['saved_g']:.6g} | gCO2e |" in text
    assert "| market_based_g | — | gCO2e | no number:" in text  # None with its reason, never 0
    assert "| vision | 3 |" in text and "| search | 1 |" in text  # per team
    assert "Attempts with nothing measured: 1" in text and "no NVIDIA GPU" in text
    assert "the hash chain holds: 4 entries" in text


def test_the_markdown_stays_bounded(ledger: Ledger) -> None:
    for i in range(MAX_UNMEASURED + 15):
        ledger.append(
            Entry.for_attempt(
                Identity("prefect", f"flow-{i}", f"run-{i}", "t"), "failed", recorded_at=NOVEMBER, error="x" * 5000
            )
        )
    text = report_markdown(build_report(ledger, ReportPeriod.parse("2026-11")))
    assert "… and 15 more in the JSON report" in text and "10 more workflow lines" in text
    assert len(text) < 60_000


def test_bad_periods_and_scopes_are_refused_before_anything_is_published() -> None:
    with pytest.raises(InvalidInput, match="month 13"):
        publish_report_artifact("2026-13")
    with pytest.raises(InvalidInput, match="not a scope"):
        publish_report_artifact("2026-11", "planet:earth")
    assert publish_report_artifact("2026-11") is None  # outside a Prefect run: nothing to attach to


@pytest.mark.xdist_group("prefect")
@pytest.mark.usefixtures("prefect_server")
def test_a_flow_publishes_the_report_artifact_with_the_totals(ledger: Ledger) -> None:
    entries = seed_month(ledger, NOVEMBER)

    @flow
    def reporting() -> Any:
        return publish_report_artifact("2026-11")

    published = reporting()
    assert published.key == "greenflow-report-2026-11"
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[published.key])), limit=1, sort="CREATED_DESC"
        )
    assert artifact.type == "markdown" and artifact.flow_run_id is not None
    expected = totals(entries)
    assert f"| energy_kwh | {expected['energy_kwh']:.6g} | kWh |" in artifact.data
    assert f"| location_based_g | {expected['location_based_g']:.6g} | gCO2e |" in artifact.data
