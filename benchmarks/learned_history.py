"""What learning a task's duration and energy from its history costs: ``Ledger.past_attempts`` on SQLite.

Every attempt that does not declare ``expected_duration`` (and every budgeted attempt without a declared
``estimate``) reads its task's history once, at its first plan: one query on the ``(workflow_id, task_id,
recorded_at)`` index, at most ``HISTORY_ROWS`` rows, segments of interruptible attempts joined in Python.

Two SQLite ledgers of 10,000 real (hash-chained) entries:

- one task: every entry is the benchmarked task's (the worst case: the query reads its full window).
  A third of its attempts are interruptible (3 segments each), one in ten failed;
- 100 tasks: the same mix spread over 100 tasks (100 entries each);
- one task that always failed: nothing to learn, and the query walks all 10,000 of its index entries.

Usage: ``python benchmarks/learned_history.py [--entries 10000] [--calls 200]``. Prints a markdown table
and writes it to benchmarks/results/learned_history.md, with the query plan and the load average.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select, text

from greenflow.ledger import Entry, Identity, Ledger
from greenflow.ledger.models import EntryRow

RESULTS = Path(__file__).with_name("results") / "learned_history.md"
START = datetime(2024, 1, 1, tzinfo=UTC)


def _fill(ledger: Ledger, entries: int, tasks: int, *, failing: bool = False) -> None:
    """``entries`` entries over ``tasks`` tasks: one-piece runs, 3-segment attempts, failures (all, if ``failing``)."""
    written, attempt = 0, 0
    with ledger.write() as session:
        while written < entries:
            task = f"task{attempt % tasks}"
            who = Identity("airflow", "bench", f"run{attempt}", task)
            begun = START + timedelta(minutes=attempt)
            kind = attempt % 10
            if kind in (1, 4, 7) and not failing:  # interruptible: two paused segments, then the final one
                previous = None
                for index in range(3):
                    final = index == 2
                    key = who.idempotency_key if final else hashlib.sha256(f"{index}{attempt}".encode()).hexdigest()
                    part = {"index": index, "of": 3, "link": who.idempotency_key, "previous_entry": previous}
                    entry = ledger.append_in(
                        session,
                        Entry.for_attempt(
                            who,
                            "deferred" if final else "interrupted",
                            idempotency_key=key,
                            actual_start=begun,
                            ended_at=begun + timedelta(minutes=40),
                            energy_kwh=0.2,
                            extra={"segment": {**part, "final": final}},
                        ),
                    )
                    previous = entry.entry_id
                written += 3
            else:
                ledger.append_in(
                    session,
                    Entry.for_attempt(
                        who,
                        "failed" if failing or kind == 9 else "ran_now",
                        actual_start=begun,
                        ended_at=begun + timedelta(minutes=60 + kind),
                        energy_kwh=0.3,
                        error="RuntimeError: boom" if failing or kind == 9 else None,
                    ),
                )
                written += 1
            attempt += 1


def _measure(ledger: Ledger, calls: int, task: str) -> tuple[float, float, int, float]:
    ledger.past_attempts("bench", task)  # warm: the connection and the statement cache
    times, before = [], []
    for _ in range(calls):
        begun = time.perf_counter()
        found = ledger.past_attempts("bench", task)
        times.append(time.perf_counter() - begun)
        begun = time.perf_counter()
        ledger.history("bench", task, limit=5)  # what the energy estimate read before (final entries only)
        before.append(time.perf_counter() - begun)
    times.sort()
    return (
        statistics.median(times) * 1000,
        times[int(0.95 * len(times)) - 1] * 1000,
        len(found),
        statistics.median(before) * 1000,
    )


def _query_plan(ledger: Ledger) -> list[str]:
    query = (
        select(EntryRow.entry_id)
        .where(EntryRow.workflow_id == "bench", EntryRow.task_id == "task0", EntryRow.decision.in_(("ran_now",)))
        .order_by(EntryRow.recorded_at.desc(), EntryRow.seq.desc())
        .limit(500)
    )
    compiled = query.compile(ledger.engine, compile_kwargs={"literal_binds": True})
    with ledger.engine.connect() as connection:
        return [str(row[-1]) for row in connection.execute(text(f"EXPLAIN QUERY PLAN {compiled}"))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    rows = [
        "| ledger | entries | rows of the task | attempts found | median ms | p95 ms | `history(limit=5)` median ms |",
        "|---|---|---|---|---|---|---|",
    ]
    plan: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, tasks, failing in (
            ("one task", 1, False),
            ("100 tasks", 100, False),
            ("one task, always failed", 1, True),
        ):
            ledger = Ledger(f"sqlite:///{tmp}/{label}.db")
            _fill(ledger, args.entries, tasks, failing=failing)
            own = ledger.count()
            median, p95, found, before = _measure(ledger, args.calls, "task0")
            with ledger.read() as session:
                task_rows = session.execute(
                    select(EntryRow.seq).where(EntryRow.task_id == "task0").with_only_columns(EntryRow.seq)
                ).all()
            rows.append(f"| {label} | {own} | {len(task_rows)} | {found} | {median:.2f} | {p95:.2f} | {before:.2f} |")
            plan = plan or _query_plan(ledger)
            ledger.close()
    load = os.getloadavg()
    text_out = "\n".join(
        [
            "# Learning from history: the cost of `Ledger.past_attempts` (SQLite)",
            "",
            f"`python benchmarks/learned_history.py --entries {args.entries} --calls {args.calls}` on "
            f"{platform.machine()}, Python {platform.python_version()}, load average {load[0]:.1f}.",
            "One call per attempt, at its first plan (learning the duration and the energy estimate share it).",
            "The last column is the query the energy estimate used before (`Ledger.history`: final entries only,",
            "ordered by seq, so SQLite sorts all of the task's rows).",
            "",
            *rows,
            "",
            "SQLite's plan for the query: " + "; ".join(plan),
            "",
        ]
    )
    print(text_out)
    RESULTS.write_text(text_out)


if __name__ == "__main__":
    main()
