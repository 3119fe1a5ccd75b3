"""The ``[greenflow]`` section of Airflow's configuration (declared in :mod:`.get_provider_info`).

Read through Airflow's own configuration, so ``AIRFLOW__GREENFLOW__LEDGER_URL`` and ``airflow.cfg`` both
work. Every read has a fallback: the task SDK's parser may not know the provider's defaults.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from greenflow.clock import parse_duration
from greenflow.errors import InvalidInput

OnBudgetExceeded = Literal["skip", "fail"]
ON_BUDGET_EXCEEDED: tuple[OnBudgetExceeded, ...] = ("skip", "fail")

_DEFAULTS = {
    "ledger_url": "",
    "ledger_conn_id": "",
    "on_budget_exceeded": "skip",
    "refresh_interval": "30m",
    "budget_recheck_interval": "5m",
}


def option(key: str) -> str:
    """The value of ``[greenflow] key`` (its documented default when unset)."""
    from airflow.sdk import conf

    value = conf.get("greenflow", key, fallback=_DEFAULTS[key])
    return str(value if value is not None else _DEFAULTS[key]).strip()


def on_budget_exceeded(explicit: str | None) -> OnBudgetExceeded:
    """``skip`` or ``fail``: the operator's value, else the configured default; anything else is refused."""
    value = (explicit if explicit is not None else option("on_budget_exceeded")).strip().lower()
    if value not in ON_BUDGET_EXCEEDED:
        raise InvalidInput(
            f"on_budget_exceeded={value!r} is not skip or fail",
            fix="skip records skipped_budget and skips the task; fail records it and fails the task",
        )
    return value


def duration_option(key: str) -> timedelta:
    """A duration option (``30m``, ``PT5M``, seconds), validated with greenflow's parser."""
    value = parse_duration(option(key), f"[greenflow] {key}")
    if value <= timedelta(0):
        raise InvalidInput(f"[greenflow] {key}={option(key)!r} is not positive", fix="give e.g. 5m")
    return value
