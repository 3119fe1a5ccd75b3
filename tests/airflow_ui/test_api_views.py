"""The other JSON routes: one task instance, budgets, totals per day, integrity; and that none of them writes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, text

from greenflow.ledger import Identity
from greenflow.ledger.models import EntryRow

TI = "/greenflow/api/task-instance"
RUN2 = "manual__2026-01-02T08:00:00+00:00"


# -- one task instance -----------------------------------------------------------------------------------
def test_task_instance_has_every_attempt_with_forecast_window_and_run_intensity(client: Any, seeded: Any) -> None:
    body = client.get(TI, params={"dag_id": "train_llm", "run_id": RUN2, "task_id": "train"}).json()
    assert [a["attempt"] for a in body["attempts"]] == [1, 2]
    failed, deferred = body["attempts"]
    assert failed["decision"] == "failed" and failed["error"] == "RuntimeError: CUDA out of memory"
    assert deferred["reason"] == "greenest window before the deadline"
    assert deferred["window"]["expected_g_per_kwh"] == 82.5 and deferred["window"]["now_g_per_kwh"] == 240
    assert [p["value"] for p in deferred["forecast"]["points"]][:4] == [310, 290, 260, 220]
    assert deferred["forecast"]["hash"] == "ab" * 32
    assert [s["intensity_g_per_kwh"] for s in deferred["run_intensity"]["slots"]] == [92, 88]
    components = {c["name"]: c for c in deferred["energy"]["components"]}
    assert components["gpu"]["method"] == "nvml_energy_counter"
    assert components["dram"] == {
        "name": "dram",
        "kwh": None,
        "method": None,
        "reason": "no RAPL DRAM domain on this CPU",
    }
    assert deferred["accounting"]["sci_g_per_unit"] == pytest.approx(2.7)
    assert deferred["power"] is None  # not kept by this entry
    assert deferred["policy"] == {"max_delay": "8h", "api_key": "***"}  # sensitive keys are masked


def test_mapped_task_instances_are_told_apart(client: Any, seeded: Any) -> None:
    run1 = "scheduled__2026-01-01T00:00:00+00:00"
    params = {"dag_id": "nightly_eval", "run_id": run1, "task_id": "score"}
    first = client.get(TI, params={**params, "map_index": "1"}).json()
    assert [a["map_index"] for a in first["attempts"]] == [1]
    # Airflow leaves {MAP_INDEX} in the href of an unmapped task instance: that is an unmapped one.
    unmapped = client.get(TI, params={**params, "map_index": "{MAP_INDEX}"}).json()
    assert unmapped["attempts"] == [] and unmapped["map_index"] is None


def test_power_samples_are_returned_when_an_entry_kept_them(client: Any, seeded: Any, ui: Any) -> None:
    traces = [{"component": "gpu", "device": 0, "samples": [[ui.NOW.isoformat(), 250.0], [ui.NOW.isoformat(), 260.5]]}]
    seeded.ledger.append(
        ui.make_entry("train_llm", "manual__power", "train", at=ui.NOW, measurement_notes={"traces": traces})
    )
    body = client.get(TI, params={"dag_id": "train_llm", "run_id": "manual__power", "task_id": "train"}).json()
    assert body["attempts"][0]["power"] == [
        {"component": "gpu", "device": 0, "samples": [[ui.NOW.isoformat(), 250.0], [ui.NOW.isoformat(), 260.5]]}
    ]


def test_task_instance_of_an_unreadable_dag_is_403_and_missing_ids_400(client: Any, seeded: Any) -> None:
    run1 = "scheduled__2026-01-01T00:00:00+00:00"
    assert client.get(TI, params={"dag_id": "secret_dag", "run_id": run1, "task_id": "job"}).status_code == 403
    response = client.get(TI, params={"dag_id": "train_llm", "task_id": "train"})
    assert response.status_code == 400 and "run_id missing" in response.json()["detail"]


# -- budgets ---------------------------------------------------------------------------------------------
def test_budgets_match_the_ledgers_own_status_and_name_what_they_blocked(client: Any, seeded: Any) -> None:
    body = client.get("/greenflow/api/budgets").json()
    names = [b["name"] for b in body["budgets"]]
    assert names == ["gpu-monthly", "train-daily"]  # secret_dag's budget is not shown to the viewer
    daily = next(b for b in body["budgets"] if b["name"] == "train-daily")
    expected = seeded.ledger.budgets.status("train-daily")
    assert daily["limit"] == 500 and daily["settled"] == pytest.approx(expected.settled)
    assert daily["spent"] == pytest.approx(expected.spent) and daily["remaining"] == pytest.approx(expected.remaining)
    assert daily["settled"] == pytest.approx(109.8)  # 1.2 kWh x 90 g + 0.01 kWh x 180 g in the last 24 h
    blocked = daily["blocked"]
    assert blocked["count"] == 2
    assert [(e["task_id"], e["decision"]) for e in blocked["recent"]] == [
        ("report", "skipped_budget"),
        ("evaluate", "skipped_budget"),
    ]


def test_budgets_show_reservations_but_never_settle_them(client: Any, seeded: Any, ui: Any) -> None:
    budgets = seeded.ledger.budgets
    # A workflow only `gpu-monthly` covers (train-daily, spent, would refuse train_llm's attempts).
    identity = Identity("airflow", "adhoc_eval", "manual__r", "train")
    budgets.reserve("gpu-monthly", identity, 300.0, estimate_source="test", ttl=timedelta(hours=1))
    budgets.reserve(
        "gpu-monthly",
        Identity("airflow", "adhoc_eval", "manual__r", "evaluate"),
        50.0,
        estimate_source="test",
        ttl=timedelta(seconds=1),
        at=ui.NOW - timedelta(hours=1),
    )
    before = seeded.ledger.count()
    monthly = next(b for b in client.get("/greenflow/api/budgets").json()["budgets"] if b["name"] == "gpu-monthly")
    assert monthly["reserved"] == 300 and monthly["open_reservations"] == 1
    assert monthly["expired_reservations"] == 1  # reported, left for a worker to settle
    assert seeded.ledger.count() == before  # Budgets.status would have appended an interrupted entry


def test_an_admin_sees_every_budget(admin: Any, seeded: Any) -> None:
    names = [b["name"] for b in admin.get("/greenflow/api/budgets").json()["budgets"]]
    assert names == ["gpu-monthly", "secret-budget", "train-daily"]


# -- totals ----------------------------------------------------------------------------------------------
def test_totals_per_day_in_the_users_zone_with_what_deferral_saved(client: Any, seeded: Any, ui: Any) -> None:
    tz = "America/New_York"
    body = client.get("/greenflow/api/totals", params={"tz": tz}).json()
    zone = ZoneInfo(tz)
    assert len(body["days"]) == 30 and body["tz"] == tz
    assert body["days"][-1]["day"] == ui.NOW.astimezone(zone).date().isoformat()
    visible = seeded.visible()
    by_day: dict[str, float] = {}
    for e in visible:
        if e.operational_g is not None:
            day = e.recorded_at.astimezone(zone).date().isoformat()
            by_day[day] = by_day.get(day, 0.0) + e.operational_g
    for day in body["days"]:
        assert day["operational_g"] == pytest.approx(by_day.get(day["day"])), day["day"]
    totals = body["totals"]
    assert totals["entries"] == len(visible)
    assert totals["saved_g"] == pytest.approx(sum(e.saved_g for e in visible if e.saved_g is not None))
    assert totals["saved_g"] == pytest.approx(4.2 * 140 + 1.2 * 150)  # the two deferrals
    assert totals["deferred"] == 2 and totals["deferred_seconds"] == 5 * 3600
    assert totals["skipped_budget"] == 2
    assert totals["saved_share"] == pytest.approx(totals["saved_g"] / totals["counterfactual_g"])


def test_totals_follow_the_filters_and_a_period(client: Any, seeded: Any, ui: Any) -> None:
    day = (ui.NOW - timedelta(days=3)).date().isoformat()
    body = client.get("/greenflow/api/totals", params={"dag_id": "train_llm", "since": day, "until": day}).json()
    assert [d["day"] for d in body["days"]] == [day]
    assert body["totals"]["operational_g"] == pytest.approx(4.2 * 120 + 0.3 * 150)
    assert client.get("/greenflow/api/totals", params={"since": "2024-01-01", "until": "2026-01-01"}).status_code == 400
    assert client.get("/greenflow/api/totals", params={"dag_id": "secret_dag"}).status_code == 403


# -- integrity -------------------------------------------------------------------------------------------
def test_integrity_of_an_intact_chain(client: Any, seeded: Any) -> None:
    body = client.get("/greenflow/api/integrity").json()
    # The chain holds the attempts and the chained budget definitions (`budget_set` events).
    chain_length, _tip = seeded.ledger.head()
    assert body["ok"] is True and body["entries"] == chain_length > len(seeded.entries) and body["problems"] == []
    assert body["head_seq"] == chain_length and body["reused"] is False
    assert client.get("/greenflow/api/integrity").json()["reused"] is True


def test_integrity_names_a_tampered_entry_only_to_those_who_may_read_it(make_client: Any, seeded: Any) -> None:
    visible = next(e for e in seeded.entries if e.workflow_id == "train_llm")
    hidden = next(e for e in seeded.entries if e.workflow_id == "secret_dag")
    with seeded.ledger.engine.begin() as connection:
        for entry in (visible, hidden):
            connection.execute(text("UPDATE ledger_entries SET energy_kwh = 0.001 WHERE seq = :s"), {"s": entry.seq})
    viewer = make_client(seeded.url).get("/greenflow/api/integrity", params={"refresh": "1"}).json()
    assert viewer["ok"] is False
    problems = {p["seq"]: p for p in viewer["problems"]}
    assert problems[visible.seq]["kind"] == "modified" and problems[visible.seq]["entry_id"] == visible.entry_id
    assert problems[hidden.seq]["entry_id"] is None and "you may not read" in problems[hidden.seq]["detail"]
    admin = make_client(seeded.url, user="admin").get("/greenflow/api/integrity").json()
    assert {p["entry_id"] for p in admin["problems"]} == {visible.entry_id, hidden.entry_id}


def test_integrity_refresh_flag_is_validated(client: Any, seeded: Any) -> None:
    assert client.get("/greenflow/api/integrity", params={"refresh": "please"}).status_code == 400


def test_the_badge_does_not_start_a_verification_of_a_large_ledger(
    client: Any, seeded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from greenflow.airflow.plugins import integrity

    monkeypatch.setattr(integrity, "AUTO_VERIFY_MAX_ENTRIES", 5)
    body = client.get("/greenflow/api/integrity", params={"auto": "1"}).json()
    assert body["checked"] is False and body["entries"] == seeded.ledger.head()[0]
    assert client.get("/greenflow/api/integrity").json()["checked"] is True  # asked for explicitly: verified


def test_nobody_waits_behind_a_running_verification(client: Any, seeded: Any) -> None:
    import threading

    from greenflow.airflow.plugins import integrity

    # The plugin keys verifications by its engine's URL, the same as the seeded ledger's.
    lock = integrity._locks.setdefault(str(seeded.ledger.engine.url), threading.Lock())
    with lock:  # another request is verifying
        response = client.get("/greenflow/api/integrity")
    assert response.status_code == 202
    assert response.json()["in_progress"] is True and response.json()["checked"] is False


# -- read-only -------------------------------------------------------------------------------------------
def test_no_route_writes(make_client: Any, seeded: Any) -> None:
    from fastapi.routing import APIRoute

    from greenflow.airflow.plugins.app import create_app

    routes = [r for r in create_app().routes if isinstance(r, APIRoute)]
    assert routes and all(r.methods <= {"GET", "HEAD"} for r in routes)
    client = make_client(seeded.url, user="admin")
    assert client.post("/greenflow/api/entries").status_code == 405
    assert client.delete("/greenflow/api/budgets").status_code == 405
    with seeded.ledger.engine.connect() as connection:
        before = connection.execute(select(func.count()).select_from(EntryRow)).scalar_one()
        head_before = connection.execute(text("SELECT seq, entry_hash FROM ledger_head")).one()
    for path in (
        "api/entries",
        "api/entries.csv",
        "api/budgets",
        "api/totals",
        "api/integrity",
        "ledger",
        "integrity",
        f"task?dag_id=train_llm&run_id={RUN2}&task_id=train",
    ):
        assert client.get(f"/greenflow/{path}").status_code == 200, path
    with seeded.ledger.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(EntryRow)).scalar_one() == before
        assert connection.execute(text("SELECT seq, entry_hash FROM ledger_head")).one() == head_before


# -- replayed entries ------------------------------------------------------------------------------------
REPLAY = {"replay": {"speed": 3600.0, "note": "times are a replayed trace's, not real"}}


def test_replayed_entries_are_marked_and_their_trace_waits_kept_out_of_real_totals(
    client: Any, seeded: Any, ui: Any
) -> None:
    """Issue 15: the UI summed a replay's trace hours into "time spent waiting" and did not mark replays."""
    replayed = seeded.ledger.append(
        ui.make_entry(
            "train_llm",
            "manual__replay",
            "train",
            "deferred",
            at=ui.NOW - timedelta(hours=1),
            deferred_h=10,
            extra=REPLAY,
        )
    )
    totals = client.get("/greenflow/api/totals").json()["totals"]
    assert totals["deferred_seconds"] == 5 * 3600  # the real waits only, as before the replay was added
    assert totals["replayed"] == 1 and totals["replayed_deferred_seconds"] == 10 * 3600  # apart, in trace time

    rows = {r["entry_id"]: r for r in client.get("/greenflow/api/entries").json()["entries"]}
    assert rows[replayed.entry_id]["clock"] == "replay 3600x"
    assert {r["clock"] for k, r in rows.items() if k != replayed.entry_id} == {"real"}
    attempts = client.get(
        "/greenflow/api/task-instance", params={"dag_id": "train_llm", "run_id": "manual__replay", "task_id": "train"}
    ).json()["attempts"]
    assert [a["clock"] for a in attempts] == ["replay 3600x"]


def test_a_replayed_sensor_entry_as_greenflow_writes_it_is_marked_and_kept_out_of_real_waits(
    client: Any, seeded: Any
) -> None:
    """The UI reads the replay mark the core writes (not a hand-made one): a GreenWindowSensor that waited
    until noon of a replayed trace shows as a replay, and its 12 h of trace time are not "time spent waiting"."""
    from datetime import UTC, datetime

    from greenflow.check_entries import record_check
    from greenflow.intensity.cache import ForecastCache
    from greenflow.intensity.providers.trace import TraceProvider
    from greenflow.lifecycle import Lifecycle
    from greenflow.spec import CarbonSpec

    midnight = datetime(2022, 6, 1, tzinfo=UTC)
    provider = TraceProvider(region="ES", now=midnight)
    spec = CarbonSpec.build(region="ES", provider="trace", expected_duration="2h", max_delay="14h")
    identity = Identity("airflow", "train_llm", "manual__replayed", "wait_for_green")
    lifecycle = Lifecycle(spec, identity, ledger=seeded.ledger, cache=ForecastCache(), provider=provider)
    decision = lifecycle.plan()
    provider.set_now(decision.start_at)  # the trigger fired at the window, in the trace's time
    entry = record_check(not_metered="a sensor runs no work", lifecycle=lifecycle, decision=decision)
    assert entry.decision == "deferred" and entry.deferred_seconds > 6 * 3600

    totals = client.get("/greenflow/api/totals").json()["totals"]
    assert totals["deferred_seconds"] == 5 * 3600  # the seeded real waits only
    assert totals["replayed"] == 1 and totals["replayed_deferred_seconds"] == entry.deferred_seconds
    rows = {r["entry_id"]: r for r in client.get("/greenflow/api/entries").json()["entries"]}
    assert rows[entry.entry_id]["clock"] == "replay"  # a replay whose clock the test moves: no speed
