"""Where greenflow's settings come from: explicit arguments, then ``GREENFLOW_*`` env vars, then defaults.

Airflow connections and Prefect blocks feed the same settings through their adapters; the core only
reads what it is given and the environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from platformdirs import user_data_path

LEDGER_URL_ENV = "GREENFLOW_LEDGER_URL"


def default_ledger_path() -> Path:
    """The SQLite ledger used when nothing else is configured (under the user's data directory)."""
    return user_data_path("greenflow", appauthor=False) / "ledger.db"


def ledger_url(explicit: str | None = None) -> str:
    """The ledger's SQLAlchemy URL: ``explicit``, else ``$GREENFLOW_LEDGER_URL``, else the default SQLite file."""
    if explicit:
        return explicit
    from_env = os.environ.get(LEDGER_URL_ENV)
    if from_env:
        return from_env
    return f"sqlite:///{default_ledger_path()}"


@dataclass(frozen=True)
class Defaults:
    """Defaults for estimates and accounting when a task declares none."""

    # Used to reserve budget for a task with no history and no explicit estimate.
    estimate_kwh: float = float(os.environ.get("GREENFLOW_DEFAULT_ESTIMATE_KWH", "0.5"))
    # Used to turn an energy estimate into grams when no forecast is available.
    intensity_g_per_kwh: float = float(os.environ.get("GREENFLOW_DEFAULT_INTENSITY", "400"))
    # A worker that stops heart-beating for this long loses its reservation.
    reservation_ttl_seconds: float = float(os.environ.get("GREENFLOW_RESERVATION_TTL", str(6 * 3600)))
