"""Hash-chain verification: recompute every entry's hash and every link, and name what is wrong.

Each entry stores SHA-256(previous entry's hash + its canonical content). Walking the chain in ``seq``
order tells three kinds of damage apart:

- *modified*: an entry's content no longer matches its own hash;
- *inserted*: an entry sits between two entries that link to each other directly;
- *removed*: an entry links to a hash no earlier entry has (or the tip's seq and hash are gone).

Besides the hashes, the columns budgets match on in SQL must hold exactly the stored form the hashed
content implies (tags ``,a,b,``; on SQLite also the storage class and time format), so no edit can move
a charge between budgets without being reported.

Everything is read in one snapshot (:func:`snapshot`), so appends committed meanwhile are never
mistaken for damage. A hash chain without a secret cannot stop someone who rewrites every later hash or
cuts the end off together with the tip: signed anchors kept elsewhere (:mod:`greenflow.ledger.anchor`)
catch that.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Literal, cast

from sqlalchemy import Row, String, and_, func, select, type_coerce
from sqlalchemy.orm import Session

from greenflow.ledger.budget_audit import audit_budgets
from greenflow.ledger.database import READONLY
from greenflow.ledger.entry import GENESIS_HASH, chain_hash, hashed_content
from greenflow.ledger.models import EntryRow, HeadRow
from greenflow.ledger.rows import row_values

if TYPE_CHECKING:
    from greenflow.ledger.anchor import Anchor
    from greenflow.ledger.store import Ledger

ProblemKind = Literal["modified", "inserted", "removed", "anchor", "budget"]
# How far back an inserted run of entries is looked for (bounded memory on a million-entry ledger).
_LOOKBACK = 4096
# Core columns, not ORM objects: building an ORM instance per entry was a third of verify's time.
_ENTRY_COLUMNS = tuple(EntryRow.__table__.columns)
# SQLite compares by storage class and text: these columns feed the budgets' SQL and must be stored as
# greenflow writes them (a number as REAL, a time as 'YYYY-MM-DD HH:MM:SS.ffffff' text).
_SQLITE_KINDS: dict[str, frozenset[str]] = {
    "charged_g": frozenset({"real", "null"}),
    "charged_kwh": frozenset({"real", "null"}),
    "workflow_id": frozenset({"text"}),
    "team": frozenset({"text", "null"}),
    "budget": frozenset({"text", "null"}),
    "tags": frozenset({"text"}),
    "recorded_at": frozenset({"text"}),
}
_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"
_SQLITE_TIME_GLOB = (
    "[0-9][0-9][0-9][0-9]-[0-1][0-9]-[0-3][0-9] [0-2][0-9]:[0-5][0-9]:[0-6][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]"
)
_columns = EntryRow.__table__.c
# SQLite checks every row in C: 1 when the stored forms are greenflow's; Python explains the rare others.
_SQLITE_STORED = (
    and_(
        *(func.typeof(_columns[name]).in_(sorted(kinds)) for name, kinds in _SQLITE_KINDS.items()),
        type_coerce(_columns.recorded_at, String).op("GLOB")(_SQLITE_TIME_GLOB),
    ).label("stored_form_ok"),
    *(func.typeof(_columns[name]).label(f"stored_kind_{name}") for name in _SQLITE_KINDS),
    type_coerce(_columns.recorded_at, String).label("stored_recorded_at"),
)


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
    from_seq: int = 1
    """The first seq recomputed: 1 for a full verification, the newest anchor's seq otherwise."""
    anchors: tuple[Anchor, ...] = ()
    """The signed checkpoints checked against the chain."""

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
            "from_seq": self.from_seq,
            "anchors": [
                {
                    "source": a.source,
                    "seq": a.checkpoint.seq,
                    "entry_hash": a.checkpoint.entry_hash,
                    "key_id": a.checkpoint.key_id,
                }
                for a in self.anchors
            ],
            "problems": [p.to_dict() for p in self.problems],
        }


def verify_chain(
    ledger: Ledger, *, batch: int = 2000, anchors: Sequence[Anchor] = (), full: bool = True
) -> VerificationReport:
    """Walk the chain in ``seq`` order, in one consistent snapshot, and report every inconsistency.

    ``anchors`` are signed checkpoints (:mod:`greenflow.ledger.anchor`): each must still be in the
    chain with its hash. With ``full=False`` only the newest anchored entry and the entries after it
    are recomputed (the others were checked when that anchor was made, and its hash commits to them).
    """

    problems: list[Problem] = []
    recent: deque[tuple[str, int, str]] = deque(maxlen=_LOOKBACK)  # (stored hash, seq, entry_id)
    previous_hash, previous_seq, count = GENESIS_HASH, 0, 0
    with snapshot(ledger) as session:
        head = session.execute(select(HeadRow.seq, HeadRow.entry_hash).where(HeadRow.id == 1)).one()
        problems.extend(_check_anchors(session, anchors))
        start = 1
        if anchors and not full:
            start = max(a.checkpoint.seq for a in anchors)
            anchored = session.execute(select(EntryRow.prev_hash).where(EntryRow.seq == start)).scalar_one_or_none()
            if anchored is None:  # the anchor problem is already reported: fall back to the whole chain
                start = 1
            else:
                previous_hash, previous_seq = anchored, start - 1
        sqlite = ledger.engine.dialect.name == "sqlite"
        query = select(*_ENTRY_COLUMNS, *(_SQLITE_STORED if sqlite else ())).where(EntryRow.seq >= start)
        result = session.execute(query.order_by(EntryRow.seq).execution_options(yield_per=batch))
        names = tuple(result.keys())
        for stored in result:
            count += 1
            # A namespace of plain attributes reads ~3x faster than attribute access on a Row.
            row = SimpleNamespace(**dict(zip(names, stored, strict=True)))
            values = row_values(cast("EntryRow", row))
            if chain_hash(row.prev_hash, hashed_content(values)) != row.entry_hash:
                problems.append(Problem("modified", row.seq, row.entry_id, "content does not match its hash"))
            else:
                problems.extend(_check_stored_form(row, values, sqlite))
            if row.prev_hash != previous_hash:
                problems.extend(_explain_break(row, previous_seq, recent))
            recent.append((row.entry_hash, row.seq, row.entry_id))
            previous_hash, previous_seq = row.entry_hash, row.seq
        problems.extend(_check_head(head, previous_seq, previous_hash, recent))
        # The budget tables re-derived from the chain, in the same read (greenflow.ledger.budget_audit).
        problems.extend(Problem("budget", None, None, str(p)) for p in audit_budgets(session))
    return VerificationReport(
        count,
        head.seq,
        head.entry_hash,
        tuple(problems),
        from_seq=start,
        anchors=tuple(anchors),
    )


@contextmanager
def snapshot(ledger: Ledger) -> Iterator[Session]:
    """A read-only transaction in which every statement sees the same committed state.

    PostgreSQL's default READ COMMITTED takes a new snapshot per statement: the tip read first and the
    entries read next could disagree while writers append (a false "inserted after the tip"), so the
    transaction runs REPEATABLE READ. SQLite in WAL mode keeps one snapshot from a transaction's first
    read to its end, and ``BEGIN`` (never ``IMMEDIATE``: no writer waits for a verification) opens it.
    """
    with Session(ledger.engine, expire_on_commit=False) as session:
        if ledger.engine.dialect.name == "postgresql":
            options: dict[str, Any] = {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
        else:
            options = {READONLY: True}
        session.connection(execution_options=options)
        yield session


def _check_anchors(session: Session, anchors: Sequence[Anchor]) -> list[Problem]:
    if not anchors:
        return []
    first = session.execute(select(EntryRow.entry_hash).where(EntryRow.seq == 1)).scalar_one_or_none()
    wanted = sorted({a.checkpoint.seq for a in anchors})
    found = session.execute(select(EntryRow.seq, EntryRow.entry_hash).where(EntryRow.seq.in_(wanted)))
    stored = {seq: stored_hash for seq, stored_hash in found}  # dict(result) would take Result.keys() as a mapping
    problems = []
    for anchor in anchors:
        point = anchor.checkpoint
        name = f"anchor {anchor.source} (seq {point.seq}, hash {point.entry_hash[:12]}…, {point.key_id})"
        if first != point.ledger_id:
            detail = "the chain's first entry is not the one this anchor was made for: another ledger, or rewritten"
            problems.append(Problem("anchor", 1, None, f"{name}: {detail}"))
        elif point.seq not in stored:
            problems.append(
                Problem("anchor", point.seq, None, f"{name}: the anchored entry is gone (chain truncated or cut)")
            )
        elif stored[point.seq] != point.entry_hash:
            problems.append(
                Problem("anchor", point.seq, None, f"{name}: the entry at that seq has another hash (rewritten)")
            )
    return problems


def _check_stored_form(row: Any, values: dict[str, Any], sqlite: bool) -> list[Problem]:
    """Columns the budgets query must hold exactly what the hashed content implies.

    The hash covers the values as read back; a budget matches entries in SQL on the stored form. Two
    stored forms that read back alike (tags ``,ml,`` and ``ml,``; on SQLite a time written with a ``T``
    or a number stored as text) would move a charge between budgets without changing any hash.
    """
    problems = []
    tags = values["tags"]
    canonical = "," + ",".join(tags) + "," if tags else ""
    if (row.tags or "") != canonical:
        problems.append(
            Problem(
                "modified",
                row.seq,
                row.entry_id,
                f"stored tags {row.tags!r} are not the hashed tags' form {canonical!r} (budgets match on it)",
            )
        )
    if sqlite and not row.stored_form_ok:
        odd = [
            f"{name} stored as {kind}"
            for name, allowed in _SQLITE_KINDS.items()
            if (kind := getattr(row, f"stored_kind_{name}")) not in allowed
        ]
        recorded = row.recorded_at
        if recorded is not None and row.stored_recorded_at != recorded.replace(tzinfo=None).strftime(_SQLITE_TIME):
            odd.append(f"recorded_at stored as {row.stored_recorded_at!r}")
        detail = "stored form differs from the hashed values: " + (", ".join(odd) or "unexpected storage")
        problems.append(Problem("modified", row.seq, row.entry_id, detail))
    return problems


def _explain_break(row: Any, previous_seq: int, recent: deque[tuple[str, int, str]]) -> list[Problem]:
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


def _check_head(
    head: Row[int, str], last_seq: int, last_hash: str, recent: deque[tuple[str, int, str]]
) -> list[Problem]:
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
