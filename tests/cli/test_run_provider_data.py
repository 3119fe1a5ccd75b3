"""`greenflow run` against a provider serving garbage: the garbage is refused, the outage policy applies.

A real HTTP server on 127.0.0.1 speaks the GB Carbon Intensity API's shapes (``/intensity/{from}/fw48h``
for forecasts, ``/intensity/{from}/{to}`` for actuals) with bad values in them; `greenflow run` is a real
process pointed at it (``GREENFLOW_UKGRID_URL``), on SQLite and PostgreSQL ledgers.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from greenflow import spool
from greenflow.ledger import Entry, Ledger

GREENFLOW = [sys.executable, "-m", "greenflow.cli"]
NAN = float("nan")
_FORECAST = re.compile(r"^/intensity/([^/]+)/fw48h$")
_PAST = re.compile(r"^/intensity/([^/]+)/([^/]+)$")
# Values per half-hour slot from the slot holding "now"; the last value repeats to the end of 48 h.
Values = Callable[[int], float | None]


def _slot(moment: datetime) -> datetime:
    return moment.replace(minute=30 if moment.minute >= 30 else 0, second=0, microsecond=0)


def _entries_json(start: datetime, count: int, forecast: Values, actual: Values | None) -> list[dict[str, Any]]:
    rows = []
    for index in range(count):
        begin = start + timedelta(minutes=30 * index)
        rows.append(
            {
                "from": begin.strftime("%Y-%m-%dT%H:%MZ"),
                "to": (begin + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%MZ"),
                "intensity": {
                    "forecast": forecast(index),
                    "actual": None if actual is None else actual(index),
                    "index": "moderate",
                },
            }
        )
    return rows


class GBGrid:
    """The Carbon Intensity API with chosen values (``body`` replaces the forecast answer outright)."""

    def __init__(self, forecast: Values, *, actual: Values | None = None, body: str | None = None) -> None:
        grid = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                payload = grid.answer(self.path).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.forecast, self.actual, self.body = forecast, actual, body
        self.paths: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def answer(self, path: str) -> str:
        self.paths.append(path)
        match = _FORECAST.match(path)
        if match:
            if self.body is not None:
                return self.body
            start = _slot(datetime.strptime(match.group(1), "%Y-%m-%dT%H:%MZ").replace(tzinfo=UTC))
            return json.dumps({"data": _entries_json(start, 96, self.forecast, None)})
        match = _PAST.match(path)
        if match:
            start, end = (datetime.strptime(g, "%Y-%m-%dT%H:%MZ").replace(tzinfo=UTC) for g in match.groups())
            start = _slot(start)
            count = max(1, math.ceil((end - start) / timedelta(minutes=30)))
            return json.dumps({"data": _entries_json(start, count, self.forecast, self.actual)})
        return json.dumps({"error": {"code": "400 Bad Request", "message": f"no route {path}"}})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def grid() -> Iterator[Callable[..., GBGrid]]:
    servers: list[GBGrid] = []

    def make(forecast: Values, **kwargs: Any) -> GBGrid:
        servers.append(GBGrid(forecast, **kwargs))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def _run(url: str, grid: GBGrid, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "GREENFLOW_LEDGER_URL": url,
        "GREENFLOW_CPU_TDP_W": "100",
        "GREENFLOW_UKGRID_URL": grid.url,
        # The bad payloads are not transient: no retry of a fast local server is needed here.
        "GREENFLOW_HTTP_TOTAL_TIME": "10",
    }
    command = [*GREENFLOW, "run", "--region", "national", "--provider", "ukgrid", "--ledger-write", "wait", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)


def _entries(url: str) -> list[Entry]:
    ledger = Ledger(url)
    report = spool.flush(ledger, spool.spool_dir(url))
    assert report.count("failed") == report.count("busy") == 0, report
    return ledger.entries()


def _touch(marker: Path) -> list[str]:
    return ["--", sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"]


def test_negative_intensities_are_not_planned_on_and_the_policy_runs_now(
    ledger_url: str, grid: Callable[..., GBGrid], tmp_path: Path
) -> None:
    # Two ordinary slots, then -400 for two hours: a planner trusting them would wait for them.
    server = grid(lambda i: 250.0 if i < 2 or i >= 6 else -400.0)
    marker = tmp_path / "ran"
    result = _run(
        ledger_url, server, "--task", "neg", "--max-delay", "6h", "--on-provider-error", "run", *_touch(marker)
    )
    assert result.returncode == 0, result.stderr
    assert marker.exists()
    assert "waiting until" not in result.stderr and "Deferring" not in result.stderr
    [entry] = _entries(ledger_url)
    assert entry.decision == "ran_now"
    assert entry.deferred_seconds == 0
    assert entry.forecast is None and entry.forecast_hash is None
    note = entry.forecast_note or ""
    assert "malformed" in note and "-400" in note and "on_provider_error=run" in note, note


def test_negative_intensities_under_fail_stop_the_command(
    ledger_url: str, grid: Callable[..., GBGrid], tmp_path: Path
) -> None:
    server = grid(lambda i: 250.0 if i < 2 or i >= 6 else -400.0)
    marker = tmp_path / "ran"
    result = _run(
        ledger_url, server, "--task", "neg", "--max-delay", "6h", "--on-provider-error", "fail", *_touch(marker)
    )
    assert result.returncode != 0
    assert not marker.exists()
    assert "Traceback" not in result.stderr
    [entry] = _entries(ledger_url)
    assert entry.decision == "failed"
    assert "malformed" in (entry.error or "") and "-400" in (entry.error or "")


def test_a_nan_in_the_forecast_runs_under_run_and_is_recorded(
    ledger_url: str, grid: Callable[..., GBGrid], tmp_path: Path
) -> None:
    server = grid(lambda i: NAN if i == 3 else 250.0)
    marker = tmp_path / "ran"
    result = _run(ledger_url, server, "--task", "nan", "--on-provider-error", "run", *_touch(marker))
    assert result.returncode == 0, result.stderr
    assert marker.exists()
    assert "Traceback" not in result.stderr
    [entry] = _entries(ledger_url)
    assert entry.decision == "ran_now"
    assert "malformed" in (entry.forecast_note or "") and "NaN" in (entry.forecast_note or "")


@pytest.mark.parametrize(
    ("body", "why"),
    [
        pytest.param('{"data":[]}', "no intensity", id="empty"),
        pytest.param(None, "NaN", id="all-nan"),
    ],
)
def test_fail_does_not_run_the_command_on_an_empty_or_all_nan_answer(
    ledger_url: str, grid: Callable[..., GBGrid], tmp_path: Path, body: str | None, why: str
) -> None:
    server = grid(lambda i: NAN, body=body)
    marker = tmp_path / "ran"
    result = _run(ledger_url, server, "--task", "empty", "--on-provider-error", "fail", *_touch(marker))
    assert result.returncode != 0
    assert not marker.exists()
    assert "Traceback" not in result.stderr
    assert why in result.stderr
    [entry] = _entries(ledger_url)
    assert entry.decision == "failed"
    assert "on_provider_error=fail" in (entry.error or "") and why in (entry.error or "")


def test_a_nan_actual_never_reaches_the_ledger(ledger_url: str, grid: Callable[..., GBGrid]) -> None:
    # A sound forecast (the run plans and starts at once), but the settled actuals are NaN.
    server = grid(lambda i: 250.0, actual=lambda i: NAN)
    result = _run(ledger_url, server, "--task", "actual", "--", sys.executable, "-c", "pass")
    assert result.returncode == 0, result.stderr
    assert any(_PAST.match(p) and not _FORECAST.match(p) for p in server.paths)  # the actuals were asked for
    [entry] = _entries(ledger_url)
    assert entry.decision == "ran_now"
    assert entry.intensity_g_per_kwh is None or math.isfinite(entry.intensity_g_per_kwh)
    assert entry.operational_g is None or math.isfinite(entry.operational_g)
    # The forecast stood in for the refused actuals, and the entry says why.
    assert "actuals" in json.dumps(entry.measurement_notes) and "malformed" in json.dumps(entry.measurement_notes)
    assert Ledger(ledger_url).verify().ok
