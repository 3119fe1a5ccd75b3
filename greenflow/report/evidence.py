"""The evidence behind the figures: intensity sources, methods, unmeasured attempts, chain and anchor."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import select

from greenflow.errors import InvalidInput
from greenflow.ledger import Ledger
from greenflow.ledger.models import EntryRow
from greenflow.report.attempt import ReportAttempt
from greenflow.report.figures import NO_KEY, split_energy

# A report lists at most this many damaged places of the chain (the count is always complete).
_MAX_PROBLEMS = 50
_HASH = re.compile(r"^[0-9a-f]{64}$")


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
            "estimated": method in ("estimate", "unrecorded"),
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


def verification(ledger: Ledger) -> dict[str, Any]:
    """The whole chain's verification (every entry, not only the period's: a break anywhere matters)."""
    report = ledger.verify()
    problems = [p.to_dict() for p in report.problems]
    return {
        "ok": report.ok,
        "entries": report.entries,
        "head_seq": report.head_seq,
        "head_hash": report.head_hash,
        "problem_count": len(problems),
        "problems": problems[:_MAX_PROBLEMS],
    }


def read_anchor(ledger: Ledger, path: str | Path | None) -> dict[str, Any]:
    """What an anchor file says and whether the ledger still holds the entry it names.

    The anchor format is greenflow's ``ledger anchor`` JSON: at least ``seq`` and ``tip_hash`` (or
    ``entry_hash``). Signatures are not checked here; the report says so instead of claiming them.
    """
    if path is None:
        return {"status": "none", "reason": "no anchor file given (--anchor FILE)"}
    file = Path(path)
    if not file.is_file():
        raise InvalidInput(
            f"--anchor {str(path)!r} is not a file", fix="give the JSON file `greenflow ledger anchor` wrote"
        )
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"--anchor {str(path)!r} is not JSON ({exc})", fix="give the anchor's JSON file") from None
    seq = data.get("seq") if isinstance(data, dict) else None
    tip = (data.get("tip_hash") or data.get("entry_hash")) if isinstance(data, dict) else None
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0 or not isinstance(tip, str) or not _HASH.match(tip):
        raise InvalidInput(
            f"--anchor {str(path)!r} has no valid seq and tip_hash",
            fix='an anchor is JSON with "seq" (integer) and "tip_hash" (64 hex digits)',
        )
    with ledger.read() as session:
        stored = session.execute(select(EntryRow.entry_hash).where(EntryRow.seq == seq)).scalar_one_or_none()
    if stored is None:
        matches, detail = False, f"the ledger has no entry seq {seq}"
    elif stored != tip:
        matches, detail = False, f"the ledger's entry seq {seq} has a different hash: the chain was rewritten"
    else:
        matches, detail = True, f"the ledger's entry seq {seq} has the anchored hash"
    signature = data.get("signature")
    return {
        "status": "matches" if matches else "mismatch",
        "file": str(file),
        "seq": seq,
        "tip_hash": tip,
        "anchored_at": data.get("anchored_at") or data.get("created_at"),
        "detail": detail,
        "signature": "absent" if not signature else "present, not checked by the report (use greenflow ledger verify)",
    }
