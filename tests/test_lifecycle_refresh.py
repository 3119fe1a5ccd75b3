"""A refresh, and a lifecycle that only plans, never record an attempt (``greenflow plan``, a waiting run)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from greenflow.clock import utcnow
from greenflow.errors import ProviderError
from greenflow.intensity.cache import ForecastCache
from greenflow.intensity.providers.http import RetrySettings
from greenflow.intensity.providers.ukgrid import UKGridProvider
from greenflow.ledger import Identity, Ledger
from greenflow.lifecycle import Decision, Lifecycle
from greenflow.spec import CarbonSpec
from greenflow.steps import Fail


def _lifecycle(ledger: Ledger, *, record_failures: bool = True) -> Lifecycle:
    """``on_provider_error="fail"`` against a provider nobody answers for (a closed local port)."""
    spec = CarbonSpec.build(
        region="national", provider="ukgrid", max_delay="4h", on_provider_error="fail", max_staleness="0s"
    )
    down = UKGridProvider(base_url="http://127.0.0.1:9", retry=RetrySettings(max_attempts=1, total_time=1))
    return Lifecycle(
        spec,
        Identity("cli", "w", "r", "t"),
        ledger=ledger,
        cache=ForecastCache(),
        provider=down,
        record_failures=record_failures,
    )


def test_a_failed_refresh_keeps_the_plan_and_records_no_failed_attempt(sqlite_url: str) -> None:
    # The attempt still waits: a `failed` entry now would also be its one entry, refusing its real one.
    lifecycle = _lifecycle(Ledger(sqlite_url))
    now = utcnow()
    held = Decision(
        requested_at=now,
        start_at=now + timedelta(hours=1),
        latest_start=now + timedelta(hours=4),
        wake_at=now + timedelta(hours=1),
        region="national",
        action="defer",
        reason="a greener window in an hour",
    )
    assert lifecycle.refresh(held) is held
    assert lifecycle.ledger.entries() == []
    with pytest.raises(ProviderError):  # planning the attempt itself under "fail" still records it
        lifecycle.plan()
    assert [entry.decision for entry in lifecycle.ledger.entries()] == ["failed"]


def test_a_lifecycle_that_only_plans_fails_without_writing(sqlite_url: str) -> None:
    lifecycle = _lifecycle(Ledger(sqlite_url), record_failures=False)
    step = lifecycle.advance(reserve=False)
    assert isinstance(step, Fail) and step.entry is None
    assert "on_provider_error=fail" in step.error.message
    assert lifecycle.ledger.entries() == []
