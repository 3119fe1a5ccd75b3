"""CarbonAwareBashOperator: the ``greenflow run`` command it builds (no secret on the command line) and a
real run of it outside a DAG."""

from __future__ import annotations

import json
import shlex
from datetime import UTC, datetime
from typing import Any

import pytest

from greenflow.airflow.identity import identity_from_context
from greenflow.airflow.operators.greenflow_run_command import greenflow_run_command
from greenflow.airflow.spec_params import runtime_spec
from greenflow.ledger import Identity
from greenflow.lifecycle import Lifecycle


def _lifecycle(spec_args: dict[str, Any], options: dict[str, Any], conn: str | None = None) -> Lifecycle:
    spec, provider = runtime_spec(spec_args, options, conn)
    return Lifecycle(spec, Identity("airflow", "d", "r", "t"), provider=provider)


def test_credentials_go_in_the_environment_not_the_command(monkeypatch: pytest.MonkeyPatch, make_context: Any) -> None:
    conn = {"conn_type": "greenflow_electricitymaps", "password": "em-secret-789", "host": "http://127.0.0.1:9/v3"}
    monkeypatch.setenv("AIRFLOW_CONN_EM", json.dumps(conn))
    args = {
        "region": "DE",
        "provider": "electricitymaps",
        "expected_duration": "30m",
        "budget": "gpu",
        "estimate": "20g",
    }
    lifecycle = _lifecycle(args, {"emission_factor": "direct"}, "em")
    decision = lifecycle._decision(  # a plan for DE without calling the API
        lifecycle.now(), lifecycle.now(), lifecycle.now(), "DE", "run_now", "test"
    )
    context = make_context(task_id="package", try_number=2)
    run = greenflow_run_command(
        lifecycle,
        decision,
        identity_from_context(context),
        "python pack.py --out 'a b'",
        ledger_url="sqlite:////tmp/l.db",
        provider_options={"emission_factor": "direct"},
    )
    argv = shlex.split(run.command)
    assert argv[1:4] == ["-m", "greenflow.cli", "run"]
    assert argv[argv.index("--attempt") + 1] == "2" and argv[argv.index("--task") + 1] == "package"
    assert argv[argv.index("--region") + 1] == "DE" and argv[argv.index("--max-delay") + 1] == "0s"
    assert argv[argv.index("--estimate") + 1] == "20.0g" and argv[argv.index("--budget") + 1] == "gpu"
    assert "emission_factor=direct" in argv
    assert argv[-3:][1:] == ["-c", "python pack.py --out 'a b'"]
    assert "em-secret-789" not in run.command
    assert argv[argv.index("--decision") + 1] == "env:GREENFLOW_DECISION"
    handed_over = json.loads(run.env.pop("GREENFLOW_DECISION"))
    assert handed_over == decision.to_dict()  # the operator's plan, wait and reservation travel to greenflow run
    assert "em-secret-789" not in json.dumps(handed_over)
    assert run.env == {
        "GREENFLOW_LEDGER_URL": "sqlite:////tmp/l.db",
        "GREENFLOW_ELECTRICITYMAPS_TOKEN": "em-secret-789",
        "GREENFLOW_ELECTRICITYMAPS_URL": "http://127.0.0.1:9/v3",
    }


def test_a_replay_hands_greenflow_run_its_current_time() -> None:
    started = datetime.now(UTC).isoformat()
    options = {"now": "2022-06-01T00:00Z", "speed": 3600, "replay_started_at": started}
    lifecycle = _lifecycle({"region": "ES", "provider": "trace"}, options)
    decision = lifecycle.plan()
    run = greenflow_run_command(
        lifecycle,
        decision,
        Identity("airflow", "d", "r", "t"),
        "true",
        ledger_url="sqlite://",
        provider_options=options,
    )
    argv = shlex.split(run.command)
    replay = [a for a in argv if a.startswith("now=")]
    assert len(replay) == 1 and not any(a.startswith(("speed=", "replay_started_at=")) for a in argv)
