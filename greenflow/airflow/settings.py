"""The ``[greenflow]`` section of Airflow's configuration (declared in :mod:`.get_provider_info`).

Read through Airflow's own configuration, so ``AIRFLOW__GREENFLOW__LEDGER_URL`` and ``airflow.cfg`` both
work. Every read has a fallback: the task SDK's parser may not know the provider's defaults.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal, cast

from greenflow.clock import parse_duration
from greenflow.errors import InvalidInput
from greenflow.options import OPTION

OnBudgetExceeded = Literal["skip", "fail"]

_DEFAULTS = {
    "ledger_url": "",
    "ledger_conn_id": "",
    # The options table's default; a deployment's [greenflow] on_budget_exceeded replaces it for every task
    # that does not set its own.
    "on_budget_exceeded": str(OPTION["on_budget_exceeded"].default_for("airflow")),
    "refresh_interval": "30m",
    "budget_recheck_interval": "5m",
}


def option(key: str) -> str:
    """The value of ``[greenflow] key`` (its documented default when unset)."""
    from airflow.sdk import conf

    value = conf.get("greenflow", key, fallback=_DEFAULTS[key])
    return str(value if value is not None else _DEFAULTS[key]).strip()


def on_budget_exceeded(explicit: str | None) -> OnBudgetExceeded:
    """``skip`` or ``fail``: the operator's value, else the configured default, parsed by the options table.

    ``None`` means the task did not choose: ``[greenflow] on_budget_exceeded`` applies (the table's
    default when unset). A bad value is refused with the table's message; one from the configuration
    says so.
    """
    parse = OPTION["on_budget_exceeded"].parse
    if explicit is not None:
        return cast(OnBudgetExceeded, parse(explicit))
    try:
        return cast(OnBudgetExceeded, parse(option("on_budget_exceeded")))
    except InvalidInput as error:
        raise InvalidInput(f"[greenflow] {error.message}", fix=error.fix) from None


def duration_option(key: str) -> timedelta:
    """A duration option (``30m``, ``PT5M``, seconds), validated with greenflow's parser."""
    value = parse_duration(option(key), f"[greenflow] {key}")
    if value <= timedelta(0):
        raise InvalidInput(f"[greenflow] {key}={option(key)!r} is not positive", fix="give e.g. 5m")
    return value
