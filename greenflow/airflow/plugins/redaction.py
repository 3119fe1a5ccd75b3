"""Airflow's secrets masker, the one private Airflow module the UI needs.

Airflow 3.3 has no public ``redact`` (its own deprecation notice points at ``airflow._shared``), and the
Carbon Ledger must mask exactly what Airflow masks in logs: secrets registered with the public
``airflow.sdk.log.mask_secret`` and values under sensitive keys. This module is the only place that
imports it; ``tests/airflow/test_airflow_contract.py`` pins its behaviour so an upgrade fails there.
"""

from __future__ import annotations

from typing import Any


def redact(value: Any) -> Any:
    """``value`` with Airflow's registered secrets and sensitive keys masked (strings, dicts, lists)."""
    from airflow._shared.secrets_masker import redact as airflow_redact

    return airflow_redact(value)
