"""PDF: WeasyPrint prints the same HTML (the ``report`` extra and Debian's pango, see the Makefile)."""

from __future__ import annotations

from greenflow.errors import ConfigError
from greenflow.report.model import Report
from greenflow.report.render_html import render_html


def render_pdf(report: Report) -> bytes:
    """The report as PDF bytes."""
    try:
        from weasyprint import HTML
    except (ImportError, OSError) as exc:  # OSError: the package is there but pango is not
        raise ConfigError(
            f"PDF output needs WeasyPrint and its system libraries ({exc})",
            fix="pip install 'greenflow-carbon[report]' and install pango (make system-deps), or use --format html",
        ) from None
    pdf: bytes = HTML(string=render_html(report)).write_pdf()
    return pdf
