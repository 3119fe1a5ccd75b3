"""Reports an auditor accepts: energy, emissions (location- and market-based), SCI, evidence, uncertainty.

The entry point is :func:`build_report` (ledger, period, scope -> :class:`Report`); renderers turn a
report into JSON (``Report.to_dict()``, schema ``greenflow.report/1``), CSV, HTML and PDF. Nothing here
imports an orchestrator or the CLI.
"""

from greenflow.report.build import build_report
from greenflow.report.model import SCHEMA, Figure, Report
from greenflow.report.period import ReportPeriod
from greenflow.report.scope import ReportScope

__all__ = ["SCHEMA", "Figure", "Report", "ReportPeriod", "ReportScope", "build_report"]
