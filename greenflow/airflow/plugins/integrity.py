"""The hash-chain verification shown in the UI: one at a time, never blocking other requests, reused a while.

Verifying recomputes every entry's hash: seconds on a small ledger, a minute or more of the API server's
CPU on millions of entries. So a result is reused for :data:`REUSE_SECONDS` (unless a fresh one is asked
for), only one verification per ledger runs at a time and nobody queues behind it (a request that finds
one running gets the previous result, or "in progress"), and the pages' badge starts one by itself only
on ledgers of at most :data:`AUTO_VERIFY_MAX_ENTRIES` entries; larger ones are verified on request.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from greenflow.clock import utcnow
from greenflow.ledger import Ledger, VerificationReport

REUSE_SECONDS = 600.0
AUTO_VERIFY_MAX_ENTRIES = 50_000
Mode = Literal["run", "auto", "refresh"]


@dataclass(frozen=True)
class Verification:
    """A verification result and when it was made."""

    report: VerificationReport
    checked_at: datetime
    seconds: float
    monotonic: float


@dataclass(frozen=True)
class Outcome:
    """What a request gets: the latest result (if any), whether it is being redone now, whether it was reused."""

    result: Verification | None
    in_progress: bool = False
    reused: bool = False


_results: dict[str, Verification] = {}
_locks: dict[str, threading.Lock] = {}
_guard = threading.Lock()


def verification(ledger: Ledger, mode: Mode = "run") -> Outcome:
    """The chain's verification for ``ledger``.

    ``run``: reuse a recent result, else verify now; ``refresh``: verify now; ``auto``: like ``run`` but
    only start a verification on a small ledger. Never waits for a verification another request runs.
    """
    key = str(ledger.engine.url)
    with _guard:
        lock = _locks.setdefault(key, threading.Lock())
        previous = _results.get(key)
    # Tampering does not move the chain's tip, so a result is reused for a while only, never for ever.
    fresh = previous is not None and time.monotonic() - previous.monotonic < REUSE_SECONDS
    if fresh and mode != "refresh":
        return Outcome(previous, reused=True)
    if mode == "auto" and ledger.head()[0] > AUTO_VERIFY_MAX_ENTRIES:
        return Outcome(previous, reused=previous is not None)
    if not lock.acquire(blocking=False):
        return Outcome(previous, in_progress=True, reused=previous is not None)
    try:
        started = time.monotonic()
        report = ledger.verify()
        done = Verification(report, utcnow(), time.monotonic() - started, time.monotonic())
        with _guard:
            _results[key] = done
        return Outcome(done)
    finally:
        lock.release()


def forget() -> None:
    """Drop every kept result (tests)."""
    with _guard:
        _results.clear()


def redacted(report: VerificationReport, readable_seqs: set[int]) -> list[dict[str, Any]]:
    """The report's problems, without naming entries of DAGs the user may not read."""
    problems = []
    for problem in report.problems:
        item = problem.to_dict()
        if problem.seq is not None and problem.entry_id is not None and problem.seq not in readable_seqs:
            item["entry_id"] = None
            item["detail"] = f"{problem.kind}: an entry of a DAG you may not read"
        problems.append(item)
    return problems
