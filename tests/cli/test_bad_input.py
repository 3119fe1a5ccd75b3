"""Bad values stop at the boundary (issue 14, item 4): exit 2, one line naming the value, nothing stored.

Each case runs the real console script, as a user would, and checks that nothing reached the ledger
or the spool, and that the ledger still verifies.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from greenflow import spool
from greenflow.ledger import Budget, Ledger

GREENFLOW = [sys.executable, "-m", "greenflow.cli"]


def _greenflow(url: str, *args: str | bytes) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GREENFLOW_LEDGER_URL": url, "GREENFLOW_CPU_TDP_W": "100", "GREENFLOW_LEDGER_WRITE": "wait"}
    return subprocess.run([*GREENFLOW, *args], env=env, capture_output=True, text=True, errors="replace", timeout=120)


def _one_line_exit_2(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


LONG = "t" * 251


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        pytest.param(["--pue", "NaN"], ["pue=nan", "not a finite number"], id="pue-nan"),
        pytest.param(["--pue", "inf"], ["pue=inf"], id="pue-inf"),
        pytest.param(["--min-savings", "nan"], ["min_savings"], id="min-savings-nan"),
        pytest.param(["--max-delay", "99999999h"], ["max_delay", "366"], id="max-delay-huge"),
        pytest.param(["--expected-duration", "99999999999h"], ["expected_duration"], id="duration-overflow"),
        pytest.param(["--attempt", "99999999999999999999"], ["attempt=99999999999999999999"], id="attempt-huge"),
        pytest.param(["--attempt", "0"], ["attempt=0 is below 1"], id="attempt-zero"),
        pytest.param(["--task", LONG], ["task_id=", "251 characters", "250"], id="task-too-long"),
        pytest.param(["--workflow", "w" * 300], ["workflow_id=", "300 characters"], id="workflow-too-long"),
        pytest.param(["--team", "x" * 121], ["team=", "120"], id="team-too-long"),
        pytest.param(["--tag", "x" * 251], ["tag=", "250"], id="tag-too-long"),
        pytest.param(["--estimate", "1e400g"], ["estimate='1e400g'", "finite"], id="estimate-infinite"),
        pytest.param(["--region", "GB", "--task", LONG], ["task_id="], id="full-path-task-too-long"),
        pytest.param(["--budget", "b", "--estimate", "1e400g"], ["estimate='1e400g'"], id="full-path-estimate"),
    ],
)
def test_a_bad_run_option_exits_2_naming_it_and_leaves_nothing_behind(
    ledger_url: str, tmp_path: Path, args: list[str], needles: list[str]
) -> None:
    marker = tmp_path / "started"
    result = _greenflow(ledger_url, "run", *args, "--", "touch", str(marker))
    _one_line_exit_2(result, *needles)
    assert not marker.exists()
    assert spool.pending(spool.spool_dir(ledger_url)) == []  # no spool file that could never be written
    ledger = Ledger(ledger_url)
    assert ledger.entries() == []
    assert ledger.verify().ok


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        pytest.param(["--min-savings", "150"], ["min_savings=150 is out of range", "0 to 100"], id="min-savings-150"),
        pytest.param(["--threshold", "-10"], ["threshold=-10 is out of range"], id="threshold-negative"),
        pytest.param(["--budget", ""], ["budget='' is empty"], id="budget-empty"),
        pytest.param(["--budget", "b" * 121], ["budget=", "121 characters", "120"], id="budget-too-long"),
        pytest.param(
            ["--budget", "  gpu-monthly  "], ["budget='  gpu-monthly  '", "surrounding spaces"], id="budget-spaced"
        ),
        pytest.param(
            ["--deadline", "2020-01-01T00:00Z"], ["deadline=2020-01-01T00:00:00+00:00 leaves no room"], id="past"
        ),
        pytest.param(
            ["--region", "GB", "--deadline", "2020-01-01T00:00Z"],
            ["deadline=2020-01-01T00:00:00+00:00"],
            id="full-past",
        ),
        pytest.param(["--min-segment", "0s", "--interruptible"], ["min_segment='0s' is not positive"], id="segment"),
        pytest.param(["--sample-interval", "0"], ["sample_interval=0 is out of range"], id="sample-interval"),
        pytest.param(["--embodied", "5 kWh"], ["embodied='5 kWh' is not an amount of CO2e"], id="embodied-energy"),
    ],
)
def test_the_options_tables_bounds_exit_2_before_the_command_starts(
    sqlite_url: str, tmp_path: Path, args: list[str], needles: list[str]
) -> None:
    # Issue 15: values the Airflow operators used to accept, refused with the table's message (on SQLite
    # only: nothing reaches the ledger, so its backend does not matter).
    marker = tmp_path / "started"
    _one_line_exit_2(_greenflow(sqlite_url, "run", *args, "--", "touch", str(marker)), *needles)
    assert not marker.exists()
    assert spool.pending(spool.spool_dir(sqlite_url)) == []
    assert Ledger(sqlite_url).entries() == []


def test_a_task_name_that_is_not_utf8_exits_2(sqlite_url: str, tmp_path: Path) -> None:
    marker = tmp_path / "started"
    env = {**os.environ, "GREENFLOW_LEDGER_URL": sqlite_url, "GREENFLOW_LEDGER_WRITE": "wait"}
    # Bytes in argv that do not decode become lone surrogates in Python: the ledger cannot store them.
    result = subprocess.run(
        [*GREENFLOW, "run", "--task", os.fsencode("task-\udcff\udcfe"), "--", "touch", str(marker)],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    stderr = result.stderr.decode("utf-8", "replace")
    assert "task_id=" in stderr and "not valid UTF-8" in stderr
    assert not marker.exists()
    assert spool.pending(spool.spool_dir(sqlite_url)) == []


def test_a_nan_pue_used_to_break_verify_for_good(ledger_url: str) -> None:
    _one_line_exit_2(_greenflow(ledger_url, "run", "--pue", "NaN", "--", "true"), "pue=nan")
    ok = _greenflow(ledger_url, "run", "--pue", "1.2", "--", "true")
    assert ok.returncode == 0, ok.stderr
    verify = _greenflow(ledger_url, "ledger", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        pytest.param(["--limit", "1e400g"], ["limit='1e400g'", "finite"], id="infinite-limit"),
        pytest.param(["--limit", "1e30kWh"], ["limit='1e30kWh'"], id="absurd-limit"),
        pytest.param(["--limit", "1g", "--period", "rolling:99999999999h"], ["rolling:99999999999h"], id="period"),
        pytest.param(["--limit", "1g", "--period", "rolling:9000h"], ["9000", "8784h"], id="period-over-a-year"),
    ],
)
def test_a_bad_budget_exits_2_and_is_not_stored(ledger_url: str, args: list[str], needles: list[str]) -> None:
    _one_line_exit_2(_greenflow(ledger_url, "budget", "set", "b", *args), *needles)
    assert Ledger(ledger_url).budgets.list() == []


def test_budget_status_json_is_valid_json_even_for_a_budget_stored_infinite(sqlite_url: str) -> None:
    # A budget an older greenflow let in with an infinite limit (SQLite keeps inf as a REAL).
    Ledger(sqlite_url).budgets.set(Budget.parse("old", "10g", "day"))
    with create_engine(sqlite_url).begin() as connection:
        connection.execute(text("UPDATE budgets SET limit_value = 9e999"))
    result = _greenflow(sqlite_url, "budget", "status", "--json")
    assert result.returncode == 0, result.stderr

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    [status] = json.loads(result.stdout, parse_constant=refuse)
    assert status["limit"] is None


@pytest.mark.parametrize(
    ("url", "needles"),
    [
        pytest.param("mysql://user:secret@db.example/ledger", ["mysql", "not support"], id="mysql"),
        pytest.param("postgresql+asyncpg://db.example/ledger", ["postgresql+asyncpg"], id="async-driver"),
        pytest.param("not a url", ["not a database URL"], id="not-a-url"),
    ],
)
@pytest.mark.parametrize("command", [["ledger", "verify"], ["budget", "set", "b", "--limit", "1g"]])
def test_an_unusable_ledger_url_exits_2_without_a_traceback(url: str, needles: list[str], command: list[str]) -> None:
    result = _greenflow(url, *command)
    _one_line_exit_2(result, *needles)
    assert "secret" not in result.stderr


@pytest.mark.parametrize("command", [["ledger", "verify"], ["budget", "set", "b", "--limit", "1g"], ["ledger", "show"]])
def test_a_text_file_as_the_ledger_exits_2_and_is_left_alone(tmp_path: Path, command: list[str]) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes, not a database\n")
    result = _greenflow(f"sqlite:///{notes}", *command)
    _one_line_exit_2(result, str(notes), "not a SQLite database")
    assert notes.read_text() == "my notes, not a database\n"


def test_verify_of_a_ledger_that_does_not_exist_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "typo" / "ledger.db"
    result = _greenflow(f"sqlite:///{missing}", "ledger", "verify")
    _one_line_exit_2(result, str(missing))
    assert not missing.exists() and not missing.parent.exists()


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        pytest.param(["b" * 121, "--limit", "1g"], ["budget name=", "121 characters", "120"], id="name-too-long"),
        pytest.param(["b", "--limit", "1g", "--scope", "tag:" + "t" * 251], ["--scope value="], id="scope-too-long"),
    ],
)
def test_a_budget_name_or_scope_over_its_column_exits_2(ledger_url: str, args: list[str], needles: list[str]) -> None:
    _one_line_exit_2(_greenflow(ledger_url, "budget", "set", *args), *needles)
    assert Ledger(ledger_url).budgets.list() == []


def test_a_spool_directory_that_cannot_be_written_stops_the_run_before_the_command(
    sqlite_url: str, tmp_path: Path
) -> None:
    marker = tmp_path / "started"
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the spool directory should be")
    env = {**os.environ, "GREENFLOW_LEDGER_URL": sqlite_url, "GREENFLOW_SPOOL_DIR": str(blocked)}
    result = subprocess.run(
        [*GREENFLOW, "run", "--", "touch", str(marker)], env=env, capture_output=True, text=True, timeout=120
    )
    _one_line_exit_2(result, "cannot write the run's spool file", "GREENFLOW_SPOOL_DIR")
    assert not marker.exists()  # a command that could not leave a trace would run unrecorded if killed
