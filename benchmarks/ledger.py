"""Ledger benchmark: append throughput and reserve / settle latency under concurrent writer processes.

Each writer is a separate process with its own connection, as Airflow or Prefect workers are. For each
backend (SQLite file in WAL mode, the local PostgreSQL) and 1, 4 and 16 writers:

- append: every writer appends entries as fast as it can; entries/s over all writers;
- reserve: latency of ``budgets.reserve`` against ONE shared budget (the contended case);
- settle: latency of ``ledger.append(entry, settle=…)``, which records and settles in one transaction.

Then (PostgreSQL, unless ``--no-breakdown``) where one writer's reservation goes, on ledgers holding
6,400 entries in the period (what the 16-writer run accumulates) and 100,000 (a busy month): round trips,
client CPU, server time per path (the one-call ``greenflow_reserve`` function and the general path that
SQLite and the fallbacks use), and the usage sum with and without the settled checkpoint
(``EXPLAIN (ANALYZE, BUFFERS)``). Those ledgers are filled with SQL copies of one entry (their hash
chain is not valid; only their size matters here).

Usage: ``python benchmarks/ledger.py [--ops 200] [--writers 1,4,16] [--backends sqlite,postgres]``.
Prints markdown tables and writes them to benchmarks/results/ledger.md, with the load average.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import platform
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, event, text

from greenflow.intensity.forecast import canonical_json
from greenflow.ledger import Budget, Entry, Identity, Ledger
from greenflow.ledger.budgets import _checkpoint, _group, _Request, _usage_statement
from greenflow.ledger.models import BudgetRow

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


def _load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg()) + " (1 / 5 / 15 min)"


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
        # Every attempt's entry and its interrupted twin, plus the budget's chained definition.
        assert verified.ok and verified.entries == 2 * writers * ops + 1, verified
        return {
            "append_per_s": writers * ops / slowest_append,
            "reserve_p50": _percentile(reserve, 50) * 1e3,
            "reserve_p99": _percentile(reserve, 99) * 1e3,
            "settle_p50": _percentile(settle, 50) * 1e3,
            "settle_p99": _percentile(settle, 99) * 1e3,
        }
    finally:
        _drop(handle)


def _fill(url: str, entries: int) -> None:
    """Give the ledger ``entries`` entries in the current period, fast (SQL copies of one real entry)."""
    ledger = Ledger(url, create_if_empty=False)
    ledger.append(Entry.for_attempt(Identity("cli", "bench", "fill", "seed"), "ran_now", energy_kwh=0.1, charged_g=1.0))
    with ledger.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO ledger_entries SELECT (r).* FROM (SELECT jsonb_populate_record(NULL::ledger_entries, "
                "to_jsonb(x) || jsonb_build_object('seq', 1 + g, 'entry_id', md5(g::text)::uuid::text, "
                "'idempotency_key', md5('fill' || g::text), 'recorded_at', now() - interval '1 minute')) AS r "
                "FROM ledger_entries x, generate_series(1, :n) g WHERE x.seq = 1) s"
            ),
            {"n": entries - 1},
        )
        connection.execute(text("UPDATE ledger_head SET seq = :n"), {"n": entries})
        connection.execute(text("ANALYZE"))
    ledger.close()


def _explain_usage(ledger: Ledger, checkpointed: bool) -> tuple[float, int]:
    """(server ms, shared buffers) of the usage sum, over the whole period or after the checkpoint."""
    from sqlalchemy.dialects import postgresql

    at = datetime.now(UTC)
    with ledger.read() as session:
        row = session.get(BudgetRow, "bench")
        assert row is not None
        budget = ledger.budgets.get("bench")
        checkpoint = _checkpoint(row, budget, at) if checkpointed else None
        assert checkpointed == (checkpoint is not None)
        compiled = _usage_statement("all", "gCO2e", True, checkpointed).compile(dialect=postgresql.dialect())
        start, end = budget.period.bounds(at)
        params = dict(compiled.params) | {"start": start, "end": end, "name": "bench", "at": at, "key": "k"}
        if checkpoint is not None:
            params["through"] = checkpoint[0]
        plan = "\n".join(
            r[0] for r in session.connection().exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + str(compiled), params)
        )
    milliseconds = float(plan.rsplit("Execution Time:", 1)[1].split("ms")[0])
    buffers = int(plan.split("Buffers: shared hit=", 1)[1].split()[0]) if "shared hit=" in plan else 0
    return milliseconds, buffers


def breakdown(entries: int, path: str, ops: int) -> dict[str, float]:
    """One writer's reservations on a ledger of ``entries`` entries: where the time goes, per path."""
    url, handle = _fresh_url("postgres", Path())
    try:
        ledger = Ledger(url)
        ledger.budgets.set(Budget.parse("bench", "1000t", "month"))
        ledger.close()
        _fill(url, entries)
        ledger = Ledger(url, create_if_empty=False)
        statements = {"n": 0}
        server: list[float] = []

        @event.listens_for(ledger.engine, "before_cursor_execute")
        def _count(*_args: object) -> None:
            statements["n"] += 1

        @event.listens_for(ledger.engine, "connect")
        def _explain(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            # auto_explain (durations only, no per-node timing) reports each top-level statement's server time.
            dbapi_connection.add_notice_handler(
                lambda d: (
                    server.append(float(d.message_primary.split("duration: ")[1].split(" ms")[0]))
                    if d.message_primary and d.message_primary.startswith("duration:")
                    else None
                )
            )
            with dbapi_connection.cursor() as cursor:
                for setting in ("LOAD 'auto_explain'", "SET auto_explain.log_min_duration = 0",
                                "SET client_min_messages = log"):  # fmt: skip
                    cursor.execute(setting)
            dbapi_connection.commit()

        ledger.engine.dispose()
        budgets = ledger.budgets
        walls, cpus, trips, servers = [], [], [], []
        for i in range(ops):
            identity = Identity("cli", "bench", "one", f"job{i}")
            at = datetime.now(UTC)
            request = _Request("bench", identity, 1.0, "bench", at, at + timedelta(hours=6))
            statements["n"], server[:] = 0, []
            c0, t0 = time.thread_time(), time.perf_counter()
            if path == "one call":
                cached = ledger.budget_definitions or budgets._definitions()
                reservation = budgets._reserve_in_server(request, _group(request, cached))
                assert reservation is not None
            else:
                reservation = budgets._reserve_in_session(request)
            walls.append(time.perf_counter() - t0)
            cpus.append(time.thread_time() - c0)
            # The general path's transaction adds BEGIN and COMMIT round trips; the one call runs in autocommit.
            trips.append(statements["n"] + (2 if path != "one call" else 0))
            servers.append(sum(server) / 1e3)
            ledger.append(
                Entry.for_attempt(identity, "ran_now", energy_kwh=0.1, charged_g=1.0), settle=reservation.reservation_id
            )
        full_ms, full_buffers = _explain_usage(ledger, checkpointed=False)
        after_ms, after_buffers = _explain_usage(ledger, checkpointed=True)
        ledger.close()
        return {
            "trips": statistics.median(trips),
            "wall_p50": _percentile(walls, 50) * 1e3,
            "wall_p99": _percentile(walls, 99) * 1e3,
            "cpu_p50": _percentile(cpus, 50) * 1e3,
            "server_p50": _percentile(servers, 50) * 1e3,
            "full_ms": full_ms,
            "full_buffers": full_buffers,
            "after_ms": after_ms,
            "after_buffers": after_buffers,
        }
    finally:
        _drop(handle)


def _fill_chain(url: str, entries: int, tags: tuple[str, ...] = ("ml",)) -> None:
    """Append ``entries`` entries with a VALID hash chain, fast: hashes computed here, rows sent by COPY.

    Each entry is the same small attempt (1 g charged, tagged) with its own id, key and time, so only
    those three change in its canonical content: the content is rendered once and the three values
    substituted per entry (the benchmark asserts the result verifies on the smallest ledger).
    """
    ledger = Ledger(url, create_if_empty=False)
    seq, tip = ledger.head()
    ledger.close()
    # 10 entries a second, ending now: 1 M entries span 28 hours, inside this month (unless it just began).
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=entries / 10 + 60)
    template = Entry.for_attempt(
        Identity("cli", "bench", "fill", "job"),
        "ran_now",
        entry_id="@ID@",
        idempotency_key="@KEY@",
        recorded_at=base,
        charged_g=1.0,
        energy_kwh=0.002,
        tags=tags,
    )
    text_template = canonical_json(template.content()).replace(base.isoformat(), "@AT@")
    columns = ("seq", "entry_id", "idempotency_key", "recorded_at", "orchestrator", "workflow_id", "run_id",
               "task_id", "attempt", "tags", "decision", "policy", "measurement_notes", "devices", "extra",
               "energy_kwh", "charged_g", "prev_hash", "entry_hash")  # fmt: skip
    tag_text = "," + ",".join(tags) + "," if tags else ""
    engine = create_engine(url)
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cursor, cursor.copy(f"COPY ledger_entries ({', '.join(columns)}) FROM STDIN") as copy:
            for i in range(entries):
                entry_id, key = str(uuid.UUID(int=i + 1)), f"{i + 1:064x}"
                at = base + timedelta(milliseconds=100 * i)
                content = text_template.replace("@ID@", entry_id).replace("@KEY@", key).replace("@AT@", at.isoformat())
                # chain_hash(tip, content) without re-rendering: the text is already canonical JSON.
                digest = hashlib.sha256((tip + content).encode()).hexdigest()
                copy.write_row((seq + 1, entry_id, key, at, "cli", "bench", "fill", "job", 1, tag_text, "ran_now",
                                "{}", "{}", "[]", "{}", 0.002, 1.0, tip, digest))  # fmt: skip
                seq, tip = seq + 1, digest
        with raw.cursor() as cursor:
            cursor.execute("UPDATE ledger_head SET seq = %s, entry_hash = %s WHERE id = 1", (seq, tip))
            cursor.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()
        engine.dispose()


def status_latency(entries: int, reads: int) -> dict[str, float]:
    """``budgets.status`` on a PostgreSQL ledger of ``entries`` entries, one new entry appended before each read."""
    url, handle = _fresh_url("postgres", Path())
    try:
        ledger = Ledger(url)
        ledger.budgets.set(Budget.parse("bench", "1000t", "month"))
        ledger.budgets.set(Budget.parse("ml", "1000t", "month", scope="tag:ml"))
        ledger.budgets.set(Budget.parse("rolling", "1000t", "rolling:720h"))
        ledger.close()
        t0 = time.perf_counter()
        _fill_chain(url, entries)
        fill_s = time.perf_counter() - t0
        ledger = Ledger(url, create_if_empty=False)
        if entries <= 10_000:
            assert ledger.verify().ok, "the bulk fill must keep the chain valid"
        result: dict[str, float] = {"fill_s": fill_s}
        for name in ("bench", "ml", "rolling"):
            t0 = time.perf_counter()
            first = ledger.budgets.status(name)
            result[f"{name}_cold"] = (time.perf_counter() - t0) * 1e3
            assert first.settled >= entries - 1, first
            timings = []
            for i in range(reads):
                identity = Identity("cli", "bench", "live", f"{name}{i}")
                ledger.append(Entry.for_attempt(identity, "ran_now", charged_g=1.0, tags=("ml",)))
                t0 = time.perf_counter()
                ledger.budgets.status(name)
                timings.append(time.perf_counter() - t0)
            result[f"{name}_p50"] = _percentile(timings, 50) * 1e3
            result[f"{name}_p99"] = _percentile(timings, 99) * 1e3
        ledger.close()
        return result
    finally:
        _drop(handle)


def _status_lines(sizes: list[int], reads: int) -> list[str]:
    lines = [
        "",
        f"Budget status (PostgreSQL, valid chain; {reads} reads per budget, one entry appended before each; first "
        "read sums the period and stores the checkpoint):",
        "",
        "| entries | fill s | month/all first ms | p50 ms | p99 ms | month/tag:ml first ms | p50 ms | p99 ms | "
        "rolling:720h first ms | p50 ms | p99 ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    print("\n".join(lines), flush=True)
    for entries in sizes:
        r = status_latency(entries, reads)
        line = (
            f"| {entries:,} | {r['fill_s']:.0f} | "
            + " | ".join(
                f"{r[f'{n}_cold']:.1f} | {r[f'{n}_p50']:.2f} | {r[f'{n}_p99']:.2f}" for n in ("bench", "ml", "rolling")
            )
            + " |"
        )
        print(line, flush=True)
        lines.append(line)
    return lines


def _breakdown_lines(ops: int) -> list[str]:
    lines = [
        "",
        f"Where one writer's reservation goes (PostgreSQL, {ops} reservations, each then settled):",
        "",
        "| entries in period | path | round trips | wall p50 ms | wall p99 ms | client CPU p50 ms | server p50 ms | "
        "usage sum, whole period ms (buffers) | usage sum after checkpoint ms (buffers) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    print("\n".join(lines), flush=True)
    for entries in (6_400, 100_000):
        for path in ("one call", "general"):
            r = breakdown(entries, path, ops)
            line = (
                f"| {entries:,} | {path} | {r['trips']:.0f} | {r['wall_p50']:.2f} | {r['wall_p99']:.2f} | "
                f"{r['cpu_p50']:.2f} | {r['server_p50']:.2f} | {r['full_ms']:.2f} ({r['full_buffers']}) | "
                f"{r['after_ms']:.2f} ({r['after_buffers']}) |"
            )
            print(line, flush=True)
            lines.append(line)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=200, help="operations per writer per phase")
    parser.add_argument("--writers", default="1,4,16")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--rates", default="0,5", help="task starts per second per writer; 0 = back to back")
    parser.add_argument("--no-breakdown", action="store_true", help="skip the one-writer breakdown (PostgreSQL)")
    parser.add_argument("--status-sizes", default="10000,100000,1000000", help="ledger sizes of the status rows")
    parser.add_argument("--status-reads", type=int, default=300, help="status reads per budget and size")
    parser.add_argument("--only-status", action="store_true", help="run only the budget status rows")
    args = parser.parse_args()
    if args.only_status:
        lines = _status_lines([int(x) for x in args.status_sizes.split(",")], args.status_reads)
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.with_name("ledger_status.md").write_text("\n".join(lines) + "\n")
        return
    lines = [
        f"Ledger benchmark ({os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}, "
        f"{args.ops} operations per writer per phase; load average before: {_load()})",
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
    lines.append(f"\nLoad average after the concurrency runs: {_load()}")
    if "postgres" in args.backends and not args.no_breakdown:
        lines += _breakdown_lines(args.ops)
    if "postgres" in args.backends and args.status_sizes:
        lines += _status_lines([int(x) for x in args.status_sizes.split(",")], args.status_reads)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
