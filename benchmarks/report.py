"""Report benchmark: ``greenflow report`` on a PostgreSQL ledger of 100,000 entries.

The ledger is a valid hash chain (every entry hashed as ``Ledger.append`` would; the report verifies it),
written once in bulk into the database ``greenflow_bench_report`` (kept between runs; ``--refill``
rebuilds it): 4 teams, 12 workflows, 3 regions, one year (2026) of entries with the decisions in plausible
shares, measured and estimated components, attempts with nothing measured, budget refusals, functional
units, a stored forecast copy (24 half-hour points) on every planned entry, plus 2 instruments and
residual-mix factors so that the market-based figure is computed.

Measured: ``build_report`` (load, figures, market-based, chain verification) and the renderers, in
process, best of ``--repeat`` (default 1) after one warm-up report, wall-clock and CPU seconds; and the
console script end to end (process start included).

Usage: ``python benchmarks/report.py [--entries 100000] [--repeat 1] [--refill]``.
Prints a markdown table and writes it to benchmarks/results/report.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert, select, text, update

from greenflow.ledger import Entry, Identity, Ledger
from greenflow.ledger.entry import GENESIS_HASH, chain_hash
from greenflow.ledger.models import EntryRow, HeadRow
from greenflow.ledger.store import entry_row_values
from greenflow.report import ReportPeriod, build_report
from greenflow.report.instruments import InstrumentStore, ResidualMix, parse_instrument

POSTGRES_ADMIN = os.environ.get("GREENFLOW_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
DATABASE = "greenflow_bench_report"
RESULTS = Path(__file__).with_name("results") / "report.md"
YEAR = datetime(2026, 1, 1, tzinfo=UTC)
TEAMS = ("vision", "nlp", "speech", "recsys")
REGIONS = ("GB", "FR", "DE")
DECISIONS = (("ran_now", 0.5), ("deferred", 0.35), ("failed", 0.04), ("degraded", 0.03), ("skipped_budget", 0.05),
             ("interrupted", 0.03))  # fmt: skip
_BATCH = 5000
# The anchored report's anchor: this many entries behind the tip (a day of a busy fleet between anchors).
ANCHOR_BEHIND = 1000


def _url() -> str:
    return POSTGRES_ADMIN.rsplit("/", 1)[0] + f"/{DATABASE}"


def _forecast(rng: random.Random, region: str) -> dict[str, Any]:
    base = rng.uniform(60, 300)
    return {
        "provider": "ukgrid" if region == "GB" else "electricitymaps",
        "region": region,
        "signal": "average",
        "points": [{"start": f"2026-01-01T{h // 2:02d}:{30 * (h % 2):02d}:00+00:00",
                    "value": round(base + 50 * rng.uniform(-1, 1), 1), "estimated": False} for h in range(24)],
    }  # fmt: skip


def _entries(count: int, seed: int = 17) -> Iterator[Entry]:
    rng = random.Random(seed)
    forecasts = {region: [_forecast(rng, region) for _ in range(16)] for region in REGIONS}
    names, weights = zip(*DECISIONS, strict=True)
    span = timedelta(days=365).total_seconds()
    for n in range(count):
        recorded = YEAR + timedelta(seconds=span * (n + 0.5) / count)
        team = TEAMS[n % len(TEAMS)]
        region = REGIONS[rng.randrange(len(REGIONS))]
        decision = rng.choices(names, weights)[0]
        workflow = f"{team}_{rng.randrange(3)}"
        identity = Identity("airflow", workflow, f"scheduled__{n}", f"task_{rng.randrange(4)}")
        base: dict[str, Any] = {
            "team": team, "tags": ("gpu", team), "region": region, "recorded_at": recorded, "budget": f"{team}-monthly",
            "forecast_provider": forecasts[region][0]["provider"], "forecast_signal": "average",
            "forecast": forecasts[region][n % 16],
        }  # fmt: skip
        if decision == "skipped_budget":
            yield Entry.for_attempt(identity, decision, **base, measurement_notes={"reason": "not run: budget"})
            continue
        if rng.random() < 0.03:  # nothing measured
            yield Entry.for_attempt(identity, decision, **base, measurement_notes={"gpu": "no GPU", "cpu": "no RAPL"})
            continue
        estimated = rng.random() < 0.2
        gpu, cpu = rng.uniform(0.1, 6.0), rng.uniform(0.02, 0.6)
        start = recorded - timedelta(minutes=rng.randint(5, 180))
        intensity = rng.uniform(30, 90) if region == "FR" else rng.uniform(120, 320)
        energy = gpu + cpu
        operational = energy * 1.15 * intensity
        counterfactual = operational * (rng.uniform(1.05, 1.5) if decision == "deferred" else 1.0)
        units = float(rng.randint(1, 50))
        yield Entry.for_attempt(
            identity, decision, **base, actual_start=start, ended_at=recorded,
            deferred_seconds=3600.0 if decision == "deferred" else 0.0,
            energy_gpu_kwh=gpu, energy_cpu_kwh=cpu, method_gpu="estimate" if estimated else "nvml_energy_counter",
            method_cpu="estimate" if estimated else "rapl", energy_kwh=energy, pue=1.15,
            intensity_g_per_kwh=intensity, intensity_source="actuals", operational_g=operational,
            embodied_g=25.0, functional_unit="1k samples", functional_units=units,
            sci_g_per_unit=(operational + 25.0) / units, counterfactual_g=counterfactual,
            saved_g=counterfactual - operational, charged_g=operational + 25.0, charged_kwh=energy * 1.15,
        )  # fmt: skip


def fill(count: int) -> None:
    """A fresh ledger database with ``count`` hash-chained entries, instruments and residual mixes."""
    admin = create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{DATABASE}"'))
    admin.dispose()
    ledger = Ledger(_url())
    started = time.perf_counter()
    previous, batch, seq = GENESIS_HASH, [], 0
    with ledger.engine.begin() as connection:
        for entry in _entries(count):
            seq += 1
            digest = chain_hash(previous, entry.content())
            batch.append(entry_row_values(entry.replace(seq=seq, prev_hash=previous, entry_hash=digest)))
            previous = digest
            if len(batch) == _BATCH:
                connection.execute(insert(EntryRow), batch)
                batch = []
                print(f"  {seq:,} entries ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
        if batch:
            connection.execute(insert(EntryRow), batch)
        connection.execute(update(HeadRow).where(HeadRow.id == 1).values(seq=seq, entry_hash=previous))
        connection.execute(text("ANALYZE ledger_entries"))
    store = InstrumentStore(ledger)
    store.add([parse_instrument("GB", "2026-01-01", "2026-12-31", "20", "0", "ppa", "PPA-GB"),
               parse_instrument("FR", "2026-06-01", "2026-11-30", "5", "0", "go", "GO-FR")])  # fmt: skip
    for region, factor in (("GB", 380.0), ("FR", 60.0), ("DE", 600.0)):
        store.set_residual(ResidualMix(region, factor, "benchmark figure, not a real residual mix"))
    ledger.close()
    print(f"  filled {count:,} entries in {time.perf_counter() - started:.0f} s", file=sys.stderr)


def _anchor_near_tip(ledger: Ledger, seq: int) -> Path:
    """A signed anchor file for entry ``seq`` (what ``greenflow ledger anchor`` wrote when that was the tip)."""
    import base64

    from greenflow.clock import utcnow
    from greenflow.ledger.anchor import Anchor, Checkpoint, generate_key, key_id, write_anchor
    from greenflow.ledger.models import EntryRow

    key = generate_key()
    with ledger.read() as session:
        first = session.execute(select(EntryRow.entry_hash).where(EntryRow.seq == 1)).scalar_one()
        stored = session.execute(select(EntryRow.entry_hash).where(EntryRow.seq == seq)).scalar_one()
    point = Checkpoint(first, seq, stored, utcnow(), key_id(key.public_key()))
    raw = key.public_key().public_bytes_raw()
    signed = Anchor(point, base64.b64encode(key.sign(point.signed_bytes())).decode(), base64.b64encode(raw).decode())
    folder = Path(tempfile.mkdtemp(prefix="greenflow-bench-anchor-"))
    return write_anchor(signed, folder)


def _best(fn: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """Best wall-clock seconds of ``repeat`` runs, the CPU seconds of this process in that run, the result."""
    best: tuple[float, float, Any] | None = None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        timing = (time.perf_counter() - wall, time.process_time() - cpu, result)
        if best is None or timing[0] < best[0]:
            best = timing
    assert best is not None
    return best


def run(count: int, repeat: int) -> str:
    """Measure and return the markdown table."""
    from greenflow.report.loader import load_attempts
    from greenflow.report.scope import ReportScope

    ledger = Ledger(_url())
    rows: list[tuple[str, int, float, float | None]] = []

    def row(label: str, entries: int, wall: float, cpu: float | None) -> None:
        rows.append((label, entries, wall, cpu))
        print(f"  {label}: {wall:.2f} s wall, {cpu if cpu is not None else float('nan'):.2f} s CPU", file=sys.stderr)

    month, year = ReportPeriod.parse("2026-11"), ReportPeriod.parse("2026")
    build_report(ledger, month, "all", verify=False)  # warm-up: imports, statement caches
    # Ledger.verify() re-hashes the whole chain whatever the period: measured once, on its own, below.
    cases = [
        ("build_report, month (2026-11), scope all, --no-verify", month, "all", False),
        ("build_report, month, scope team:vision (market share needs every scope), --no-verify", month,
         "team:vision", False),
        ("build_report, year (2026: every entry), scope all, --no-verify", year, "all", False),
    ]  # fmt: skip
    for label, period, scope, verify in cases:
        wall, cpu, report = _best(lambda p=period, s=scope, v=verify: build_report(ledger, p, s, verify=v), repeat)
        row(label, report.counts["entries"], wall, cpu)
    wall, cpu, loaded = _best(lambda: load_attempts(ledger, year, ReportScope.parse("all")), repeat)
    row("of which: loading the year's entries (report columns only)", len(loaded), wall, cpu)
    wall, cpu, checked = _best(ledger.verify, 1)
    row("Ledger.verify(): the whole chain, what a verified report adds", checked.entries, wall, cpu)
    # A signed anchor near the tip (as the scheduled anchoring leaves one): a verified report recomputes
    # only the entries after it. Signed here with a throwaway key; the file is what `ledger anchor` writes.
    anchor_file = _anchor_near_tip(ledger, count - ANCHOR_BEHIND)
    wall, cpu, anchored = _best(lambda: build_report(ledger, month, "all", anchor=anchor_file), repeat)
    checked = anchored.evidence["verification"]
    assert checked["ok"] and anchored.evidence["anchor"]["signature"] == "valid", checked
    label = f"build_report, month, verified from an anchor {ANCHOR_BEHIND} entries behind the tip"
    row(f"{label} (signature checked, {checked['entries']} entries recomputed)", anchored.counts["entries"], wall, cpu)
    month_report = build_report(ledger, month, "all", verify=False)
    from greenflow.report.render_csv import render_csv
    from greenflow.report.render_html import render_html
    from greenflow.report.render_pdf import render_pdf

    renderers: list[tuple[str, Callable[[], Any]]] = [
        ("render JSON (to_dict)", month_report.to_dict),
        ("render CSV", lambda: render_csv(month_report)),
        ("render HTML (2 charts)", lambda: render_html(month_report)),
        ("render PDF (WeasyPrint)", lambda: render_pdf(month_report)),
    ]
    for label, render in renderers:
        wall, cpu, _ = _best(render, repeat)
        row(label, month_report.counts["entries"], wall, cpu)
    script = Path(sys.executable).parent / "greenflow"
    for fmt in ("json", "pdf"):
        started = time.perf_counter()
        command = [str(script), "--ledger", _url(), "report", "--period", "2026-11", "--format", fmt, "--no-verify"]
        subprocess.run([*command, "-o", f"/tmp/greenflow-bench-report.{fmt}"], check=True, capture_output=True)
        row(f"`greenflow report --period 2026-11 --format {fmt} --no-verify` (process start included)",
            month_report.counts["entries"], time.perf_counter() - started, None)  # fmt: skip
    started = time.perf_counter()
    command = [str(script), "--ledger", _url(), "report", "--period", "2026-11", "--anchor", str(anchor_file)]
    subprocess.run([*command, "-o", "/tmp/greenflow-bench-report-anchored.json"], check=True, capture_output=True)
    row(f"`greenflow report --period 2026-11 --format json --anchor FILE` (verified, anchor {ANCHOR_BEHIND} "
        "behind the tip; process start included)", month_report.counts["entries"], time.perf_counter() - started,
        None)  # fmt: skip
    ledger.close()
    load = os.getloadavg()[0]
    lines = [
        f"Report benchmark: PostgreSQL ledger of {count:,} hash-chained entries (one year, 4 teams, 3 regions), "
        f"{platform.python_version()}, {os.cpu_count()} CPUs, load average {load:.1f} at the end (shared machine). "
        f"Best of {repeat} after a warm-up; CPU = this process's CPU seconds (the database server's are not in it).",
        "",
        "| what | entries | wall s | CPU s |",
        "| --- | ---: | ---: | ---: |",
        *(
            f"| {label} | {entries:,} | {wall:.2f} | {'—' if cpu is None else f'{cpu:.2f}'} |"
            for label, entries, wall, cpu in rows
        ),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Fill the ledger if needed, measure, print and write the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--refill", action="store_true")
    args = parser.parse_args()
    engine = create_engine(_url())
    try:
        with engine.connect() as connection:
            present = int(connection.execute(text("SELECT count(*) FROM ledger_entries")).scalar_one())
    except Exception:
        present = -1
    finally:
        engine.dispose()
    if args.refill or present != args.entries:
        fill(args.entries)
    table = run(args.entries, args.repeat)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(table)
    print(table)


if __name__ == "__main__":
    main()
