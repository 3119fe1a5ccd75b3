"""The ``greenflow run`` invocation that meters a shell command for :class:`CarbonAwareBashOperator`.

The operator has already planned, reserved and waited for the green window (deferred in Airflow), so
``greenflow run`` is handed that decision (``--decision env:GREENFLOW_DECISION``, the JSON of
:meth:`Decision.to_dict`): it does not plan again, meters the command's process tree, records the
attempt with the operator's plan, wait and reservation, settles it and passes the exit code through.
It gets the operator's regions home first (a route's home when the task was routed), so its entry counts
the savings against the same home.
Credentials travel as the provider's ``GREENFLOW_*`` environment variables, never on the command line
(which ``ps`` and the UI's rendered fields would show).
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from greenflow.intensity.providers.http import Secret
from greenflow.ledger import Identity
from greenflow.lifecycle import Decision, Lifecycle

# Connection options that greenflow run's providers read from the environment, per provider.
_ENV: dict[str, dict[str, str]] = {
    "ukgrid": {"base_url": "GREENFLOW_UKGRID_URL"},
    "electricitymaps": {"base_url": "GREENFLOW_ELECTRICITYMAPS_URL", "token": "GREENFLOW_ELECTRICITYMAPS_TOKEN"},
    "watttime": {
        "base_url": "GREENFLOW_WATTTIME_URL",
        "username": "GREENFLOW_WATTTIME_USERNAME",
        "password": "GREENFLOW_WATTTIME_PASSWORD",
    },
    "carbon-aware-sdk": {"base_url": "GREENFLOW_CARBON_AWARE_SDK_URL"},
    "trace": {},
}
DECISION_ENV = "GREENFLOW_DECISION"
# A replay's clock options: greenflow run gets the replay's current time instead (see below).
_REPLAY_OPTIONS = frozenset({"now", "speed", "replay_started_at"})


@dataclass(frozen=True)
class RunCommand:
    """The wrapped shell command and the environment it needs."""

    command: str
    env: dict[str, str]


def greenflow_run_command(
    lifecycle: Lifecycle,
    decision: Decision,
    identity: Identity,
    user_command: str,
    *,
    ledger_url: str,
    provider_options: Mapping[str, Any],
) -> RunCommand:
    """``<python> -m greenflow.cli run <flags> -- bash -c <user_command>`` plus its environment."""
    spec = lifecycle.spec
    args = [
        sys.executable,
        "-m",
        "greenflow.cli",
        "run",
        "--quiet",  # the command's last output line stays the task's XCom, as with BashOperator
        "--workflow",
        identity.workflow_id,
        "--run-id",
        identity.run_id,
        "--task",
        identity.task_id,
        "--attempt",
        str(identity.attempt),
        "--provider",
        spec.provider,
        "--expected-duration",
        f"{spec.expected_duration.total_seconds():g}s",
        "--max-delay",
        "0s",
        "--on-provider-error",
        "run",
        "--decision",
        f"env:{DECISION_ENV}",
    ]
    # Home first, as the operator's spec has them (a route's home when routed): greenflow run counts the
    # savings against starting at home, and the entry's policy lists the regions that were weighed.
    for region in _regions(spec.candidate_regions, decision.region):
        args += ["--region", region]
    for key, value in sorted(_string_options(provider_options).items()):
        if lifecycle.replaying and key in _REPLAY_OPTIONS:
            continue
        args += ["--provider-option", f"{key}={value}"]
    if lifecycle.replaying:
        # The replay's current time puts the command at the moment the plan reached.
        args += ["--provider-option", f"now={lifecycle.now().isoformat()}"]
    if spec.budget:
        args += ["--budget", spec.budget]
    if spec.estimate is not None:
        args += ["--estimate", _quantity(spec.estimate.value, spec.estimate.unit)]
    if spec.pue is not None:
        args += ["--pue", f"{spec.pue:g}"]
    for tag in spec.tags:
        args += ["--tag", tag]
    if spec.team:
        args += ["--team", spec.team]
    args += ["--", shutil.which("bash") or "bash", "-c", user_command]
    env = {"GREENFLOW_LEDGER_URL": ledger_url, DECISION_ENV: json.dumps(decision.to_dict())}
    names = _ENV.get(spec.provider, {})
    for key, value in spec.provider_options.items():
        if key in names and value is not None:
            env[names[key]] = value.reveal() if isinstance(value, Secret) else str(value)
    return RunCommand(" ".join(shlex.quote(a) for a in args), env)


def _regions(candidates: tuple[str, ...], chosen: str | None) -> list[str]:
    """The spec's regions, home first, with the decision's region among them (none when it has none)."""
    if chosen is None:
        return []
    return [*candidates, chosen] if chosen not in candidates else list(candidates)


def _string_options(options: Mapping[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in options.items() if isinstance(v, (str, int, float)) and not isinstance(v, bool)}


def _quantity(value: float, unit: str) -> str:
    return f"{value!r}g" if unit == "gCO2e" else f"{value!r}kWh"
