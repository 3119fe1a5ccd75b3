"""``/greenflow/api/entries`` and its CSV export: filters, sorting, keyset paging, access and validation."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

API = "/greenflow/api/entries"


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [row["entry_id"] for row in response.json()["entries"]]


def newest_first(entries: list[Any]) -> list[str]:
    return [e.entry_id for e in sorted(entries, key=lambda e: (e.recorded_at, e.seq), reverse=True)]


def test_lists_only_airflow_entries_of_readable_dags_newest_first(client: Any, seeded: Any, ui: Any) -> None:
    body = client.get(API).json()
    assert [row["entry_id"] for row in body["entries"]] == newest_first(seeded.visible())
    assert {row["dag_id"] for row in body["entries"]} == ui.READABLE  # no secret_dag, no Prefect or CLI entries
    assert body["next_cursor"] is None and body["prev_cursor"] is None


def test_an_admin_sees_every_dag_but_never_other_orchestrators(admin: Any, seeded: Any) -> None:
    dags = {row["dag_id"] for row in admin.get(API).json()["entries"]}
    assert dags == {"train_llm", "nightly_eval", "secret_dag"}


def test_a_row_carries_what_the_table_shows(client: Any, seeded: Any) -> None:
    deferred = next(e for e in seeded.entries if e.decision == "deferred" and e.attempt == 2)
    row = next(r for r in client.get(API).json()["entries"] if r["entry_id"] == deferred.entry_id)
    assert row["decision"] == "deferred" and row["attempt"] == 2 and row["region"] == "GB"
    assert row["deferred_seconds"] == 7200
    assert row["energy_kwh"] == pytest.approx(1.2)
    assert row["energy"]["gpu"] == {"kwh": pytest.approx(0.96), "method": "nvml_energy_counter"}
    assert row["energy"]["cpu"]["method"] == "rapl"
    assert row["intensity_g_per_kwh"] == 90 and row["operational_g"] == pytest.approx(108)
    assert row["saved_g"] == pytest.approx(180) and row["counterfactual_g"] == pytest.approx(288)
    assert row["sci_g_per_unit"] == pytest.approx(2.7) and row["functional_unit"] == "1k samples"
    assert row["planned_start"] == deferred.planned_start.isoformat()


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"dag_id": "nightly_eval"}, lambda e: e.workflow_id == "nightly_eval"),
        ({"dag_id": "train_llm", "task_id": "train"}, lambda e: e.workflow_id == "train_llm" and e.task_id == "train"),
        ({"run_id": "manual__2026-01-02T08:00:00+00:00"}, lambda e: e.run_id == "manual__2026-01-02T08:00:00+00:00"),
        ({"decision": "skipped_budget"}, lambda e: e.decision == "skipped_budget"),
        ({"dag_id": "nightly_eval", "map_index": "1"}, lambda e: e.workflow_id == "nightly_eval" and e.map_index == 1),
        (
            {"dag_id": "nightly_eval", "map_index": "-1"},
            lambda e: e.workflow_id == "nightly_eval" and e.map_index is None,
        ),
        ({"dag_id": "nightly_eval", "map_index": "{MAP_INDEX}"}, lambda e: e.workflow_id == "nightly_eval"),
    ],
)
def test_filters(client: Any, seeded: Any, params: dict[str, str], expected: Any) -> None:
    wanted = [e for e in seeded.visible() if expected(e)]
    assert wanted, "the seed must hold matching entries"
    assert ids(client.get(API, params=params)) == newest_first(wanted)


def test_date_range_as_instants_and_as_days_in_a_time_zone(client: Any, seeded: Any, ui: Any) -> None:
    since, until = ui.NOW - timedelta(days=2, hours=1), ui.NOW - timedelta(hours=2, minutes=30)
    params = {"since": since.isoformat(), "until": until.isoformat().replace("+00:00", "Z")}
    expected = [e for e in seeded.visible() if since <= e.recorded_at < until]
    assert ids(client.get(API, params=params)) == newest_first(expected)

    # Dates are whole days in the zone given, the upper one inclusive.
    tz = "Pacific/Auckland"
    day = (ui.NOW - timedelta(days=1)).astimezone(ZoneInfo(tz)).date()
    in_day = [e for e in seeded.visible() if e.recorded_at.astimezone(ZoneInfo(tz)).date() == day]
    assert in_day and len(in_day) < len(seeded.visible())
    got = ids(client.get(API, params={"since": day.isoformat(), "until": day.isoformat(), "tz": tz}))
    assert got == newest_first(in_day)


@pytest.mark.parametrize("sort", ["recorded_at", "seq", "operational_g", "saved_g", "energy_kwh", "actual_start"])
@pytest.mark.parametrize("order", ["asc", "desc"])
def test_keyset_pages_walk_every_entry_once_in_order_and_back(client: Any, seeded: Any, sort: str, order: str) -> None:
    def key(entry: Any) -> Any:
        return getattr(entry, sort)

    present = [e for e in seeded.visible() if key(e) is not None]
    missing = [e for e in seeded.visible() if key(e) is None]
    descending = order == "desc"
    expected = [
        *sorted(present, key=lambda e: (key(e), e.seq), reverse=descending),
        *sorted(missing, key=lambda e: e.seq, reverse=descending),  # not measured: last either way
    ]
    pages, cursor = [], None
    while True:
        params = {"sort": sort, "order": order, "limit": 3, **({"cursor": cursor} if cursor else {})}
        body = client.get(API, params=params).json()
        pages.append(body)
        cursor = body["next_cursor"]
        if cursor is None:
            break
    walked = [row["entry_id"] for body in pages for row in body["entries"]]
    assert walked == [e.entry_id for e in expected]
    assert all(len(body["entries"]) == 3 for body in pages[:-1])
    # Going back from the last page gives the page before it, exactly.
    back = client.get(API, params={"sort": sort, "order": order, "limit": 3, "cursor": pages[-1]["prev_cursor"]})
    assert back.json()["entries"] == pages[-2]["entries"]


def test_a_page_does_not_shift_when_entries_are_appended_meanwhile(client: Any, seeded: Any, ui: Any) -> None:
    first = client.get(API, params={"limit": 4}).json()
    seeded.ledger.append(ui.make_entry("train_llm", "manual__late", "train", at=ui.NOW + timedelta(minutes=1)))
    second = client.get(API, params={"limit": 4, "cursor": first["next_cursor"]}).json()
    expected = newest_first(seeded.visible())[4:8]  # the seed as it was: OFFSET 4 would now repeat a row
    assert [row["entry_id"] for row in second["entries"]] == expected


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"since": "yesterday"}, "since='yesterday' is not an ISO 8601 time"),
        ({"since": "2026-02-30"}, "since='2026-02-30' is not a date"),
        ({"until": "2026-01-01T10:00:00"}, "naive datetime"),
        ({"since": "2026-01-05", "until": "2026-01-01"}, "is not after since"),
        ({"sort": "entry_hash"}, "sort='entry_hash' is unknown"),
        ({"order": "sideways"}, "order='sideways' is not asc or desc"),
        ({"limit": "0"}, "limit=0 is out of range"),
        ({"limit": "501"}, "limit=501 is out of range"),
        ({"limit": "ten"}, "limit='ten' is not a whole number"),
        ({"decision": "maybe"}, "decision='maybe' is unknown"),
        ({"map_index": "-2"}, "map_index=-2 is below -1"),
        ({"tz": "Mars/Olympus"}, "tz='Mars/Olympus' is not a time zone"),
        ({"cursor": "not-a-cursor"}, "is not a cursor this page handed out"),
    ],
)
def test_bad_parameters_are_a_400_that_names_the_value_and_the_fix(
    client: Any, seeded: Any, params: dict[str, str], message: str
) -> None:
    response = client.get(API, params=params)
    assert response.status_code == 400
    assert message in response.json()["detail"]
    assert response.json()["fix"]


def test_a_cursor_of_another_sort_is_refused(client: Any, seeded: Any) -> None:
    cursor = client.get(API, params={"limit": 2, "sort": "operational_g"}).json()["next_cursor"]
    response = client.get(API, params={"limit": 2, "sort": "saved_g", "cursor": cursor})
    assert response.status_code == 400
    assert "belongs to sort='operational_g'" in response.json()["detail"]


def test_anonymous_is_401_and_a_user_without_plugin_access_is_403(make_client: Any, seeded: Any) -> None:
    assert make_client(seeded.url, user=None).get(API).status_code == 401
    assert make_client(seeded.url, user="nobody").get(API).status_code == 403
    forged = make_client(seeded.url, user=None).get(API, headers={"Authorization": "Bearer forged"})
    assert forged.status_code == 403


def test_the_ui_cookie_authenticates_like_a_bearer_token(make_client: Any, seeded: Any) -> None:
    anonymous = make_client(seeded.url, user=None)
    anonymous.cookies.set("_token", "token-viewer")
    assert anonymous.get(API).status_code == 200


def test_naming_a_dag_the_user_may_not_read_is_403(client: Any, seeded: Any, auth_manager: Any) -> None:
    response = client.get(API, params={"dag_id": "secret_dag"})
    assert response.status_code == 403
    assert ("GET", "secret_dag") in auth_manager.dag_checks  # Airflow's requires_access_dag asked


def test_a_user_who_may_read_no_dag_sees_no_entries(make_client: Any, seeded: Any) -> None:
    body = make_client(seeded.url, user="blind").get(API).json()
    assert body["entries"] == []


def test_no_ledger_yet_is_an_empty_list_and_nothing_is_created(make_client: Any, tmp_path: Any) -> None:
    missing = tmp_path / "nowhere" / "ledger.db"
    body = make_client(f"sqlite:///{missing}").get(API).json()
    assert body["entries"] == [] and body["ledger_exists"] is False
    assert not missing.parent.exists()


# -- CSV -------------------------------------------------------------------------------------------------
def test_csv_export_has_every_matching_entry_and_safe_cells(admin: Any, seeded: Any) -> None:
    response = admin.get(f"{API}.csv", params={"sort": "seq", "order": "asc"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    expected = [e for e in seeded.entries if e.orchestrator == "airflow"]
    assert [r["entry_id"] for r in rows] == [e.entry_id for e in sorted(expected, key=lambda e: e.seq)]
    formula = next(r for r in rows if r["run_id"] == "manual__formula")
    assert formula["task_id"] == "'=cmd"  # a spreadsheet must not run it
    secret = next(r for r in rows if r["dag_id"] == "secret_dag")
    assert "hunter2secret" not in response.text and "etl:***@" in secret["error"]
    deferred = next(r for r in rows if r["decision"] == "deferred" and r["attempt"] == "2")
    assert float(deferred["operational_g"]) == pytest.approx(108) and deferred["method_gpu"] == "nvml_energy_counter"


def test_csv_export_follows_the_filters_and_access(client: Any, seeded: Any) -> None:
    rows = list(csv.DictReader(io.StringIO(client.get(f"{API}.csv", params={"decision": "skipped_budget"}).text)))
    assert {r["decision"] for r in rows} == {"skipped_budget"} and len(rows) == 2
    assert client.get(f"{API}.csv", params={"dag_id": "secret_dag"}).status_code == 403
