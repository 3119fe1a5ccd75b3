"""Carbon Ledger UI benchmark: the JSON list endpoint on a PostgreSQL ledger of 1,000,000 entries.

The ledger is filled once (kept between runs in the database ``greenflow_bench_ui``; ``--refill`` rebuilds
it) by ``COPY`` into ``ledger_entries`` with the secondary indexes dropped and rebuilt afterwards, then
``ANALYZE``. The entries are realistic in shape, not a valid hash chain (prev/entry hashes are random:
verification is not what is measured): 60 DAGs with 1-4 tasks each, one run a day per DAG over 16
months, retries, mapped tasks, the six decisions in plausible shares, measured energy and emissions
(NULL where nothing ran), and a stored forecast copy (24 half-hour points) on every planned entry.

Requests go through the plugin's FastAPI app in-process (routing, Airflow's auth dependencies with a
stand-in auth manager that answers from a fixed set of readable DAGs, validation, the query and the
JSON response) with httpx's ASGI client, one request at a time, after warm-up. Latencies are per request.

Usage: ``python benchmarks/ui.py [--entries 1000000] [--requests 200] [--refill]``.
Prints a markdown table and writes it to benchmarks/results/ui.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="greenflow-bench-ui-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

from sqlalchemy import create_engine, text

from greenflow.ledger import Ledger
from greenflow.ledger.models import EntryRow

POSTGRES_ADMIN = os.environ.get("GREENFLOW_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
DATABASE = "greenflow_bench_ui"
RESULTS = Path(__file__).with_name("results") / "ui.md"
DAGS = [f"dag_{i:02d}" for i in range(60)]
START = datetime(2025, 7, 1, tzinfo=UTC)
DECISIONS = [
    ("ran_now", 0.50),
    ("deferred", 0.35),
    ("failed", 0.05),
    ("degraded", 0.04),
    ("skipped_budget", 0.03),
    ("interrupted", 0.03),
]


# -- filling ----------------------------------------------------------------------------------------------
def _database_url() -> str:
    return POSTGRES_ADMIN.rsplit("/", 1)[0] + f"/{DATABASE}"


def _entries_in(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(text("SELECT count(*) FROM ledger_entries")).scalar_one())
    except Exception:
        return -1
    finally:
        engine.dispose()


def _recreate_database() -> None:
    admin = create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{DATABASE}"'))
    admin.dispose()


def _forecasts(rng: random.Random) -> list[str]:
    """A pool of stored forecast copies (JSON text), reused across entries with different start times."""
    pool = []
    for _ in range(64):
        base = rng.uniform(80, 320)
        points = [
            {
                "start": f"2025-01-01T{h // 2:02d}:{30 * (h % 2):02d}:00+00:00",
                "end": f"2025-01-01T{(h + 1) // 2:02d}:{30 * ((h + 1) % 2):02d}:00+00:00",
                "value": round(base + 60 * rng.uniform(-1, 1), 1),
                "estimated": False,
            }
            for h in range(24)
        ]
        pool.append(json.dumps({"provider": "ukgrid", "region": "GB", "signal": "average", "points": points}))
    return pool


def _rows(count: int, seed: int = 7) -> Any:
    rng = random.Random(seed)
    forecasts = _forecasts(rng)
    tasks = {dag: [f"task_{t}" for t in range(rng.randint(1, 4))] for dag in DAGS}
    mapped = {dag: rng.random() < 0.15 for dag in DAGS}
    span = timedelta(days=480).total_seconds()
    names, weights = zip(*DECISIONS, strict=True)
    columns = [c.name for c in EntryRow.__table__.columns]
    for seq in range(1, count + 1):
        recorded = START + timedelta(seconds=span * seq / count)
        dag = DAGS[rng.randrange(len(DAGS))]
        task = rng.choice(tasks[dag])
        decision = rng.choices(names, weights)[0]
        ran = decision not in ("skipped_budget", "interrupted")
        kwh = round(rng.uniform(0.05, 8.0), 4) if ran else None
        intensity = round(rng.uniform(60, 320), 1) if ran else None
        deferred = rng.choice([1800.0, 3600.0, 7200.0, 10800.0]) if decision == "deferred" else 0.0
        counter = (intensity + rng.uniform(20, 120)) if intensity and decision == "deferred" else intensity
        operational = kwh * intensity if kwh and intensity else None
        counterfactual = kwh * counter if kwh and counter else None
        requested = recorded - timedelta(seconds=deferred + 3600)
        values = {
            "seq": seq,
            "entry_id": str(uuid.UUID(int=rng.getrandbits(128))),
            "idempotency_key": f"{rng.getrandbits(256):064x}",
            "recorded_at": recorded,
            "orchestrator": "airflow",
            "workflow_id": dag,
            "run_id": f"scheduled__{recorded.date().isoformat()}T00:00:00+00:00",
            "task_id": task,
            "attempt": 2 if rng.random() < 0.05 else 1,
            "map_index": rng.randrange(8) if mapped[dag] else None,
            "team": None,
            "tags": ",gpu,",
            "decision": decision,
            "requested_at": requested,
            "planned_start": requested + timedelta(seconds=deferred),
            "actual_start": requested + timedelta(seconds=deferred) if ran else None,
            "ended_at": recorded if ran else None,
            "deferred_seconds": deferred,
            "policy": '{"max_delay": "8h"}',
            "region": "GB",
            "forecast_provider": "ukgrid",
            "forecast_signal": "average",
            "forecast_emission_factor": "direct",
            "forecast_generated_at": requested,
            "forecast_hash": f"{rng.getrandbits(256):064x}",
            "forecast": forecasts[seq % len(forecasts)],
            "forecast_note": None,
            "energy_gpu_kwh": None if kwh is None else kwh * 0.8,
            "energy_cpu_kwh": None if kwh is None else kwh * 0.2,
            "energy_dram_kwh": None,
            "method_gpu": "nvml_energy_counter" if ran else None,
            "method_cpu": "rapl" if ran else None,
            "method_dram": None,
            "energy_kwh": kwh,
            "active_energy_kwh": None if kwh is None else kwh * 0.9,
            "measurement_notes": '{"dram": "no RAPL DRAM domain"}',
            "devices": "[]",
            "host": f"gpu-node-{rng.randrange(12)}",
            "pue": None,
            "intensity_g_per_kwh": intensity,
            "intensity_source": "actuals from ukgrid" if ran else None,
            "operational_g": operational,
            "embodied_g": None,
            "functional_unit": None,
            "functional_units": None,
            "sci_g_per_unit": None,
            "counterfactual_intensity_g_per_kwh": counter,
            "counterfactual_g": counterfactual,
            "saved_g": None if operational is None or counterfactual is None else counterfactual - operational,
            "budget": "gpu-monthly",
            "reservation_id": None,
            "estimate_g": 400.0,
            "estimate_kwh": 2.0,
            "estimate_source": "history",
            "charged_g": operational,
            "charged_kwh": kwh,
            "error": "RuntimeError: CUDA out of memory" if decision == "failed" else None,
            "extra": "{}",
            "prev_hash": f"{rng.getrandbits(256):064x}",
            "entry_hash": f"{rng.getrandbits(256):064x}",
        }
        yield tuple(values[c] for c in columns)


def fill(count: int) -> None:
    """A fresh ledger database with ``count`` entries (indexes rebuilt after the bulk load)."""
    _recreate_database()
    url = _database_url()
    Ledger(url).close()  # the schema, through the shipped migrations
    import psycopg

    indexes = [index for index in EntryRow.__table__.indexes]
    columns = ", ".join(c.name for c in EntryRow.__table__.columns)
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    started = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as connection:
        for index in indexes:
            connection.execute(f'DROP INDEX "{index.name}"')
        with connection.cursor() as cursor, cursor.copy(f"COPY ledger_entries ({columns}) FROM STDIN") as copy:
            for i, row in enumerate(_rows(count), start=1):
                copy.write_row(row)
                if i % 100_000 == 0:
                    print(f"  {i:,} rows ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
        print(f"  rebuilding {len(indexes)} indexes", file=sys.stderr)
        for index in indexes:
            cols = ", ".join(f'"{c.name}"' for c in index.columns)
            connection.execute(f'CREATE INDEX "{index.name}" ON ledger_entries ({cols})')
        connection.execute("UPDATE ledger_head SET seq = %s WHERE id = 1", (count,))
        connection.execute("VACUUM ANALYZE ledger_entries")
    print(f"  filled {count:,} entries in {time.perf_counter() - started:.0f} s", file=sys.stderr)


# -- measuring --------------------------------------------------------------------------------------------
class _User:
    def __init__(self, dags: frozenset[str]) -> None:
        self.dags = dags

    def get_id(self) -> str:
        return "bench"

    def get_name(self) -> str:
        return "bench"


class _AuthManager:
    """Answers Airflow's auth questions for the benchmark's two users (every DAG; five DAGs)."""

    users = {"all": _User(frozenset(DAGS)), "five": _User(frozenset(DAGS[:5]))}

    async def get_user_from_token(self, token: str) -> _User:
        return self.users[token]

    def is_authorized_view(self, **kwargs: Any) -> bool:
        return True

    def is_authorized_dag(self, *, method: str, user: _User, details: Any = None, **kwargs: Any) -> bool:
        return details is None or details.id in user.dags

    def get_authorized_dag_ids(self, *, user: _User, method: str = "GET", **kwargs: Any) -> set[str]:
        return set(user.dags)


def _client(url: str) -> Any:
    from airflow.api_fastapi import app as airflow_app
    from airflow.models.dag import DagModel
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from greenflow.airflow.plugins.app import create_app

    os.environ["AIRFLOW__GREENFLOW__LEDGER_URL"] = url
    airflow_app._AuthManagerState.instance = _AuthManager()  # type: ignore[assignment]
    DagModel.get_team_name = staticmethod(lambda dag_id, **kwargs: None)  # type: ignore[method-assign]
    root = FastAPI()
    root.mount("/greenflow", create_app())
    return TestClient(root)


def _deep_cursor(sort: str, seq: int, value: Any) -> str:
    from greenflow.airflow.plugins.cursor import Cursor, Position

    return Cursor(sort, True, "after", Position(value, seq)).encode()


def _measure(client: Any, path: str, params: dict[str, Any], user: str, n: int) -> tuple[float, float, int]:
    headers = {"Authorization": f"Bearer {user}"}
    rows = 0
    for _ in range(max(3, n // 10)):  # warm-up: plans cached, pages in shared buffers
        response = client.get(path, params=params, headers=headers)
        assert response.status_code == 200, response.text
        if response.headers["content-type"].startswith("application/json"):
            rows = len(response.json().get("entries", response.json().get("days", [])))
        else:
            rows = response.text.count("<tr data-entry=")
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        response = client.get(path, params=params, headers=headers)
        times.append(time.perf_counter() - t0)
        assert response.status_code == 200
    times.sort()
    return statistics.median(times) * 1e3, times[min(len(times) - 1, int(len(times) * 0.99))] * 1e3, rows


def _offset_ms(url: str, offset: int) -> float:
    """What the deep page would cost with OFFSET instead of a cursor (one run, for comparison)."""
    engine = create_engine(url)
    with engine.connect() as connection:
        t0 = time.perf_counter()
        connection.execute(
            text(
                "SELECT seq, entry_id FROM ledger_entries WHERE orchestrator = 'airflow' "
                "ORDER BY recorded_at DESC, seq DESC OFFSET :o LIMIT 50"
            ),
            {"o": offset},
        ).all()
        elapsed = (time.perf_counter() - t0) * 1e3
    engine.dispose()
    return elapsed


def run(count: int, n: int, refill: bool) -> str:
    url = _database_url()
    if refill or _entries_in(url) != count:
        print(f"filling {count:,} entries into {DATABASE}", file=sys.stderr)
        fill(count)
    client = _client(url)
    deep_seq = max(1, count // 10)  # 90 % of the way down the default (newest first) order
    deep_time = START + timedelta(seconds=timedelta(days=480).total_seconds() * deep_seq / count)
    month = (START + timedelta(days=240)).date()
    api = "/greenflow/api/entries"
    cases = [
        ("first page (newest 50)", api, {}, "all"),
        ("filtered: one DAG, deferred", api, {"dag_id": DAGS[7], "decision": "deferred"}, "all"),
        (
            "filtered: one week, 8 months back",
            api,
            {"since": month.isoformat(), "until": (month + timedelta(days=6)).isoformat()},
            "all",
        ),
        (
            "filtered: one DAG + one run",
            api,
            {"dag_id": DAGS[3], "run_id": f"scheduled__{month.isoformat()}T00:00:00+00:00"},
            "all",
        ),
        (
            f"deep page (cursor {count - deep_seq:,} rows down)",
            api,
            {"cursor": _deep_cursor("recorded_at", deep_seq, deep_time.isoformat())},
            "all",
        ),
        ("sorted by emissions, first page", api, {"sort": "operational_g"}, "all"),
        (
            "sorted by emissions, deep page",
            api,
            {"sort": "operational_g", "cursor": _deep_cursor("operational_g", deep_seq, 5.0)},
            "all",
        ),
        ("user who may read 5 of 60 DAGs, first page", api, {}, "five"),
        (
            "totals per day, 30 days",
            "/greenflow/api/totals",
            {"since": month.isoformat(), "until": (month + timedelta(days=29)).isoformat()},
            "all",
        ),
        (
            "the ledger page (HTML: table, 30-day totals, budgets)",
            "/greenflow/ledger",
            {"since": month.isoformat(), "until": (month + timedelta(days=29)).isoformat()},
            "all",
        ),
    ]
    load = os.getloadavg()[0]
    lines = [
        f"Carbon Ledger UI benchmark: PostgreSQL ledger of {count:,} entries ({platform.machine()}, "
        f"{os.cpu_count()} cores, load average {load:.1f} at the start, CPython {platform.python_version()}, "
        f"{n} requests per row after warm-up; in-process ASGI requests through the plugin app, one at a time)",
        "",
        "| request | rows | p50 ms | p99 ms |",
        "|---|---:|---:|---:|",
    ]
    for label, path, params, user in cases:
        p50, p99, rows = _measure(client, path, params, user, n)
        lines.append(f"| {label} | {rows} | {p50:.1f} | {p99:.1f} |")
        print(lines[-1], file=sys.stderr)
    offset = _offset_ms(url, count - deep_seq)
    t0 = time.perf_counter()
    export = client.get(
        "/greenflow/api/entries.csv", params={"dag_id": DAGS[11]}, headers={"Authorization": "Bearer all"}
    )
    export_seconds = time.perf_counter() - t0
    exported = export.text.count("\n") - 1
    lines += [
        "",
        f"For comparison, the same deep page with `OFFSET {count - deep_seq:,}` instead of a cursor: "
        f"{offset:.0f} ms (one SQL query, no HTTP).",
        "",
        f"CSV export of one DAG ({exported:,} entries): {export_seconds:.1f} s "
        f"({exported / export_seconds:,.0f} entries/s).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--refill", action="store_true", help="rebuild the benchmark ledger")
    args = parser.parse_args()
    table = run(args.entries, args.requests, args.refill)
    print(table)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(table)


if __name__ == "__main__":
    main()
