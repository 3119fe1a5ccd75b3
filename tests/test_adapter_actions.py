"""The CLI reaches an adapter only by name: a missing orchestrator is a one-line error with the install command."""

from __future__ import annotations

import subprocess
import sys

import pytest

from greenflow.adapter_actions import adapter_action
from greenflow.errors import ConfigError, InvalidInput


def test_a_registered_action_is_the_adapters_function() -> None:
    from greenflow.prefect.deferral import schedule_green

    assert adapter_action("prefect.schedule_green") is schedule_green


def test_an_unknown_action_names_the_known_ones() -> None:
    with pytest.raises(InvalidInput, match=r"prefect\.schedule_green"):
        adapter_action("airflow.nothing")


def test_without_prefect_installed_the_action_says_which_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "prefect" or m.startswith(("prefect.", "greenflow.prefect"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "prefect", None)  # what an environment without the extra looks like
    with pytest.raises(ConfigError, match=r"pip install 'greenflow-carbon\[prefect\]'"):
        adapter_action("prefect.schedule_green")


def test_the_cli_imports_no_adapter_until_an_adapter_command_runs() -> None:
    code = (
        "import sys; from greenflow.cli.main import _register; _register(); "
        "adapters = ('greenflow.prefect', 'greenflow.airflow', 'prefect', 'airflow'); "
        "print(sorted(m for m in sys.modules if m.startswith(adapters)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
