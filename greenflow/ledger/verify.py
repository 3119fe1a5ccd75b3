"""Hash-chain verification: recompute every entry's hash and every link, and name what is wrong.

Each entry stores SHA-256(previous entry's hash + its canonical content). Walking the chain in ``seq``
order tells three kinds of damage apart:

- *modified*: an entry's content no longer matches its own hash;
- *inserted*: an entry sits between two entries that link to each other directly;
- *removed*: an entry links to a hash no earlier entry has (or the tip's seq and hash are gone).

A hash chain without a secret cannot stop someone who rewrites every later hash: publish
``greenflow ledger verify --json``'s head hash elsewhere (a ticket, a commit) to anchor it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import select

from greenflow.ledger.budget_audit import audit_budgets
from greenflow.ledger.entry import GENESIS_HASH, chain_hash, hashed_content
from greenflow.ledger.models import EntryRow, HeadRow
from greenflow.ledger.rows import row_values

if TYPE_CHECKING:
    from greenflow.ledger.store import Ledger

ProblemKind = Literal["modified", "inserted", "removed", "budget"]
# How far back an inserted run of entries is looked for (bounded memory on a million-entry ledger).
_LOOKBACK = 4096


@dataclass(frozen=True)
class Problem:
    """One damaged place in the chain."""

    kind: ProblemKind
    seq: int | None
    entry_id: str | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {"kind": self.kind, "seq": self.seq, "entry_id": self.entry_id, "detail": self.detail}


@dataclass(frozen=True)
class VerificationReport:
    """The result of :func:`verify_chain`."""

    entries: int
    head_seq: int
    head_hash: str
    problems: tuple[Problem, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        """True when the chain holds."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """The stable ``ledger verify --json`` shape."""
        return {
            "ok": self.ok,
            "entries": self.entries,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash,
            "problems": [p.to_dict() for p in self.problems],
        }


def verify_chain(ledger: Ledger, *, batch: int = 2000) -> VerificationReport:
    """Walk the whole chain in ``seq`` order and report every inconsistency."""
    problems: list[Problem] = []
    recent: deque[tuple[str, int, str]] = deque(maxlen=_LOOKBACK)  # (stored hash, seq, entry_id)
    previous_hash, previous_seq, count = GENESIS_HASH, 0, 0
    with ledger.read() as session:
        head = session.execute(select(HeadRow).where(HeadRow.id == 1)).scalar_one()
        rows = session.execute(select(EntryRow).order_by(EntryRow.seq).execution_options(yield_per=batch)).scalars()
        for row in rows:
            count += 1
            if chain_hash(row.prev_hash, hashed_content(row_values(row))) != row.entry_hash:
                problems.append(Problem("modified", row.seq, row.entry_id, "content does not match its hash"))
            if row.prev_hash != previous_hash:
                problems.extend(_explain_break(row, previous_seq, recent))
            recent.append((row.entry_hash, row.seq, row.entry_id))
            previous_hash, previous_seq = row.entry_hash, row.seq
        problems.extend(_check_head(head, previous_seq, previous_hash, recent))
        # The budget tables re-derived from the chain, in the same read (greenflow.ledger.budget_audit).
        problems.extend(Problem("budget", None, None, str(p)) for p in audit_budgets(session))
    return VerificationReport(count, head.seq, head.entry_hash, tuple(problems))


def _explain_break(row: EntryRow, previous_seq: int, recent: deque[tuple[str, int, str]]) -> list[Problem]:
    # Does this entry link to an earlier entry, skipping the ones just before it? Then those were inserted.
    skipped: list[tuple[int, str]] = []
    for stored_hash, seq, entry_id in reversed(recent):
        if stored_hash == row.prev_hash:
            return [
                Problem("inserted", s, e, f"not part of the chain: seq {seq} links straight to seq {row.seq}")
                for s, e in reversed(skipped)
            ]
        skipped.append((seq, entry_id))
    if row.prev_hash == GENESIS_HASH:
        return [Problem("inserted", s, e, "entries before the chain's first entry") for s, e in reversed(skipped)]
    missing = f"seq {previous_seq + 1}-{row.seq - 1}" if row.seq - previous_seq > 1 else "an entry"
    return [
        Problem(
            "removed",
            row.seq,
            row.entry_id,
            f"{missing} before this entry is missing or was re-hashed: its link matches no entry",
        )
    ]


def _check_head(head: HeadRow, last_seq: int, last_hash: str, recent: deque[tuple[str, int, str]]) -> list[Problem]:
    if head.seq == last_seq and head.entry_hash == last_hash:
        return []
    if head.seq < last_seq:
        return [
            Problem("inserted", seq, entry_id, f"after the chain's tip (seq {head.seq})")
            for _hash, seq, entry_id in recent
            if seq > head.seq
        ]
    if head.seq > last_seq:
        return [Problem("removed", head.seq, None, f"entries seq {last_seq + 1}-{head.seq} at the tip are missing")]
    return [Problem("modified", head.seq, None, "the last entry's hash differs from the recorded tip")]
