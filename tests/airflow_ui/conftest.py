"""Fixtures for the Carbon Ledger UI: seeded ledgers, a fake auth manager and a client on the plugin app.

The in-process tests mount the plugin's own FastAPI app under ``/greenflow`` (as Airflow does) and keep
Airflow's real auth dependencies (``get_user``, ``requires_access_view``, ``requires_access_dag``); only
the auth manager behind them is a fake, because Airflow's simple auth manager cannot restrict a user to
some DAGs and validates tokens against a metadata database. The real one is exercised through a real
``airflow api-server`` in ``test_real_server.py``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

if "airflow.configuration" not in sys.modules:  # pragma: no branch - a private home before Airflow loads
    _HOME = Path(tempfile.mkdtemp(prefix="greenflow-ui-airflow-home-"))
    os.environ.update(
        {
            "AIRFLOW_HOME": str(_HOME),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_HOME / 'airflow.db'}",
        }
    )

from greenflow.ledger import Budget, Entry, Identity, Ledger

NOW = datetime.now(UTC).replace(microsecond=0)
READABLE = frozenset({"train_llm", "nightly_eval"})
ALL_DAGS = frozenset({*READABLE, "secret_dag"})
TOKENS = {
    "admin": "token-admin",
    "viewer": "token-viewer",
    "trainer": "token-trainer",
    "blind": "token-blind",
    "nobody": "token-nobody",
}


# -- the auth manager ----------------------------------------------------------------------------------
@dataclass
class FakeUser:
    """A user of the fake auth manager."""

    username: str
    dags: frozenset[str]
    plugins: bool = True
    config: bool = False

    def get_id(self) -> str:
        return self.username

    def get_name(self) -> str:
        return self.username


USERS = {
    "admin": FakeUser("admin", ALL_DAGS, config=True),
    "viewer": FakeUser("viewer", READABLE),
    "trainer": FakeUser("trainer", frozenset({"train_llm"})),  # one DAG only
    "blind": FakeUser("blind", frozenset()),
    "nobody": FakeUser("nobody", ALL_DAGS, plugins=False),
}


@dataclass
class FakeAuthManager:
    """Answers Airflow's auth questions from :data:`USERS`; records the DAG checks it was asked."""

    dag_checks: list[tuple[str, str | None]] = field(default_factory=list)

    async def get_user_from_token(self, token: str) -> FakeUser:
        from jwt import InvalidTokenError

        for name, known in TOKENS.items():
            if token == known:
                return USERS[name]
        raise InvalidTokenError("unknown token")

    def is_authorized_view(self, *, access_view: Any, user: FakeUser) -> bool:
        return user.plugins and access_view.value == "PLUGINS"

    def is_authorized_dag(self, *, method: str, user: FakeUser, access_entity: Any = None, details: Any = None) -> bool:
        dag_id = getattr(details, "id", None)
        self.dag_checks.append((method, dag_id))
        if dag_id is None:
            return user.dags == ALL_DAGS
        return method == "GET" and dag_id in user.dags

    def get_authorized_dag_ids(self, *, user: FakeUser, method: str = "GET", session: Any = None) -> set[str]:
        return set(user.dags) if method == "GET" else set()

    def is_authorized_configuration(self, *, method: str, user: FakeUser, details: Any = None) -> bool:
        return user.config

    def get_url_login(self, **kwargs: Any) -> str:
        return "/auth/login?next=" + str(kwargs.get("next_url", ""))


@pytest.fixture
def auth_manager(monkeypatch: pytest.MonkeyPatch) -> FakeAuthManager:
    """The fake auth manager, installed where Airflow's security dependencies look for it."""
    from airflow.api_fastapi import app as airflow_app
    from airflow.models.dag import DagModel

    manager = FakeAuthManager()
    monkeypatch.setattr(airflow_app._AuthManagerState, "instance", manager)
    # requires_access_dag asks the metadata database which team owns a DAG; there are no teams here.
    monkeypatch.setattr(DagModel, "get_team_name", staticmethod(lambda dag_id, **kwargs: None))
    return manager


# -- the app -------------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _fresh_plugin_state() -> Iterator[None]:
    """Each test opens its own ledger and verifies afresh."""
    from greenflow.airflow.plugins import integrity, ledger_source

    ledger_source.forget_all()
    integrity.forget()
    yield
    ledger_source.forget_all()
    integrity.forget()


@pytest.fixture
def make_client(auth_manager: FakeAuthManager, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """``make_client(ledger_url, user="viewer", root_path="")``: a client on the plugin app mounted like Airflow."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from greenflow.airflow.plugins.app import create_app

    def make(url: str | None, user: str | None = "viewer", root_path: str = "") -> TestClient:
        monkeypatch.delenv("AIRFLOW__GREENFLOW__LEDGER_CONN_ID", raising=False)
        if url is None:
            monkeypatch.delenv("AIRFLOW__GREENFLOW__LEDGER_URL", raising=False)
        else:
            monkeypatch.setenv("AIRFLOW__GREENFLOW__LEDGER_URL", url)
        root = FastAPI(root_path=root_path)
        root.mount("/greenflow", create_app())
        headers = {"Authorization": f"Bearer {TOKENS[user]}"} if user else {}
        return TestClient(root, base_url=f"http://testserver{root_path}", headers=headers)

    return make


@pytest.fixture
def client(make_client: Callable[..., Any], seeded: Seeded) -> Any:
    """A viewer's client on the seeded ledger."""
    return make_client(seeded.url)


@pytest.fixture
def admin(make_client: Callable[..., Any], seeded: Seeded) -> Any:
    """An admin's client on the seeded ledger."""
    return make_client(seeded.url, user="admin")


# -- seeded ledgers ------------------------------------------------------------------------------------
def forecast_points(start: datetime, values: list[float], step: timedelta = timedelta(minutes=30)) -> dict[str, Any]:
    """A stored forecast copy (the shape ``Forecast.to_dict`` writes)."""
    return {
        "provider": "trace",
        "region": "GB",
        "signal": "average",
        "emission_factor": "direct",
        "unit": "gCO2e/kWh",
        "generated_at": start.isoformat(),
        "points": [
            {"start": (start + i * step).isoformat(), "end": (start + (i + 1) * step).isoformat(), "value": v}
            for i, v in enumerate(values)
        ],
        "meta": {},
    }


def make_entry(
    dag: str,
    run: str,
    task: str,
    decision: str = "ran_now",
    *,
    at: datetime,
    attempt: int = 1,
    map_index: int | None = None,
    orchestrator: str = "airflow",
    kwh: float | None = 0.5,
    intensity: float | None = 200.0,
    counterfactual_intensity: float | None = None,
    deferred_h: float = 0.0,
    **fields: Any,
) -> Entry:
    """A realistic entry for one attempt recorded ``at``; emissions and savings follow from the numbers."""
    identity = Identity(orchestrator, dag, run, task, attempt, map_index)  # type: ignore[arg-type]
    requested = at - timedelta(hours=deferred_h + 1)
    start = requested + timedelta(hours=deferred_h)
    operational = None if kwh is None or intensity is None else kwh * intensity
    counter = counterfactual_intensity if counterfactual_intensity is not None else intensity
    counterfactual = None if kwh is None or counter is None else kwh * counter
    values: dict[str, Any] = {
        "recorded_at": at,
        "requested_at": requested,
        "planned_start": start,
        "actual_start": start if decision != "skipped_budget" else None,
        "ended_at": at if decision != "skipped_budget" else None,
        "deferred_seconds": deferred_h * 3600,
        "region": "GB",
        "energy_kwh": kwh,
        "energy_gpu_kwh": None if kwh is None else kwh * 0.8,
        "energy_cpu_kwh": None if kwh is None else kwh * 0.2,
        "method_gpu": None if kwh is None else "nvml_energy_counter",
        "method_cpu": None if kwh is None else "rapl",
        "intensity_g_per_kwh": intensity if kwh is not None else None,
        "operational_g": operational,
        "counterfactual_intensity_g_per_kwh": counter if kwh is not None else None,
        "counterfactual_g": counterfactual,
        "saved_g": None if operational is None or counterfactual is None else counterfactual - operational,
        "charged_g": operational,
    }
    values.update(fields)
    return Entry.for_attempt(identity, decision, **values)  # type: ignore[arg-type]


@dataclass
class Seeded:
    """A seeded ledger: its URL, the ledger, and the entries as recorded (in append order)."""

    url: str
    ledger: Ledger
    entries: list[Entry]

    def visible(self, dags: frozenset[str] = READABLE) -> list[Entry]:
        """The entries a user who may read ``dags`` sees (Airflow entries only)."""
        return [e for e in self.entries if e.orchestrator == "airflow" and e.workflow_id in dags]


def seed(ledger: Ledger, *, quirks: bool = True) -> list[Entry]:
    """Fourteen entries over the last days: deferrals that saved, failures, a mapped task, retries,
    skipped_budget entries, one entry of a DAG the viewer may not read, and Prefect/CLI entries that the
    Airflow UI must never show (``quirks=False`` leaves out the entry with a formula-like task id)."""
    day = timedelta(days=1)
    run1, run2 = "scheduled__2026-01-01T00:00:00+00:00", "manual__2026-01-02T08:00:00+00:00"
    # The retried "train": asked for at NOW-8h, deferred 2 h to the greenest hour of its forecast, ran 1 h.
    forecast = forecast_points(NOW - timedelta(hours=9), [310, 290, 260, 220, 170, 120, 85, 80, 110, 190, 260, 300])
    plan = {
        "start": (NOW - timedelta(hours=6)).isoformat(),
        "end": (NOW - timedelta(hours=5)).isoformat(),
        "expected_gco2_per_kwh": 82.5,
        "now_gco2_per_kwh": 240.0,
        "savings_pct": 65.6,
        "reason": "lowest mean intensity before the deadline",
    }
    slots = [
        {
            "start": (NOW - timedelta(hours=6) + i * timedelta(minutes=30)).isoformat(),
            "end": (NOW - timedelta(hours=6) + (i + 1) * timedelta(minutes=30)).isoformat(),
            "energy_kwh": 0.6,
            "intensity_g_per_kwh": v,
            "emissions_g": 0.6 * v,
            "estimated": False,
            "filled": False,
        }
        for i, v in enumerate([92, 88])
    ]
    entries = [
        make_entry(
            "train_llm",
            run1,
            "train",
            "deferred",
            at=NOW - 3 * day,
            kwh=4.2,
            intensity=120,
            counterfactual_intensity=260,
            deferred_h=3,
            budget="gpu-monthly",
        ),
        make_entry("train_llm", run1, "evaluate", at=NOW - 3 * day + timedelta(hours=1), kwh=0.3, intensity=150),
        make_entry("nightly_eval", run1, "score", at=NOW - 2 * day, map_index=0, kwh=0.05, intensity=210),
        make_entry(
            "nightly_eval", run1, "score", at=NOW - 2 * day + timedelta(minutes=5), map_index=1, kwh=0.07, intensity=210
        ),
        make_entry(
            "secret_dag",
            run1,
            "job",
            at=NOW - 2 * day + timedelta(hours=2),
            kwh=9.0,
            intensity=300,
            error="could not reach postgresql://etl:hunter2secret@db.internal/warehouse",
        ),
        make_entry(
            "train_llm",
            run2,
            "train",
            "failed",
            at=NOW - day,
            attempt=1,
            kwh=1.1,
            intensity=230,
            error="RuntimeError: CUDA out of memory",
        ),
        make_entry(
            "train_llm",
            run2,
            "train",
            "deferred",
            at=NOW - timedelta(hours=5),
            attempt=2,
            kwh=1.2,
            intensity=90,
            counterfactual_intensity=240,
            deferred_h=2,
            forecast=forecast,
            forecast_provider="trace",
            forecast_signal="average",
            forecast_emission_factor="direct",
            forecast_generated_at=NOW - timedelta(hours=9),
            forecast_hash="ab" * 32,
            extra={"plan": plan, "decision_reason": "greenest window before the deadline"},
            measurement_notes={
                "carbon": {
                    "coverage": 1.0,
                    "distribution": "power_samples",
                    "reason": None,
                    "warnings": [],
                    "slots": slots,
                },
                "dram": "no RAPL DRAM domain on this CPU",
            },
            functional_unit="1k samples",
            functional_units=40.0,
            sci_g_per_unit=1.2 * 90 / 40,
            policy={"max_delay": "8h", "api_key": "sk-should-never-show"},
            budget="train-daily",
            estimate_g=150.0,
            estimate_source="history: median of the last 3 measured attempts",
        ),
        make_entry(
            "train_llm",
            run2,
            "evaluate",
            "skipped_budget",
            at=NOW - timedelta(hours=4),
            kwh=None,
            budget="train-daily",
            estimate_g=400.0,
            error="budget 'train-daily' cannot cover 400 g",
        ),
        make_entry(
            "train_llm",
            run2,
            "report",
            "skipped_budget",
            at=NOW - timedelta(hours=3),
            kwh=None,
            budget="train-daily",
            estimate_g=50.0,
        ),
        make_entry("nightly_eval", run2, "score", "degraded", at=NOW - timedelta(hours=2), kwh=0.02, intensity=250),
        make_entry("nightly_eval", run2, "publish", "interrupted", at=NOW - timedelta(hours=1), kwh=None),
        *(  # a task id a spreadsheet would take for a formula
            [
                make_entry(
                    "train_llm", "manual__formula", "=cmd", at=NOW - timedelta(minutes=30), kwh=0.01, intensity=180
                )
            ]
            if quirks
            else []
        ),
        make_entry("prefect_flow", "run-1", "task", at=NOW - timedelta(hours=6), orchestrator="prefect"),
        make_entry("cli_job", "cli-run", "step", at=NOW - timedelta(hours=6, minutes=1), orchestrator="cli"),
    ]
    recorded = [ledger.append(entry) for entry in entries]
    ledger.budgets.set(Budget.parse("gpu-monthly", "50kg", "month"))
    ledger.budgets.set(Budget.parse("train-daily", "500g", "rolling:24h", "workflow:train_llm"))
    ledger.budgets.set(Budget.parse("secret-budget", "1kg", "week", "workflow:secret_dag"))
    return recorded


@pytest.fixture(scope="session")
def ui() -> Any:
    """The seed's constants and factories, for tests (``ui.NOW``, ``ui.READABLE``, ``ui.make_entry``…)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        NOW=NOW,
        READABLE=READABLE,
        ALL_DAGS=ALL_DAGS,
        TOKENS=TOKENS,
        make_entry=make_entry,
        forecast_points=forecast_points,
        seed=seed,
        Seeded=Seeded,
    )


@pytest.fixture
def seeded(ledger: Ledger, ledger_url: str) -> Seeded:
    """The seeded ledger, on SQLite and on PostgreSQL."""
    return Seeded(ledger_url, ledger, seed(ledger))


@pytest.fixture
def seeded_sqlite(sqlite_url: str) -> Iterator[Seeded]:
    """The seeded ledger on SQLite only (page rendering does not depend on the database)."""
    ledger = Ledger(sqlite_url)
    yield Seeded(sqlite_url, ledger, seed(ledger))
    ledger.close()
