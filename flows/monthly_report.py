"""Example: last month's greenflow report, published in Prefect's UI on the 1st of every month.

``monthly_report`` builds the report (the same figures as ``greenflow report --period 2026-11``) over
the ledger the flows write to and publishes it as the markdown artifact ``greenflow-report-<month>``
(e.g. ``greenflow-report-2026-11``; Prefect's *Artifacts* page lists one per month, each version linked
to the run that made it). Give ``period`` (``2026-11``, ``2026-Q4``) to report another span, ``scope``
(``team:vision``, ``workflow:…``, ``tag:gpu``) for one team's statement; the scope is then part of the
key.

    python flows/monthly_report.py            # serves the deployment: 06:00 UTC on the 1st (CRON below)
    python flows/monthly_report.py 2026-11    # one run now, for November 2026

The ledger is greenflow's default (``GREENFLOW_LEDGER_URL``) or pass ``ledger=`` a ``GreenflowLedger``
block's name. For the PDF to hand to finance: ``greenflow report --period 2026-11 --format pdf``.
"""

from __future__ import annotations

import sys

from prefect import flow, task

from greenflow.prefect.report_artifact import publish_report_artifact

FLOW_NAME = "greenflow-monthly-report"
CRON = "0 6 1 * *"  # 06:00 UTC on the 1st: the month before is complete (entries count by recorded_at)


@task(retries=2, retry_delay_seconds=60)
def publish(period: str | None, scope: str, ledger: str | None) -> str:
    """Build the report and publish the artifact; returns its key."""
    published = publish_report_artifact(period, scope, ledger=ledger)
    assert published is not None, "inside a task run the artifact is always published"
    return published.key


@flow(name=FLOW_NAME, log_prints=True)
def monthly_report(period: str | None = None, scope: str = "all", ledger: str | None = None) -> str:
    """Last month's report (or ``period``'s) over ``scope``, as the ``greenflow-report-<period>`` artifact."""
    key = publish(period, scope, ledger)
    print(f"published the report as artifact {key}")
    return key


def deployment():  # type: ignore[no-untyped-def]
    """The monthly deployment (served by ``python flows/monthly_report.py``)."""
    return monthly_report.to_deployment(name="monthly", cron=CRON, tags=["greenflow", "report"])


if __name__ == "__main__":
    if len(sys.argv) > 1:
        monthly_report(period=sys.argv[1])
    else:
        from prefect import serve

        serve(deployment())
