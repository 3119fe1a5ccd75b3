"""`greenflow ledger show|export|verify`, `greenflow db upgrade` and `greenflow demo`."""

from __future__ import annotations

import csv
import io
import json

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from greenflow.cli.main import app
from greenflow.ledger import Entry, Identity, Ledger


def _record(url: str, n: int = 3) -> list[Entry]:
    ledger = Ledger(url)
    return [
        ledger.append(
            Entry.for_attempt(
                Identity("airflow", "dag_a" if i % 2 else "dag_b", "run", f"t{i}"),
                "ran_now",
                energy_kwh=0.5,
                operational_g=100.0 + i,
                deferred_seconds=5400.0,
                forecast={"points": []},
            )
        )
        for i in range(n)
    ]


def test_show_json_is_the_documented_shape(cli, ledger_url: str) -> None:  # type: ignore[no-untyped-def]
    entries = _record(ledger_url)
    shown = json.loads(cli("ledger", "show", "--json").stdout)
    assert [e["entry_id"] for e in shown] == [e.entry_id for e in entries]
    assert "forecast" not in shown[0]  # the heavy stored forecast stays in export
    assert shown[0]["operational_g"] == 100.0
    assert shown[0]["entry_hash"] == entries[0].entry_hash
    filtered = json.loads(cli("ledger", "show", "--workflow", "dag_a", "--json").stdout)
    assert [e["task_id"] for e in filtered] == ["t1"]
    assert [e["task_id"] for e in json.loads(cli("ledger", "show", "--limit", "1", "--json").stdout)] == ["t2"]


def test_show_table_and_empty_state(cli, ledger_url: str) -> None:  # type: ignore[no-untyped-def]
    assert "no entries yet" in cli("ledger", "show").stdout
    _record(ledger_url, 1)
    out = cli("ledger", "show").stdout
    assert "1:30" in out  # deferred h:mm
    assert "500 Wh" in out


def test_export_csv_and_json(cli, ledger_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _record(ledger_url, 2)
    rows = list(csv.DictReader(io.StringIO(cli("ledger", "export", "--format", "csv").stdout)))
    assert len(rows) == 2
    assert rows[0]["energy_gpu_kwh"] == ""  # not measured is empty, never 0
    assert json.loads(rows[0]["forecast"]) == {"points": []}
    target = tmp_path / "out.json"
    assert cli("ledger", "export", "--format", "json", "-o", str(target)).exit_code == 0
    assert len(json.loads(target.read_text())) == 2
    bad = cli("ledger", "export", "--format", "xml")
    assert bad.exit_code == 2 and "--format 'xml' is unknown" in bad.stderr


def test_verify_exit_codes(cli, ledger_url: str) -> None:  # type: ignore[no-untyped-def]
    entries = _record(ledger_url)
    ok = cli("ledger", "verify", "--json")
    assert ok.exit_code == 0 and json.loads(ok.stdout)["ok"] is True
    with Ledger(ledger_url).engine.begin() as connection:
        connection.execute(text("UPDATE ledger_entries SET operational_g = 1 WHERE seq = 2"))
    damaged = cli("ledger", "verify", "--json")
    assert damaged.exit_code == 1
    problems = json.loads(damaged.stdout)["problems"]
    assert problems == [
        {"kind": "modified", "seq": 2, "entry_id": entries[1].entry_id, "detail": "content does not match its hash"}
    ]
    assert entries[1].entry_id in cli("ledger", "verify").stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "2024-01-01T00:00"], "naive"),
        (["--since", "last tuesday"], "--since='last tuesday' is neither a time nor a duration"),
    ],
)
def test_bad_show_filters(cli, args: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    result = cli("ledger", "show", *args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_unreachable_database_is_exit_2_and_hides_the_password() -> None:
    result = CliRunner().invoke(app, ["--ledger", "postgresql://u:hunter2@127.0.0.1:1/x", "budget", "list"])
    assert result.exit_code == 2
    assert "cannot connect to the ledger" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout


def test_outdated_schema_is_exit_2_with_the_fix(sqlite_url: str) -> None:
    Ledger(sqlite_url).close()
    with Ledger(sqlite_url).engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0000'"))
    result = CliRunner().invoke(app, ["--ledger", sqlite_url, "ledger", "show"])
    assert result.exit_code == 2
    assert "revision 0000" in result.stderr


def test_db_upgrade_creates_the_schema(sqlite_url: str) -> None:
    result = CliRunner().invoke(app, ["--ledger", sqlite_url, "db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "upgraded from empty to revision" in result.stdout
    assert "up to date" in CliRunner().invoke(app, ["--ledger", sqlite_url, "db", "upgrade"]).stdout


def test_show_marks_replayed_entries_and_says_what_their_times_are(cli, ledger_url: str) -> None:  # type: ignore[no-untyped-def]
    _record(ledger_url, 1)
    assert "replay" not in cli("ledger", "show").stdout  # a real-time entry says "real", no footnote
    Ledger(ledger_url).append(
        Entry.for_attempt(
            Identity("airflow", "dag_r", "run", "train"),
            "deferred",
            deferred_seconds=36000.0,
            extra={"replay": {"speed": 3600, "note": "times are a replayed trace's, not real"}},
        )
    )
    out = cli("ledger", "show").stdout
    assert "replay 3600x" in out and "real" in out
    assert "times are the trace's, not real time" in out


def test_show_prints_no_terminal_escape_codes_from_task_names(sqlite_url: str) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "GREENFLOW_LEDGER_URL": sqlite_url, "GREENFLOW_LEDGER_WRITE": "wait"}
    greenflow = [sys.executable, "-m", "greenflow.cli"]
    evil = "fit\x1b[2J\x1b]0;pwned\x07\u202e"  # clears the screen, retitles the terminal, reverses the text
    ran = subprocess.run(
        [*greenflow, "run", "--task", evil, "--workflow", "[bold]dag[/bold]", "--", "true"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    shown = subprocess.run([*greenflow, "ledger", "show"], env=env, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    for output in (ran.stderr, shown.stdout):
        assert "\x1b" not in output and "\x07" not in output and "\u202e" not in output
    assert "fit\\x1b[2J" in shown.stdout  # shown escaped, so the name can still be told apart
    assert "[bold]dag[/bold]" in shown.stdout  # names are text, never rich markup
    [entry] = Ledger(sqlite_url).entries()
    assert entry.task_id == evil  # the ledger keeps the name as given
