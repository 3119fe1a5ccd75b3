"""`greenflow report` through the installed console script: output, and refusals with exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from greenflow.ledger import Ledger
from greenflow.report import ReportPeriod, build_report
from tests.report.mixed_ledger import write_mixed_ledger

REPO = Path(__file__).resolve().parents[2]
_SCRIPT = Path(sys.executable).parent / "greenflow"
GREENFLOW = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "greenflow.cli"]


@pytest.fixture(scope="module")
def mixed_ledger_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The report tests' mixed ledger (two teams, two regions, every kind of entry)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('mixed') / 'ledger.db'}"
    write_mixed_ledger(url).close()
    return url


def greenflow(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the console script as a user would."""
    return subprocess.run(
        [*GREENFLOW, *args], cwd=REPO, env=dict(os.environ), capture_output=True, text=True, timeout=120
    )


def test_json_report_on_stdout_is_the_report_api(mixed_ledger_url: str) -> None:
    result = greenflow("--ledger", mixed_ledger_url, "report", "--period", "2026-11", "--scope", "team:vision")
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    expected = build_report(Ledger(mixed_ledger_url), ReportPeriod.parse("2026-11"), "team:vision").to_dict()
    printed.pop("generated_at"), expected.pop("generated_at")
    assert printed == expected
    assert printed["schema"] == "greenflow.report/1"


def test_csv_report_to_a_file(mixed_ledger_url: str, tmp_path: Path) -> None:
    out = tmp_path / "november.csv"
    result = greenflow(
        "--ledger", mixed_ledger_url, "report", "--from", "2026-11-01", "--to", "2026-11-30", "--format", "csv",
        "-o", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = out.read_text().splitlines()
    assert lines[0].startswith("period_start,period_end,scope,dimension,key")
    assert lines[1].split(",")[3:5] == ["total", "all"]
    assert str(out) in result.stderr


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--period", "2026-13"], "2026-13"),
        (["--period", "20266-11"], "20266-11"),
        (["--from", "2026-11-30", "--to", "2026-11-01"], "2026-11-30"),
        (["--from", "2026-11-01T00:00", "--to", "2026-11-02"], "2026-11-01T00:00"),
        (["--from", "2026-11-01"], "--to"),
        (["--period", "2026-11", "--scope", "org:acme"], "org:acme"),
        (["--period", "2026-11", "--scope", "team:"], "team:"),
        (["--period", "2026-11", "--format", "docx"], "docx"),
        (["--period", "2026-11", "-o", "/nonexistent/dir/r.json"], "/nonexistent/dir/r.json"),
        (["--period", "2026-11", "--anchor", "/nonexistent/anchor.json"], "/nonexistent/anchor.json"),
    ],
)
def test_bad_arguments_exit_2_with_one_line_naming_the_value(
    mixed_ledger_url: str, args: list[str], named: str
) -> None:
    result = greenflow("--ledger", mixed_ledger_url, "report", *args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert named in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
