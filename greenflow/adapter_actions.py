"""Adapter functions the CLI calls, registered here by name so that the CLI never imports an adapter.

``greenflow prefect schedule`` is a command line over a Prefect action (creating a deployment's flow
run at the green start). The CLI looks the action up by name at call time: ``greenflow --help`` and
every other command stay free of Prefect, and a missing extra is a one-line error naming the install
command instead of an ``ImportError``. The import-linter contracts in ``pyproject.toml`` keep the
CLI and the adapters apart; this table is the one documented way across.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from greenflow import DISTRIBUTION
from greenflow.errors import ConfigError, InvalidInput

#: name -> ("module:function", the extra that installs the orchestrator it needs).
ACTIONS: dict[str, tuple[str, str]] = {
    "prefect.schedule_green": ("greenflow.prefect.deferral:schedule_green", "prefect"),
}


def adapter_action(name: str) -> Callable[..., Any]:
    """The function registered as ``name`` (imported now); ConfigError when its orchestrator is not installed."""
    try:
        target, extra = ACTIONS[name]
    except KeyError:
        raise InvalidInput(f"no adapter action is named {name!r}", fix=f"use one of {', '.join(ACTIONS)}") from None
    module_name, _, function = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is None or error.name.startswith("greenflow"):
            raise
        raise ConfigError(
            f"{name} needs {error.name}, which is not installed",
            fix=f"pip install '{DISTRIBUTION}[{extra}]'",
        ) from None
    action: Callable[..., Any] = getattr(module, function)
    return action
