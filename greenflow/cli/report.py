"""``greenflow report``: the period's energy and emissions statement, as JSON, CSV, HTML or PDF."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from greenflow.cli.context import open_ledger
from greenflow.cli.output import err_console, handle_errors
from greenflow.errors import InvalidInput

FORMATS = ("json", "csv", "html", "pdf", "sci")


@handle_errors
def report(
    period: str | None = typer.Option(None, "--period", help="2026-11 (month), 2026-Q4 or 2026."),
    start: str | None = typer.Option(None, "--from", help="First day (2026-11-01) or ISO time with a zone."),
    end: str | None = typer.Option(None, "--to", help="Last day, included (2026-11-30), or ISO time (exclusive)."),
    scope: str = typer.Option("all", "--scope", help="all, team:<name>, workflow:<id> or tag:<tag>."),
    fmt: str = typer.Option("json", "--format", help="json, csv, html, pdf, or sci (GSF SCI terms as JSON)."),
    output: str | None = typer.Option(None, "--output", "-o", help="File to write (stdout for json/csv/html)."),
    anchor: str | None = typer.Option(
        None, "--anchor", help="Signed anchor file (greenflow ledger anchor): verify the chain from its seq on."
    ),
    public_key: str | None = typer.Option(
        None, "--public-key", help="Public key file the anchor must be signed with (default: the one it embeds)."
    ),
    verify: bool = typer.Option(
        True, "--verify/--no-verify", help="Verify the hash chain (default; from the anchor with --anchor)."
    ),
) -> None:
    """Energy, location- and market-based emissions, SCI, savings, budgets and the evidence for a period."""
    from greenflow.report import ReportPeriod, ReportScope, build_report

    # Every argument is checked before the ledger is opened: a typo costs nothing.
    if fmt not in FORMATS:
        raise InvalidInput(f"--format {fmt!r} is unknown", fix=f"use one of {', '.join(FORMATS)}")
    if fmt == "pdf" and not output:
        raise InvalidInput("--format pdf needs -o FILE", fix="add -o report.pdf")
    chosen_period = ReportPeriod.parse(period, start, end)
    chosen_scope = ReportScope.parse(scope)
    if output and not Path(output).expanduser().resolve().parent.is_dir():
        raise InvalidInput(f"-o {output!r}: its directory does not exist", fix="create the directory first")
    built = build_report(
        open_ledger(), chosen_period, chosen_scope, anchor=anchor, public_key=public_key, verify=verify
    )
    content = _render(built, fmt)
    if output:
        path = Path(output).expanduser()
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        err_console.print(f"wrote the {fmt} report for {chosen_period.label} ({chosen_scope}) to {path}", markup=False)
    elif isinstance(content, bytes):  # pragma: no cover - refused above
        sys.stdout.buffer.write(content)
    else:
        sys.stdout.write(content)


def _render(built: object, fmt: str) -> str | bytes:
    import json

    from greenflow.report import Report

    assert isinstance(built, Report)
    if fmt == "json":
        return json.dumps(built.to_dict(), indent=2) + "\n"
    if fmt == "sci":
        from greenflow.report.exports import sci_export

        return json.dumps(sci_export(built), indent=2) + "\n"
    if fmt == "csv":
        from greenflow.report.render_csv import render_csv

        return render_csv(built)
    if fmt == "html":
        from greenflow.report.render_html import render_html

        return render_html(built)
    from greenflow.report.render_pdf import render_pdf

    return render_pdf(built)


@handle_errors
def evidence(
    entry_id: str = typer.Argument(..., help="The entry id of the run (ledger show --json gives it)."),
    anchor: str | None = typer.Option(None, "--anchor", help="Signed anchor file covering the entry."),
    public_key: str | None = typer.Option(
        None, "--public-key", help="Public key file the anchor must be signed with (default: the one it embeds)."
    ),
    output: str | None = typer.Option(None, "--output", "-o", help="File to write (stdout by default)."),
    verify: bool = typer.Option(
        True, "--verify/--no-verify", help="Verify the hash chain (default; from the anchor with --anchor)."
    ),
) -> None:
    """One run's evidence as JSON for a model card or an AI Act technical file (greenflow.run-evidence/1)."""
    import json

    from greenflow.report.evidence import anchor_evidence, load_anchor
    from greenflow.report.exports import run_evidence

    checked = load_anchor(anchor, public_key)
    if len(entry_id) > 36 or not entry_id.isprintable():
        raise InvalidInput(f"entry id {entry_id!r} is not an entry id", fix="give the entry_id of a ledger entry")
    ledger = open_ledger()
    entry = ledger.get(entry_id)
    if entry is None:
        raise InvalidInput(
            f"no ledger entry has id {entry_id!r}", fix="take the entry_id from greenflow ledger show --json"
        )
    verified = (ledger.verify(anchors=[checked], full=False) if checked else ledger.verify()).ok if verify else None
    card = run_evidence(entry, verified=verified, anchor=anchor_evidence(ledger, checked, public_key))
    content = json.dumps(card, indent=2) + "\n"
    if output:
        Path(output).expanduser().write_text(content, encoding="utf-8")
        err_console.print(f"wrote the evidence of entry {entry_id} to {output}", markup=False)
    else:
        sys.stdout.write(content)
