"""Verification benchmark: full and incremental (anchored) ``ledger verify`` on a large PostgreSQL ledger.

Builds a ledger of ``--entries`` (default 1,000,000) entries with a VALID hash chain (each entry's hash
computed as ``append`` does, rows loaded with COPY), anchors its tip with a fresh Ed25519 key, appends
``--append`` (default 1,000) entries through ``Ledger.append`` and times:

- incremental verify (``verify --anchor``: the anchored entry and those after it), median of 5 runs;
- full verify (every entry), once;
- the full verify's cost per entry.

Usage: ``python benchmarks/verify.py [--entries 1000000] [--append 1000]``. Prints a markdown table and
writes it to benchmarks/results/verify.md, with the load average (the machine may be shared).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, text

from greenflow.ledger import Entry, Identity, Ledger
from greenflow.ledger.anchor import generate_key, make_anchor
from greenflow.ledger.entry import GENESIS_HASH, chain_hash
from greenflow.ledger.store import entry_row_values

POSTGRES_ADMIN = os.environ.get("GREENFLOW_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
RESULTS = Path(__file__).with_name("results") / "verify.md"


def _load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg()) + " (1 / 5 / 15 min)"


def build(ledger: Ledger, entries: int) -> float:
    """Fill an empty ledger with ``entries`` chained entries; returns the seconds it took."""
    start = time.perf_counter()
    template = Entry.for_attempt(
        Identity("airflow", "bench_dag", "run", "task"),
        "ran_now",
        tags=("ml", "nightly"),
        team="vision",
        region="DE",
        energy_kwh=0.42,
        intensity_g_per_kwh=310.0,
        operational_g=130.2,
        charged_g=130.2,
        budget="team-vision",
        policy={"max_delay": "6h"},
        measurement_notes={"gpu": "estimate"},
    )
    row_template = entry_row_values(template)
    content_template = template.content()
    columns = [
        *(c for c in row_template if c not in ("seq", "prev_hash", "entry_hash")),
        "seq",
        "prev_hash",
        "entry_hash",
    ]
    json_columns = {"policy", "forecast", "measurement_notes", "devices", "extra"}
    base = datetime(2026, 1, 1, tzinfo=UTC)
    previous = GENESIS_HASH
    raw = ledger.engine.raw_connection()
    try:
        cursor = raw.cursor()
        with cursor.copy(f"COPY ledger_entries ({', '.join(columns)}) FROM STDIN") as copy:  # type: ignore[attr-defined]
            for seq in range(1, entries + 1):
                recorded = base + timedelta(milliseconds=seq)
                task = f"task{seq % 1000}"
                run = f"run{seq // 1000}"
                changes = {
                    "entry_id": str(uuid.UUID(int=seq)),
                    "idempotency_key": hashlib.sha256(str(seq).encode()).hexdigest(),
                    "task_id": task,
                    "run_id": run,
                    "recorded_at": recorded,
                }
                content = {**content_template, **changes, "recorded_at": recorded.isoformat()}
                digest = chain_hash(previous, content)
                row = dict(row_template, **changes, seq=seq, prev_hash=previous, entry_hash=digest)
                copy.write_row(
                    [json.dumps(row[c]) if c in json_columns and row[c] is not None else row[c] for c in columns]
                )
                previous = digest
        cursor.execute("UPDATE ledger_head SET seq = %s, entry_hash = %s WHERE id = 1", (entries, previous))
        raw.commit()
    finally:
        raw.close()
    # A ledger filled by appends is vacuumed by autovacuum as it grows; one loaded by COPY is not yet,
    # and autovacuum starting on 1 M fresh rows during the timings would measure it instead of verify.
    with ledger.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM (ANALYZE) ledger_entries"))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--append", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=5, help="incremental verifications to take the median of")
    args = parser.parse_args()
    admin = create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    name = f"greenflow_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    lines = [
        f"Verify benchmark, PostgreSQL ({os.cpu_count()} cores, {platform.python_implementation()} "
        f"{platform.python_version()}; load average before: {_load()})",
        "",
    ]
    try:
        ledger = Ledger(POSTGRES_ADMIN.rsplit("/", 1)[0] + f"/{name}")
        built = build(ledger, args.entries)
        print(f"built {args.entries} entries in {built:.0f} s", flush=True)
        anchor = make_anchor(ledger, generate_key())
        for i in range(args.append):
            ledger.append(Entry.for_attempt(Identity("cli", "bench", "after", f"t{i}"), "ran_now", charged_g=1.0))
        incremental = []
        for _ in range(args.runs):
            start = time.perf_counter()
            report = ledger.verify(anchors=[anchor], full=False)
            incremental.append(time.perf_counter() - start)
            assert report.ok and report.entries == args.append + 1, report.to_dict()
        start = time.perf_counter()
        full = ledger.verify(anchors=[anchor], full=True)
        full_seconds = time.perf_counter() - start
        assert full.ok and full.entries == args.entries + args.append, full.to_dict()["problems"][:3]
        total = args.entries + args.append
        lines += [
            "| entries | verify | entries recomputed | seconds | µs per entry |",
            "|---:|---|---:|---:|---:|",
            f"| {total:,} | incremental from the anchor (median of {args.runs}) | {args.append + 1:,} | "
            f"{statistics.median(incremental):.3f} | {statistics.median(incremental) / (args.append + 1) * 1e6:.0f} |",
            f"| {total:,} | full (`--full`) | {total:,} | {full_seconds:.1f} | {full_seconds / total * 1e6:.0f} |",
            "",
            f"Building the chain ({args.entries:,} entries hashed in Python, loaded with COPY) took {built:.0f} s. "
            f"Load average after: {_load()}.",
        ]
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    print("\n".join(lines))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
