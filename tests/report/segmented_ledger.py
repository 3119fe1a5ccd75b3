"""Real interruptible attempts in a ledger: one entry per segment, written through the core.

Each attempt is driven by ``greenflow.segment_runner`` (a callable, or a command that SIGTERM stops at its
segment's end) on the shipped Norwegian trace, replayed fast, metered by the autospec fake of
nvidia-ml-py at a constant 300 W. Shared by tests/report and tests/airflow_ui.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

from greenflow.intensity.cache import ForecastCache
from greenflow.intensity.providers.trace import TraceProvider
from greenflow.ledger import Entry, Identity, Ledger
from greenflow.lifecycle import Lifecycle, SegmentRun
from greenflow.metering.meter import Meter
from greenflow.segment_runner import run_command, run_segments
from greenflow.spec import CarbonSpec
from greenflow.testing.fake_nvml import FakeGpu, FakeNvml

RUN = "scheduled__2022-05-03T07:00:00+00:00"
# Norway, 3 May 2022 07:00: a 4 h job with 8 h to finish runs now, 07:00-10:00, pauses an hour and
# finishes 11:00-12:05.
NO_MORNING = datetime(2022, 5, 3, 7, 0, tzinfo=UTC)
# Norway, 3 May 2022 08:00: a 3 h job with 8 h to finish waits until 08:55 (deferred), runs to 10:00,
# pauses four hours and finishes 14:00-16:00.
NO_LATER = datetime(2022, 5, 3, 8, 0, tzinfo=UTC)
# Sleeps through its first segment (SIGTERM ends it there), finishes at once in the next one.
COMMAND = [
    sys.executable,
    "-c",
    "import os, sys, time\nif os.environ['GREENFLOW_SEGMENT_INDEX'] == '0':\n    time.sleep(60)\nsys.exit(0)",
]


def interruptible(
    ledger: Ledger,
    tmp_path: Path,
    task: str,
    *,
    now: datetime = NO_MORNING,
    duration: str = "4h",
    deadline: str = "8h",
    dag: str = "train_llm",
    run: str = RUN,
) -> Lifecycle:
    """The lifecycle of an interruptible Airflow attempt planned on the Norwegian trace at ``now``."""
    fake = FakeNvml([FakeGpu(uuid="GPU-11111111-2222-3333-4444-555555555555", power_w=300.0)])
    provider = TraceProvider(region="NO", now=now, speed=36000)
    spec = CarbonSpec.build(
        provider="trace",
        region="NO",
        interruptible=True,
        expected_duration=duration,
        deadline=deadline,
        grace="10s",
        functional_unit="epoch",
        functional_units=3,
    )
    lifecycle = Lifecycle(
        spec,
        Identity("airflow", dag, run, task, 1),
        ledger=ledger,
        cache=ForecastCache(),
        provider=provider,
        meter_factory=lambda: Meter(
            nvml=fake.backend(),
            rapl_root=tmp_path / "no-rapl",
            sample_interval=0.02,
            environ={"CUDA_VISIBLE_DEVICES": "0"},
        ),
    )
    provider.set_now(now)  # the replay starts now, not when the trace was loaded
    return lifecycle


def past_the_plan(ledger: Ledger, tmp_path: Path, task: str = "train", run: str = RUN) -> list[Entry]:
    """An attempt whose work is still not done after its 2 planned segments: it runs on in a third."""
    calls: list[SegmentRun] = []

    def train(segment: SegmentRun) -> bool:
        calls.append(segment)
        return len(calls) == 3

    result = run_segments(interruptible(ledger, tmp_path, task, run=run), train)
    assert [e.decision for e in result.entries] == ["interrupted", "interrupted", "ran_now"]
    return list(result.entries)


def deferred_in_two(ledger: Ledger, tmp_path: Path, task: str = "train") -> list[Entry]:
    """A deferred attempt that pauses after its first segment and finishes in its second."""
    lifecycle = interruptible(ledger, tmp_path, task, now=NO_LATER, duration="3h", deadline="8h")
    result = run_segments(lifecycle, lambda segment: segment.stop_at is None)
    assert [e.decision for e in result.entries] == ["interrupted", "deferred"]
    return list(result.entries)


def stopped_by_sigterm(ledger: Ledger, tmp_path: Path, task: str = "finetune") -> list[Entry]:
    """A command stopped by SIGTERM at its first segment's end that finishes in its second."""
    result = run_command(interruptible(ledger, tmp_path, task), COMMAND)
    assert result.done and [e.decision for e in result.entries] == ["interrupted", "ran_now"]
    return list(result.entries)
