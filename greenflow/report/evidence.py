"""The evidence behind the figures: intensity sources, methods, unmeasured attempts, chain and anchor."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from greenflow.errors import InvalidInput
from greenflow.ledger import Ledger
from greenflow.ledger.models import EntryRow
from greenflow.report.attempt import ReportAttempt
from greenflow.report.figures import METERED_METHODS, NO_KEY, split_energy

if TYPE_CHECKING:
    from greenflow.ledger.anchor import Anchor

# A report lists at most this many damaged places of the chain (the count is always complete).
_MAX_PROBLEMS = 50


def intensity_sources(attempts: Sequence[ReportAttempt]) -> list[dict[str, Any]]:
    """Per region: which forecast provider and signal planned the work, and where the actual intensity came from."""
    groups: dict[tuple[str, str, str, str], int] = defaultdict(int)
    for attempt in attempts:
        if attempt.refused:
            continue
        key = (
            attempt.region or NO_KEY,
            attempt.forecast_provider or NO_KEY,
            attempt.forecast_signal or NO_KEY,
            attempt.intensity_source or NO_KEY,
        )
        groups[key] += 1
    return [
        {
            "region": region,
            "forecast_provider": provider,
            "forecast_signal": signal,
            "intensity_source": source,
            "entries": count,
        }
        for (region, provider, signal, source), count in sorted(groups.items())
    ]


def methods_table(attempts: Sequence[ReportAttempt]) -> list[dict[str, Any]]:
    """Per component and method: entries and kWh (unattributed energy as component ``unattributed``)."""
    entries: dict[tuple[str, str], int] = defaultdict(int)
    energy: dict[tuple[str, str], float] = defaultdict(float)
    for attempt in attempts:
        if attempt.energy_kwh is None:
            continue
        for component, kwh, method in attempt.components():
            entries[(component, method or "unrecorded")] += 1
            energy[(component, method or "unrecorded")] += kwh
        rest = split_energy(attempt)[2]
        if rest:
            entries[("unattributed", "unrecorded")] += 1
            energy[("unattributed", "unrecorded")] += rest
    return [
        {
            "component": component,
            "method": method,
            "estimated": method not in METERED_METHODS,
            "entries": entries[(component, method)],
            "energy_kwh": energy[(component, method)],
        }
        for component, method in sorted(entries)
    ]


def unmeasured_attempts(attempts: Sequence[ReportAttempt]) -> list[dict[str, Any]]:
    """Every attempt that was not refused and has no energy, with its reason (never counted as 0)."""
    return [
        {
            "seq": a.seq,
            "entry_id": a.entry_id,
            "recorded_at": a.recorded_at.isoformat(),
            "workflow_id": a.workflow_id,
            "run_id": a.run_id,
            "task_id": a.task_id,
            "attempt": a.attempt,
            "decision": a.decision,
            "reason": a.reason or "no reason recorded in the entry",
        }
        for a in attempts
        if a.unmeasured
    ]


def verification(ledger: Ledger, anchor: Anchor | None = None) -> dict[str, Any]:
    """The chain's verification: every entry, or with a checked ``anchor`` only the entries from its seq on.

    A break anywhere matters, so without an anchor every entry is recomputed. A signed anchor commits to
    every entry up to its seq (they were verified when it was made), so from it only the newer entries
    are recomputed, and the anchored entry must still hold the signed hash.
    """
    report = ledger.verify(anchors=[anchor], full=False) if anchor is not None else ledger.verify()
    problems = [p.to_dict() for p in report.problems]
    return {
        "ok": report.ok,
        "entries": report.entries,
        "head_seq": report.head_seq,
        "head_hash": report.head_hash,
        "from_seq": report.from_seq,
        "mode": f"incremental from anchor seq {report.from_seq}" if report.from_seq > 1 else "full",
        "problem_count": len(problems),
        "problems": problems[:_MAX_PROBLEMS],
    }


def load_anchor(path: str | Path | None, public_key: str | Path | None = None) -> Anchor | None:
    """The anchor file ``path`` read and its signature checked (:func:`greenflow.ledger.anchor.read_anchor`).

    The signature is checked with the key in ``public_key`` (a file), else with the key the anchor
    embeds. A missing, malformed or forged file raises :class:`InvalidInput` naming it.
    """
    from greenflow.ledger.anchor import public_key_from_file, read_anchor

    if path is None:
        if public_key is not None:
            raise InvalidInput("--public-key needs --anchor FILE", fix="add the anchor file the key signed")
        return None
    file = Path(path)
    if not file.is_file():
        raise InvalidInput(
            f"--anchor {str(path)!r} is not a file", fix="give the JSON file `greenflow ledger anchor` wrote"
        )
    key = public_key_from_file(public_key) if public_key is not None else None
    return read_anchor(file, key)


def anchor_evidence(ledger: Ledger, anchor: Anchor | None, public_key: str | Path | None = None) -> dict[str, Any]:
    """What a checked anchor says and whether the ledger still holds the entry it names."""
    if anchor is None:
        return {"status": "none", "reason": "no anchor file given (--anchor FILE)"}
    point = anchor.checkpoint
    with ledger.read() as session:
        first = session.execute(select(EntryRow.entry_hash).where(EntryRow.seq == 1)).scalar_one_or_none()
        stored = session.execute(select(EntryRow.entry_hash).where(EntryRow.seq == point.seq)).scalar_one_or_none()
    if first != point.ledger_id:
        matches, detail = False, "the ledger's first entry is not the one the anchor was made for: another ledger"
    elif stored is None:
        matches, detail = False, f"the ledger has no entry seq {point.seq}: the chain was cut"
    elif stored != point.entry_hash:
        matches, detail = False, f"the ledger's entry seq {point.seq} has a different hash: the chain was rewritten"
    else:
        matches, detail = True, f"the ledger's entry seq {point.seq} has the anchored hash"
    return {
        "status": "matches" if matches else "mismatch",
        "file": anchor.source,
        "seq": point.seq,
        "tip_hash": point.entry_hash,
        "ledger_id": point.ledger_id,
        "anchored_at": point.anchored_at.isoformat(),
        "detail": detail,
        "signature": "valid",
        "signature_key_id": point.key_id,
        "signature_key_source": f"--public-key {public_key}"
        if public_key is not None
        else "the key embedded in the anchor (proves the file intact, not who made it)",
    }
