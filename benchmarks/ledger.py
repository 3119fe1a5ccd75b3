"""Ledger benchmark: append throughput and reserve / settle latency under concurrent writer processes.

Each writer is a separate process with its own connection, as Airflow or Prefect workers are. For each
backend (SQLite file in WAL mode, the local PostgreSQL) and 1, 4 and 16 writers:

- append: every writer appends entries as fast as it can; entries/s over all writers;
- reserve: latency of ``budgets.reserve`` against ONE shared budget (the contended case);
- settle: latency of ``ledger.append(entry, settle=…)``, which records and settles in one transaction.

Usage: ``python benchmarks/ledger.py [--ops 200] [--writers 1,4,16] [--backends sqlite,postgres]``.
Prints a markdown table and writes it to benchmarks/results/ledger.md.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text

from greenflow.ledger import Budget, Entry, Identity, Ledger

POSTGRES_ADMIN = os.environ.get("GREENFLOW_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
RESULTS = Path(__file__).with_name("results") / "ledger.md"


def _writer(url: str, index: int, ops: int, rate: float, barrier, queue) -> None:  # type: ignore[no-untyped-def]
    ledger = Ledger(url, create_if_empty=False)
    barrier.wait()
    start = time.perf_counter()
    for i in range(ops):
        ledger.append(
            Entry.for_attempt(
                Identity("cli", "bench", f"w{index}", f"append{i}"), "ran_now", energy_kwh=0.1, charged_g=1.0
            )
        )
    append_seconds = time.perf_counter() - start
    barrier.wait()
    reserve, settle = [], []
    rng = random.Random(index)
    next_start = time.perf_counter()
    for i in range(ops):
        if rate:  # paced: task starts arrive at `rate` per second per writer (Poisson), not back to back
            next_start += rng.expovariate(rate)
            time.sleep(max(0.0, next_start - time.perf_counter()))
        identity = Identity("cli", "bench", f"w{index}", f"job{i}")
        t0 = time.perf_counter()
        reservation = ledger.budgets.reserve("bench", identity, 1.0, estimate_source="bench")
        t1 = time.perf_counter()
        ledger.append(
            Entry.for_attempt(identity, "ran_now", energy_kwh=0.1, charged_g=1.0), settle=reservation.reservation_id
        )
        t2 = time.perf_counter()
        reserve.append(t1 - t0)
        settle.append(t2 - t1)
    queue.put((append_seconds, reserve, settle))
    ledger.close()


def _fresh_url(backend: str, workdir: Path) -> tuple[str, object]:
    if backend == "sqlite":
        return f"sqlite:///{workdir / f'{uuid.uuid4().hex}.db'}", None
    admin = create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    name = f"greenflow_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    return POSTGRES_ADMIN.rsplit("/", 1)[0] + f"/{name}", (admin, name)


def _drop(handle: object) -> None:
    if handle is None:
        return
    admin, name = handle  # type: ignore[misc]
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def run(backend: str, writers: int, ops: int, rate: float, workdir: Path) -> dict[str, float]:
    url, handle = _fresh_url(backend, workdir)
    try:
        ledger = Ledger(url)
        ledger.budgets.set(Budget.parse("bench", "1000t", "month"))
        ledger.close()
        context = multiprocessing.get_context("fork")
        barrier, queue = context.Barrier(writers), context.Queue()
        processes = [context.Process(target=_writer, args=(url, i, ops, rate, barrier, queue)) for i in range(writers)]
        for process in processes:
            process.start()
        results = [queue.get(timeout=900) for _ in processes]
        for process in processes:
            process.join()
        reserve = [x for r in results for x in r[1]]
        settle = [x for r in results for x in r[2]]
        slowest_append = max(r[0] for r in results)
        verified = Ledger(url, create_if_empty=False).verify()
        assert verified.ok and verified.entries == 2 * writers * ops, verified
        return {
            "append_per_s": writers * ops / slowest_append,
            "reserve_p50": _percentile(reserve, 50) * 1e3,
            "reserve_p99": _percentile(reserve, 99) * 1e3,
            "settle_p50": _percentile(settle, 50) * 1e3,
            "settle_p99": _percentile(settle, 99) * 1e3,
        }
    finally:
        _drop(handle)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=200, help="operations per writer per phase")
    parser.add_argument("--writers", default="1,4,16")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--rates", default="0,5", help="task starts per second per writer; 0 = back to back")
    args = parser.parse_args()
    lines = [
        f"Ledger benchmark ({os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}, "
        f"{args.ops} operations per writer per phase)",
        "",
        "| backend | writers | load | append entries/s | reserve p50 ms | reserve p99 ms | record+settle p50 ms | "
        "record+settle p99 ms |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    print("\n".join(lines), flush=True)
    with tempfile.TemporaryDirectory() as workdir:
        for rate in (float(x) for x in args.rates.split(",")):
            load = "back to back" if not rate else f"{rate:g}/s per writer"
            for backend in args.backends.split(","):
                for writers in (int(w) for w in args.writers.split(",")):
                    r = run(backend, writers, args.ops, rate, Path(workdir))
                    line = (
                        f"| {backend} | {writers} | {load} | {r['append_per_s']:.0f} | {r['reserve_p50']:.1f} | "
                        f"{r['reserve_p99']:.1f} | {r['settle_p50']:.1f} | {r['settle_p99']:.1f} |"
                    )
                    print(line, flush=True)
                    lines.append(line)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
