"""Verify reads one snapshot: no false tamper alarm while other processes append (issue 14, item 3)."""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
import queue
from multiprocessing.sharedctypes import Synchronized

from greenflow.ledger import Entry, Identity, Ledger

WRITERS = 4
ROUNDS = 200
# Appends per writer per verification round: the chain stays short (200 full verifications of an
# ever-growing chain would take quadratic time) while every round starts with commits in flight.
PER_ROUND = 3


def _writer(
    url: str,
    index: int,
    rounds: Synchronized[int],
    stop: multiprocessing.synchronize.Event,
    ready: multiprocessing.Queue[int],
) -> None:
    ledger = Ledger(url, create_if_empty=False)
    i = 0
    while not stop.is_set():
        if i >= (rounds.value + 1) * PER_ROUND:
            stop.wait(0.001)  # this round's appends are done: wait for the verifier's next round
            continue
        ledger.append(Entry.for_attempt(Identity("cli", "wf", f"w{index}", f"t{i}"), "ran_now", energy_kwh=0.1))
        if i == 0:
            ready.put(index)
        i += 1
    ledger.close()


def test_verify_sees_no_damage_beside_concurrent_writers(ledger: Ledger, ledger_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    rounds = context.Value("i", 0)
    ready: multiprocessing.Queue[int] = context.Queue()
    processes = [context.Process(target=_writer, args=(ledger_url, i, rounds, stop, ready)) for i in range(WRITERS)]
    for process in processes:
        process.start()
    alarms: list[str] = []
    try:
        for _ in range(WRITERS):  # every writer has committed once: they are all appending now
            ready.get(timeout=120)
        for number in range(ROUNDS):
            rounds.value = number  # lets the writers append this round's entries while we verify
            report = ledger.verify()
            alarms.extend(f"{p.kind} seq {p.seq}: {p.detail}" for p in report.problems)
    except queue.Empty:
        raise AssertionError("a writer process did not start appending") from None
    finally:
        stop.set()
        for process in processes:
            process.join(timeout=60)
    assert [p.exitcode for p in processes] == [0] * WRITERS
    assert alarms == []
    final = ledger.verify()
    assert final.ok and final.entries >= WRITERS * ROUNDS
