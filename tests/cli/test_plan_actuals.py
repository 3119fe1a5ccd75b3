"""``greenflow plan --actuals``: a user's own forecast snapshots are corrected with their own past errors.

The snapshot file is the shipped GB forecast file copied under another name (as a user's would be); the
actuals file holds only ``slot_start`` and the actual intensity. Without ``--actuals`` there is nothing to
learn the errors from, and the plan says so by leaving the correction out.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "greenflow" / "data" / "gb"


def _plan(tmp_path: Path, *extra: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "greenflow.cli", "plan", "--trace", "mine.csv", "--region", "GB", "--now",
         "2023-03-22T04:00Z", "--duration", "2h", "--max-delay", "12h", "--max-staleness", "14h", "--json", *extra],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False, env=dict(os.environ),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_a_users_snapshot_file_is_corrected_when_its_actuals_are_given(tmp_path: Path) -> None:
    shutil.copy(DATA / "forecasts.csv", tmp_path / "mine.csv")
    rows = (DATA / "actuals.csv").read_text().splitlines()
    (tmp_path / "actual.csv").write_text("\n".join(",".join(row.split(",")[:2]) for row in rows) + "\n")

    plain = _plan(tmp_path)
    assert "forecast_correction" not in plain  # auto: nothing to learn from, nothing said

    corrected = _plan(tmp_path, "--actuals", "actual.csv")
    record = corrected["forecast_correction"]
    assert isinstance(record, dict) and record["regions"]["GB"]["applied"] is True
    assert "pairs over the last 7 days" in record["regions"]["GB"]["reason"]
