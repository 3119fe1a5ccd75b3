"""`greenflow instruments add|import|list|residual` through the console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_SCRIPT = Path(sys.executable).parent / "greenflow"
GREENFLOW = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "greenflow.cli"]


def greenflow(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the console script on the ledger at ``url``."""
    return subprocess.run(
        [*GREENFLOW, "--ledger", url, *args],
        cwd=REPO,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_add_import_residual_and_list(sqlite_url: str, tmp_path: Path) -> None:
    added = greenflow(
        sqlite_url, "instruments", "add", "--region", "GB", "--from", "2026-11-01", "--to", "2026-11-30",
        "--mwh", "120", "--factor", "0", "--kind", "ppa", "--reference", "PPA-2026-GB",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    deals = tmp_path / "deals.csv"
    deals.write_text("region,from,to,mwh,factor,kind,reference\nFR,2026-11-01,2026-11-30,40,0,go,GO-1\n")
    imported = greenflow(sqlite_url, "instruments", "import", str(deals))
    assert imported.returncode == 0, imported.stderr
    assert greenflow(sqlite_url, "instruments", "residual", "--region", "GB", "--factor", "350",
                     "--source", "AIB 2025").returncode == 0  # fmt: skip
    listed = json.loads(greenflow(sqlite_url, "instruments", "list", "--json").stdout)
    assert [(i["region"], i["mwh"], i["kind"], i["intact"]) for i in listed["instruments"]] == [
        ("GB", 120.0, "ppa", True),
        ("FR", 40.0, "go", True),
    ]
    assert listed["instruments"][0]["valid_to"] == "2026-12-01T00:00:00+00:00"  # --to day included
    assert [(r["region"], r["factor_g_per_kwh"], r["source"]) for r in listed["residual_mix"]] == [
        ("GB", 350.0, "AIB 2025")
    ]


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["add", "--region", "GB", "--from", "2026-11-01", "--to", "2026-11-30", "--mwh", "x", "--factor", "0",
          "--kind", "ppa"], "mwh='x'"),
        (["add", "--region", "GB", "--from", "2026-11-01", "--to", "2026-11-30", "--mwh", "1", "--factor", "0",
          "--kind", "vibes"], "vibes"),
        (["residual", "--region", "GB", "--factor", "-1", "--source", "AIB"], "factor='-1'"),
        (["residual", "--region", "GB", "--factor", "300", "--source", " "], "source"),
    ],
)  # fmt: skip
def test_bad_values_exit_2_naming_them(sqlite_url: str, args: list[str], named: str) -> None:
    result = greenflow(sqlite_url, "instruments", *args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert named in result.stderr and "Traceback" not in result.stderr


def test_a_bad_file_exits_2_naming_the_line_and_writes_nothing(sqlite_url: str, tmp_path: Path) -> None:
    deals = tmp_path / "deals.csv"
    deals.write_text(
        "region,from,to,mwh,factor,kind\nGB,2026-11-01,2026-11-30,10,0,ppa\nGB,2026-11-01,2026-11-30,ten,0,ppa\n"
    )
    result = greenflow(sqlite_url, "instruments", "import", str(deals))
    assert result.returncode == 2
    assert f"{deals} line 3" in result.stderr and "mwh='ten'" in result.stderr
    listed = json.loads(greenflow(sqlite_url, "instruments", "list", "--json").stdout)
    assert listed["instruments"] == []
    missing = greenflow(sqlite_url, "instruments", "import", str(tmp_path / "nope.csv"))
    assert missing.returncode == 2 and "nope.csv" in missing.stderr
