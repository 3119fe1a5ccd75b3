"""The example anchoring DAG: verifies from the last anchor, writes a signed checkpoint outside the DB."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import text

from greenflow.ledger import Entry, Identity, Ledger
from greenflow.ledger.anchor import generate_key, read_anchor

pytestmark = pytest.mark.xdist_group("airflow-dagtest")
DAG_ID = "greenflow_example_ledger_anchor"


def _states(run: Any) -> dict[str, str | None]:
    return {ti.task_id: ti.state and str(ti.state) for ti in run.get_task_instances()}


def test_anchor_dag_anchors_then_fails_on_a_cut_chain(
    dagbag: Any, gf_ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = generate_key()
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    monkeypatch.setenv(
        "AIRFLOW_CONN_GREENFLOW_ANCHOR_KEY_DEFAULT",
        json.dumps({"conn_type": "greenflow_anchor_key", "password": base64.b64encode(raw).decode()}),
    )
    for i in range(4):
        gf_ledger.append(Entry.for_attempt(Identity("cli", "wf", "run", f"t{i}"), "ran_now", charged_g=1.0))
    anchors = tmp_path / "anchors"
    dag = dagbag.get_dag(DAG_ID)

    first = dag.test(run_conf={"anchor_dir": str(anchors)})
    assert _states(first) == {"verify_and_anchor": "success"}
    (written,) = anchors.glob("*.json")
    assert read_anchor(written, key.public_key()).checkpoint.seq == 4

    with gf_ledger.engine.begin() as connection:  # cut the anchored end and move the tip back
        connection.execute(text("DELETE FROM ledger_entries WHERE seq > 2"))
        connection.execute(
            text("UPDATE ledger_head SET seq = 2, entry_hash = (SELECT entry_hash FROM ledger_entries WHERE seq = 2)")
        )
    second = dag.test(run_conf={"anchor_dir": str(anchors)})
    assert _states(second) == {"verify_and_anchor": "failed"}
    assert len(list(anchors.glob("*.json"))) == 1  # a damaged chain is never anchored
