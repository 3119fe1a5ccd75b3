"""The Report page's data: the core's report (``greenflow.report``) over what the user may read.

The Carbon Ledger shows Airflow entries of the DAGs the auth manager lets the user read; the report
does the same. ``build_report`` selects by one scope (``all``, ``team:…``, ``workflow:…``, ``tag:…``)
and cannot restrict to a set of workflows, so this module loads the attempts itself with the scope's
condition *and* the page's visibility condition (:func:`~greenflow.airflow.plugins.queries.visible`),
then has the core's ``assemble`` compute every figure from them. What the core adds from outside the
selection is made fit for the user afterwards:

- budgets scoped to a DAG the user may not read are left out (as on the ledger page);
- the chain's verification is the Integrity page's (reused, never blocking), with problems in
  unreadable DAGs anonymised, instead of a fresh whole-ledger verification per request;
- the ledger's URL is shown only to users who may read Airflow's configuration;
- free text (unmeasured attempts' reasons, budget names) goes through Airflow's secrets masker.

Market-based Scope 2 shares each hour's instruments among all of the ledger's energy (two teams cannot
both claim a PPA), so when instruments are declared the whole period is loaded too, for that share only.
"""

from __future__ import annotations

import importlib
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_

from greenflow.airflow.plugins.integrity import Outcome, redacted
from greenflow.airflow.plugins.present import mask_json, mask_text
from greenflow.airflow.plugins.queries import readable_seqs, visible
from greenflow.clock import utcnow
from greenflow.errors import InvalidInput
from greenflow.ledger import Ledger
from greenflow.ledger.budgets import Scope
from greenflow.report import Report, ReportPeriod, ReportScope
from greenflow.report.build import assemble
from greenflow.report.instruments import InstrumentStore
from greenflow.report.loader import load_attempts
from greenflow.report.render_html import LABELS

SCOPE_KINDS = ("all", "team", "workflow", "tag")
FORMATS = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "html": "text/html; charset=utf-8",
    "pdf": "application/pdf",
}
# The figures in words, as the report's own HTML names them (the JSON's names are shown next to them).
FIGURE_LABELS = LABELS
# The report's problems list is capped by the core at this many; the count stays complete.
MAX_PROBLEMS = 50
# The scope line names at most this many readable DAGs (the count is always given).
_NAMED_DAGS = 10
# The core's messages name the CLI's options; on the page they are the form's fields.
_CLI_WORDS = (("--period", "period"), ("--from", "from"), ("--to", "to"), ("--scope", "scope"))


@dataclass(frozen=True)
class ReportRequest:
    """A Report page or download request: the period and scope, and the form's values to show again."""

    period: ReportPeriod
    scope: ReportScope
    month: str
    start: str
    end: str

    def params(self) -> dict[str, str]:
        """Query parameters naming this period and scope (download links, the API)."""
        span = {"period": self.month} if self.month else {"from": self.start, "to": self.end}
        return {**span, "scope": str(self.scope)}


def _text(value: str | None) -> str:
    return (value or "").strip()


def _ui_error(error: InvalidInput) -> InvalidInput:
    message, fix = error.message, error.fix or ""
    for cli, field in _CLI_WORDS:
        message, fix = message.replace(cli, field), fix.replace(cli, field)
    return InvalidInput(message, fix=fix or None)


def parse_request(
    *,
    period: str | None = None,
    start: str | None = None,
    end: str | None = None,
    scope: str | None = None,
    scope_kind: str | None = None,
    scope_value: str | None = None,
    now: datetime | None = None,
) -> ReportRequest:
    """The period (``period`` = month/quarter/year, or ``from`` and ``to``; default: this month) and scope.

    ``scope`` is the CLI's form (``team:vision``); the page's form sends ``scope_kind`` and
    ``scope_value`` instead. Anything the core refuses is an :class:`InvalidInput` naming the field.
    """
    month, begin, finish = _text(period), _text(start), _text(end)
    try:
        if month and (begin or finish):
            raise InvalidInput(
                f"period={month!r} given with from/to", fix="choose a month, or clear it and give from and to"
            )
        if not (month or begin or finish):
            month = f"{(now or utcnow()):%Y-%m}"
        chosen = ReportPeriod.parse(month) if month else ReportPeriod.parse(start=begin or None, end=finish or None)
        return ReportRequest(chosen, _scope(scope, scope_kind, scope_value), month, begin, finish)
    except InvalidInput as error:
        raise _ui_error(error) from None


def _scope(scope: str | None, kind: str | None, value: str | None) -> ReportScope:
    text, kind_text, value_text = _text(scope), _text(kind), _text(value)
    if text and kind_text:
        raise InvalidInput(f"scope={text!r} given with scope_kind={kind_text!r}", fix="give one or the other")
    if text or not kind_text:
        return ReportScope.parse(text or None)
    if kind_text not in SCOPE_KINDS:
        raise InvalidInput(f"scope_kind={kind_text!r} is not a scope", fix=f"choose one of {', '.join(SCOPE_KINDS)}")
    if kind_text == "all":
        return ReportScope.parse(None)
    if not value_text:
        raise InvalidInput(f"scope {kind_text} needs a name", fix=f"give the {kind_text} as recorded in the ledger")
    return ReportScope.parse(f"{kind_text}:{value_text}")


def parse_format(value: str) -> str:
    """One of :data:`FORMATS`."""
    if value not in FORMATS:
        raise InvalidInput(f"format {value!r} is unknown", fix=f"use one of {', '.join(FORMATS)}")
    return value


@dataclass(frozen=True)
class VisibleScope(ReportScope):
    """A report scope further restricted to the Airflow entries of the DAGs a user may read."""

    readable: frozenset[str] = frozenset()

    def condition(self) -> ColumnElement[bool]:
        """The scope's condition and the Carbon Ledger's visibility condition."""
        return and_(self.scope.condition(), visible(self.readable))

    def matches(self, team: str | None, workflow_id: str, tags: tuple[str, ...]) -> bool:
        """The scope's test, and the workflow must be readable (loaded attempts are Airflow's already)."""
        return workflow_id in self.readable and super().matches(team, workflow_id, tags)

    def __str__(self) -> str:
        return str(self.scope)


def restriction(readable: frozenset[str]) -> str:
    """How the UI's selection differs from the CLI's: only Airflow entries of the readable DAGs."""
    names = sorted(readable)
    more = len(names) - _NAMED_DAGS
    shown = ", ".join(names[:_NAMED_DAGS]) + (f" and {more} more" if more > 0 else "")
    count = f"{len(names)} DAG{'' if len(names) == 1 else 's'}"
    return f"Airflow entries of the {count} you may read ({shown})" if names else "no DAG you may read"


def verification_evidence(outcome: Outcome | None, ledger: Ledger, readable: frozenset[str]) -> dict[str, Any]:
    """The report's ``evidence.verification`` from the Integrity page's result (problems anonymised)."""
    result = None if outcome is None else outcome.result
    if result is None:
        return {
            "ok": None,
            "reason": "the chain has not been verified yet on this server: open the Integrity page "
            "(large ledgers are verified on request there) or run greenflow ledger verify",
        }
    report = result.report
    seqs = [p.seq for p in report.problems if p.seq is not None]
    problems = redacted(report, readable_seqs(ledger, seqs, readable))
    return {
        "ok": report.ok,
        "entries": report.entries,
        "head_seq": report.head_seq,
        "head_hash": report.head_hash,
        "problem_count": len(problems),
        "problems": problems[:MAX_PROBLEMS],
        "checked_at": result.checked_at.isoformat(),
    }


def visible_report(
    ledger: Ledger,
    request: ReportRequest,
    readable: frozenset[str],
    *,
    verification: dict[str, Any],
    ledger_label: str,
    now: datetime | None = None,
) -> Report:
    """The report over ``request``'s period and scope, restricted to Airflow entries of ``readable`` DAGs."""
    period, scope = request.period, request.scope
    attempts = load_attempts(ledger, period, VisibleScope(scope.scope, readable))
    # Without instruments the market-based figure needs no one else's energy: skip the second load.
    everyone = load_attempts(ledger, period, ReportScope.parse(None)) if InstrumentStore(ledger).instruments() else None
    report = assemble(ledger, period, scope, attempts, everyone, verify=False, now=now)
    only = restriction(readable)
    evidence = dict(report.evidence)
    evidence["verification"] = verification
    evidence["anchor"] = {
        "status": "none",
        "reason": "the Carbon Ledger page compares with no anchor file: run greenflow report --anchor FILE for that",
    }
    evidence["selection"] = f"{evidence.get('selection', '')}; {only}"
    return replace(
        report,
        scope=f"{scope} ({only})",
        ledger=ledger_label,
        budgets=tuple(mask_json(line) for line in _readable_budgets(report.budgets, readable)),
        evidence=mask_json(evidence),
        market_based=mask_json(dict(report.market_based)),
    )


def _readable_budgets(lines: Sequence[dict[str, Any]], readable: frozenset[str]) -> list[dict[str, Any]]:
    kept = []
    for line in lines:
        scope = Scope.parse(line["scope"]) if line.get("scope") else None
        if scope is None or scope.kind != "workflow" or scope.value in readable:
            kept.append(line)
    return kept


# -- renderers -----------------------------------------------------------------------------------------
_probe_lock = threading.Lock()
_probed: dict[str, str | None] = {}


def renderer_missing(fmt: str) -> str | None:
    """Why the core cannot render ``fmt`` here (``None``: it can). Checked once per process.

    HTML and PDF renderers may be absent from an older core; PDF also needs WeasyPrint and pango.
    """
    if fmt in ("json", "csv"):
        return None
    with _probe_lock:
        if fmt not in _probed:
            _probed[fmt] = _probe(fmt)
        return _probed[fmt]


def _probe(fmt: str) -> str | None:
    try:
        importlib.import_module(f"greenflow.report.render_{fmt}")
    except ImportError:
        return f"this greenflow has no {fmt.upper()} renderer for reports (greenflow.report.render_{fmt})"
    if fmt == "pdf":
        try:
            importlib.import_module("weasyprint")
        except (ImportError, OSError) as exc:  # OSError: WeasyPrint is installed but pango is not
            reason = mask_text(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            return (
                f"PDF needs WeasyPrint and its system libraries on the API server ({reason}): "
                "pip install 'greenflow-carbon[report]' and install pango (make system-deps)"
            )
    return None


def render(report: Report, fmt: str) -> bytes:
    """The report in ``fmt`` (one of :data:`FORMATS`), by the core's renderers."""
    if fmt == "json":
        return json.dumps(report.to_dict(), indent=2, ensure_ascii=False).encode()
    missing = renderer_missing(fmt)
    if missing is not None:
        raise InvalidInput(f"format {fmt!r} is not available: {missing}", fix="download JSON or CSV instead")
    module = importlib.import_module(f"greenflow.report.render_{fmt}")
    output = getattr(module, f"render_{fmt}")(report)
    return output if isinstance(output, bytes) else str(output).encode()


def filename(request: ReportRequest, fmt: str) -> str:
    """``greenflow-report-2026-11-all.pdf``: period and scope, only characters safe in a header."""
    label = request.month or f"{request.start}_{request.end}"
    raw = f"greenflow-report-{label}-{request.scope}"
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "-" for c in raw)
    return f"{safe[:150]}.{fmt}"
