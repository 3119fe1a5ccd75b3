"""``greenflow report``: the period's energy and emissions statement, as JSON, CSV, HTML or PDF."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from greenflow.cli.context import open_ledger
from greenflow.cli.output import err_console, handle_errors
from greenflow.errors import InvalidInput

FORMATS = ("json", "csv", "html", "pdf")


@handle_errors
def report(
    period: str | None = typer.Option(None, "--period", help="2026-11 (month), 2026-Q4 or 2026."),
    start: str | None = typer.Option(None, "--from", help="First day (2026-11-01) or ISO time with a zone."),
    end: str | None = typer.Option(None, "--to", help="Last day, included (2026-11-30), or ISO time (exclusive)."),
    scope: str = typer.Option("all", "--scope", help="all, team:<name>, workflow:<id> or tag:<tag>."),
    fmt: str = typer.Option("json", "--format", help="json, csv, html or pdf."),
    output: str | None = typer.Option(None, "--output", "-o", help="File to write (stdout for json/csv/html)."),
    anchor: str | None = typer.Option(None, "--anchor", help="Anchor JSON file to check the ledger against."),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="Verify the whole hash chain (default)."),
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
    built = build_report(open_ledger(), chosen_period, chosen_scope, anchor=anchor, verify=verify)
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
    if fmt == "csv":
        from greenflow.report.render_csv import render_csv

        return render_csv(built)
    if fmt == "html":
        from greenflow.report.render_html import render_html

        return render_html(built)
    from greenflow.report.render_pdf import render_pdf

    return render_pdf(built)
