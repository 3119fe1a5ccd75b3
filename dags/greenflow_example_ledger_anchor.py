"""Example: anchor the provenance ledger every hour, outside its database.

Each run verifies the chain incrementally from the newest anchor already written (every earlier anchor
must still be in the chain: a cut end or a rewrite fails the task) and then signs the current tip into
the anchor directory. Keep that directory off the database host (a different volume, a bucket synced
elsewhere, a git repository): an attacker who can write the database must not be able to delete it.

Set up once:

    greenflow ledger keygen --out anchor-key          # anchor-key (private) and anchor-key.pub
    airflow connections add greenflow_anchor_key_default --conn-type greenflow_anchor_key \
        --conn-password "$(cat anchor-key)"

An auditor later checks the ledger against the anchors with the public key:

    greenflow ledger verify --anchor /srv/greenflow-anchors --public-key anchor-key.pub
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from airflow.sdk import DAG, Param, task

DAG_ID = "greenflow_example_ledger_anchor"

with DAG(
    dag_id=DAG_ID,
    schedule="@hourly",
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,  # two anchoring runs at once would each verify against a half-written directory
    params={
        "anchor_dir": Param(
            os.environ.get("GREENFLOW_ANCHOR_DIR", "/srv/greenflow-anchors"),
            type="string",
            description="Directory the anchors are written to (outside the ledger's database)",
        ),
        "anchor_key_conn_id": Param("greenflow_anchor_key_default", type="string"),
    },
    tags=["greenflow", "example", "ledger"],
) as dag:

    @task
    def verify_and_anchor(params=None) -> dict[str, object]:  # type: ignore[no-untyped-def]
        from greenflow.airflow.hooks.anchor import GreenflowAnchorKeyHook
        from greenflow.airflow.ledger_access import open_ledger
        from greenflow.ledger.anchor import verify_and_anchor as anchor_round

        key = GreenflowAnchorKeyHook(params["anchor_key_conn_id"]).get_conn()
        done = anchor_round(open_ledger(), key, params["anchor_dir"])
        if done.anchor is None:
            problems = "; ".join(f"{p.kind} seq {p.seq}: {p.detail}" for p in done.report.problems[:5])
            raise RuntimeError(f"the ledger failed verification, not anchored: {problems}")
        # Only public facts go to XCom: the checkpoint, never the key.
        return {"path": str(done.path), **done.anchor.checkpoint.to_dict(), "verified": done.report.entries}

    verify_and_anchor()
