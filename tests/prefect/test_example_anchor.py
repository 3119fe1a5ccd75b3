"""The example anchoring flow (flows/ledger_anchor.py): key from the env or a Greenflow Ledger block."""

from __future__ import annotations

import base64
import importlib.util
import uuid
from pathlib import Path
from types import ModuleType

import pytest
from cryptography.hazmat.primitives import serialization
from pydantic import SecretStr

from greenflow.ledger import Entry, Identity, Ledger
from greenflow.ledger.anchor import generate_key, private_key_pem, read_anchor

pytestmark = [pytest.mark.xdist_group("prefect"), pytest.mark.usefixtures("prefect_server")]

FLOW = Path(__file__).resolve().parents[2] / "flows" / "ledger_anchor.py"


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"greenflow_example_anchor_{uuid.uuid4().hex}", FLOW)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_anchor_flow_with_the_key_in_the_environment(
    ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = generate_key()
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    monkeypatch.setenv("GREENFLOW_ANCHOR_KEY", base64.b64encode(raw).decode())
    for i in range(3):
        ledger.append(Entry.for_attempt(Identity("prefect", "wf", "run", f"t{i}"), "ran_now"))
    flow = _module().ledger_anchor
    first = flow(anchor_dir=str(tmp_path))
    assert first["seq"] == 3 and Path(str(first["path"])).parent == tmp_path
    ledger.append(Entry.for_attempt(Identity("prefect", "wf", "run", "t9"), "ran_now"))
    second = flow(anchor_dir=str(tmp_path))
    assert (second["seq"], second["verified"]) == (4, 2)  # incremental: the anchored entry and the new one
    assert [read_anchor(p, key.public_key()).checkpoint.seq for p in sorted(tmp_path.glob("*.json"))] == [3, 4]


def test_anchor_flow_with_the_key_in_a_ledger_block(ledger: Ledger, tmp_path: Path) -> None:
    from greenflow.prefect import GreenflowLedger

    key = generate_key()
    name = f"anchor-{uuid.uuid4().hex[:8]}"
    GreenflowLedger(
        url=SecretStr(str(ledger.engine.url.render_as_string(hide_password=False))),
        anchor_key=SecretStr(private_key_pem(key).decode()),
    ).save(name)
    ledger.append(Entry.for_attempt(Identity("prefect", "wf", "run", "t0"), "ran_now"))
    result = _module().ledger_anchor(anchor_dir=str(tmp_path), ledger_block=name)
    assert read_anchor(Path(str(result["path"])), key.public_key()).checkpoint.seq == 1
