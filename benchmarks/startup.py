"""Start-up cost: what ``greenflow --version`` and the imports every entry point pays, as whole processes.

Each row runs a fresh interpreter ``--runs`` times (after one warm-up) and reports the median CPU time
(user + system, from the kernel's accounting of the finished child) and wall time. CPU is the figure to
compare: on a shared machine wall time mostly measures the neighbours.

Usage: ``python benchmarks/startup.py [--runs 7]``. Prints a markdown table and writes it to
benchmarks/results/startup.md, with the load average.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The console script beside this interpreter (the venv's), whatever PATH says.
GREENFLOW = shutil.which("greenflow", path=str(Path(sys.executable).parent)) or "greenflow"
ROWS = [
    ("python -c pass (the interpreter alone)", [sys.executable, "-c", "pass"]),
    ("greenflow --version", [GREENFLOW, "--version"]),
    ("import greenflow.lifecycle", [sys.executable, "-c", "import greenflow.lifecycle"]),
    ("import greenflow.ledger.store (SQLAlchemy)", [sys.executable, "-c", "import greenflow.ledger.store"]),
    # The whole cost of metering a trivial command, its ledger entry written in the same process (the
    # default hands a short command's write to a detached writer, whose CPU the kernel does not count here).
    (
        "greenflow run --ledger-write wait -- true (entry written)",
        [GREENFLOW, "run", "--ledger-write", "wait", "--quiet", "--", "true"],
    ),
]


def measure(command: list[str], runs: int) -> tuple[float, float]:
    """Median (CPU s, wall s) of ``runs`` runs of ``command`` after one warm-up."""
    cpu: list[float] = []
    wall: list[float] = []
    for i in range(runs + 1):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        elapsed = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if i:  # the first run warms the page cache and the bytecode
            cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
            wall.append(elapsed)
    return statistics.median(cpu), statistics.median(wall)


def main() -> None:
    """Measure every row and write the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    scratch = tempfile.mkdtemp(prefix="greenflow-startup-")
    os.environ["GREENFLOW_LEDGER_URL"] = f"sqlite:///{scratch}/ledger.db"  # a fresh ledger, not the user's
    lines = [
        f"Start-up cost ({platform.machine()}, {os.cpu_count()} cores, load average {load:.1f} at the start, "
        f"CPython {platform.python_version()}, median of {args.runs} fresh processes after a warm-up)",
        "",
        "| command | CPU ms | wall ms |",
        "|---|---:|---:|",
    ]
    for name, command in ROWS:
        cpu, wall = measure(command, args.runs)
        lines.append(f"| {name} | {cpu * 1000:.0f} | {wall * 1000:.0f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    (ROOT / "benchmarks" / "results" / "startup.md").write_text(text)


if __name__ == "__main__":
    main()
