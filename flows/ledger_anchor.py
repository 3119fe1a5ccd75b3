"""Example: anchor the provenance ledger periodically, outside its database (a Prefect flow).

Each run verifies the chain incrementally from the newest anchor in ``anchor_dir`` (every earlier
anchor must still be in the chain: a cut end or a rewrite fails the run) and signs the current tip into
``anchor_dir``. Keep that directory off the database host.

The signing key comes from a ``Greenflow Ledger`` block's *Anchor key* field when ``ledger_block``
names one, else from ``$GREENFLOW_ANCHOR_KEY`` (PEM or base64; make one with
``greenflow ledger keygen --out anchor-key``). Serve it hourly:

    python flows/ledger_anchor.py          # anchor once into $GREENFLOW_ANCHOR_DIR
    # or: ledger_anchor.serve(name="hourly", cron="0 * * * *", parameters={"anchor_dir": "/srv/anchors"})
"""

from __future__ import annotations

import os

from prefect import flow

from greenflow.ledger import Ledger
from greenflow.ledger.anchor import private_key_from_env, verify_and_anchor

FLOW_NAME = "greenflow-ledger-anchor"


@flow(name=FLOW_NAME)
def ledger_anchor(anchor_dir: str, ledger_block: str | None = None) -> dict[str, object]:
    """Verify from the last anchor, then anchor the tip; fails (and anchors nothing) on a damaged chain."""
    if ledger_block:
        from greenflow.prefect import GreenflowLedger

        block = GreenflowLedger.load(ledger_block)
        ledger, key = block.get_ledger(), block.anchor_private_key()
    else:
        ledger, key = Ledger(), private_key_from_env()
        if key is None:
            raise RuntimeError("no anchor key: set GREENFLOW_ANCHOR_KEY or pass ledger_block")
    done = verify_and_anchor(ledger, key, anchor_dir)
    if done.anchor is None:
        problems = "; ".join(f"{p.kind} seq {p.seq}: {p.detail}" for p in done.report.problems[:5])
        raise RuntimeError(f"the ledger failed verification, not anchored: {problems}")
    return {"path": str(done.path), **done.anchor.checkpoint.to_dict(), "verified": done.report.entries}


if __name__ == "__main__":
    print(ledger_anchor(os.environ.get("GREENFLOW_ANCHOR_DIR", "anchors")))
