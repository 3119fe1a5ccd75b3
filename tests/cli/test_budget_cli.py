"""`greenflow budget …`: documented JSON, tables, and one-line errors with exit code 2."""

from __future__ import annotations

import json

import pytest

from greenflow.ledger import Entry, Identity, Ledger


def test_set_list_and_status_json(cli, ledger_url: str) -> None:  # type: ignore[no-untyped-def]
    assert cli("budget", "set", "gpu", "--limit", "5kg", "--period", "month", "--scope", "tag:gpu").exit_code == 0
    Ledger(ledger_url).append(
        Entry.for_attempt(Identity("cli", "w", "r", "t"), "ran_now", charged_g=1250.0, tags=("gpu",))
    )
    listed = json.loads(cli("budget", "list", "--json").stdout)
    assert listed == [{"name": "gpu", "limit": 5000.0, "unit": "gCO2e", "period": "month", "scope": "tag:gpu"}]
    status = json.loads(cli("budget", "status", "gpu", "--json").stdout)
    assert status["spent"] == 1250.0
    assert status["remaining"] == 3750.0
    assert status["share_spent"] == 0.25
    assert status["exhausted"] is False
    assert {"limit", "spent", "reserved", "remaining", "period_end", "period_start", "unit"} <= set(status)
    table = cli("budget", "status").stdout
    assert "gpu" in table and "25%" in table


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--limit", "5 furlongs"], "limit='5 furlongs' has an unknown unit 'furlongs'"),
        (["--limit", "-1kg"], "must be greater than zero"),
        (["--limit", "0kWh"], "must be greater than zero"),
        (["--limit", "5kg", "--period", "quarter"], "period 'quarter' is unknown"),
        (["--limit", "5kg", "--timezone", "Mars/Olympus"], "time zone 'Mars/Olympus' is unknown"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(cli, args: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    result = cli("budget", "set", "gpu", *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert json.loads(cli("budget", "list", "--json").stdout) == []


def test_status_of_unknown_budget(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("budget", "status", "nope")
    assert result.exit_code == 2
    assert "budget 'nope' does not exist" in result.stderr
    assert "greenflow budget set nope" in result.stderr
