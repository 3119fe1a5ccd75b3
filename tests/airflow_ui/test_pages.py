"""The server-rendered pages: what a user sees, empty states, links under a base path, headers, secrets."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest

RUN2 = "manual__2026-01-02T08:00:00+00:00"


@pytest.fixture
def page(make_client: Any, seeded_sqlite: Any) -> Any:
    """``page(path, user="viewer", root_path="")``: the response for a page of the seeded ledger."""

    def get(path: str, user: str | None = "viewer", root_path: str = "", **params: Any) -> Any:
        # The client's base URL already ends in root_path, as a browser's requests under [api] base_url do.
        return make_client(seeded_sqlite.url, user=user, root_path=root_path).get(f"/greenflow/{path}", params=params)

    return get


def test_ledger_page_shows_rows_budgets_and_the_daily_chart(page: Any, seeded_sqlite: Any) -> None:
    response = page("ledger")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    rows = re.findall(r'<tr data-entry="([^"]+)"', html)
    assert rows == [e.entry_id for e in sorted(seeded_sqlite.visible(), key=lambda e: e.recorded_at, reverse=True)]
    assert "secret_dag" not in html and "prefect_flow" not in html
    assert '<span class="badge decision-deferred">deferred</span>' in html
    assert "4.2 kWh" in html and "504 g" in html  # units people read: 4.2 kWh x 120 g/kWh
    assert "GPU NVML · CPU RAPL" in html
    assert "3:00" in html  # deferred h:mm
    assert 'data-budget="train-daily"' in html and 'class="settled"' in html
    totals = json.loads(re.search(r'<script type="application/json" id="gf-daily">(.*?)</script>', html, re.S)[1])
    assert len(totals["days"]) == 30
    assert 'data-chart="daily"' in html


def test_time_cells_carry_utc_instants_for_the_users_zone(page: Any, seeded_sqlite: Any) -> None:
    html = page("ledger").text
    first = seeded_sqlite.visible()[0]
    assert f'<time datetime="{first.recorded_at.isoformat()}" data-style="datetime">' in html


def test_filters_sort_and_pages_are_links_under_the_base_path(page: Any) -> None:
    html = page("ledger", root_path="/airflow", limit="3", sort="operational_g").text
    assert 'action="/airflow/greenflow/ledger"' in html
    assert 'href="/airflow/greenflow/static/greenflow.css' in html
    assert 'href="/airflow/greenflow/api/entries.csv?sort=operational_g&amp;order=desc"' in html
    next_link = re.search(r'<a class="button" href="([^"]+)" rel="next">', html)[1]
    assert next_link.startswith("/airflow/greenflow/ledger?") and "cursor=" in next_link
    assert re.search(r'href="/airflow/greenflow/ledger\?sort=operational_g&amp;order=asc"', html)
    assert 'href="/greenflow' not in html  # nothing escapes the base path


def test_a_task_instance_named_in_the_url_shows_its_detail_and_chart(page: Any) -> None:
    html = page("ledger", dag_id="train_llm", run_id=RUN2, task_id="train").text
    assert 'id="task-detail"' in html and "attempt 2 · deferred" in html
    data = json.loads(re.search(r'<script type="application/json" id="gf-attempt-\d+">(.*?)</script>', html, re.S)[1])
    assert data["attempt"] == 2 and data["window"]["start"] and data["forecast"]["points"]
    assert "sk-should-never-show" not in html
    chosen = page("ledger", dag_id="train_llm", run_id=RUN2, task_id="train", attempt="1").text
    assert "RuntimeError: CUDA out of memory" in chosen
    assert page("ledger", dag_id="train_llm", run_id=RUN2, task_id="train", attempt="7").status_code == 400


def test_task_tab_page(page: Any) -> None:
    html = page("task", dag_id="train_llm", run_id=RUN2, task_id="train", map_index="{MAP_INDEX}").text
    assert "Open in the Carbon Ledger" in html and 'data-chart="forecast"' in html
    assert "Power samples were not kept for this attempt" in html
    assert "no RAPL DRAM domain on this CPU" in html
    empty = page("task", dag_id="train_llm", run_id="manual__never", task_id="train").text
    assert "No ledger entry for this task instance" in empty
    assert page("task", dag_id="secret_dag", run_id=RUN2, task_id="job").status_code == 403


def test_empty_states_say_what_to_do(make_client: Any, seeded_sqlite: Any, tmp_path: Any) -> None:
    missing = make_client(f"sqlite:///{tmp_path / 'none.db'}").get("/greenflow/ledger").text
    assert "No entries yet: add CarbonAwareOperator to a DAG" in missing
    blind = make_client(seeded_sqlite.url, user="blind").get("/greenflow/ledger").text
    assert "You may not read any DAG" in blind
    unmatched = make_client(seeded_sqlite.url).get("/greenflow/ledger", params={"task_id": "nothing"}).text
    assert "No entries match these filters" in unmatched


def test_pages_may_be_framed_only_by_airflow_and_are_not_cached(page: Any) -> None:
    for path in ("ledger", "integrity", "api/entries"):
        headers = page(path).headers
        assert "frame-ancestors 'self'" in headers["content-security-policy"]
        assert "script-src 'self'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff" and headers["cache-control"] == "no-store"


def test_anonymous_page_is_401_with_a_login_link(page: Any) -> None:
    response = page("ledger", user=None, root_path="/airflow")
    assert response.status_code == 401
    assert 'href="/airflow/auth/login?next=/airflow/greenflow/ledger"' in response.text
    assert "frame-ancestors 'self'" in response.headers["content-security-policy"]
    assert page("ledger", user="nobody").status_code == 403


def test_ledger_url_is_shown_without_password_and_only_to_config_readers(make_client: Any, sqlite_url: Any) -> None:
    viewer = make_client(sqlite_url).get("/greenflow/ledger")
    assert "SQLite ledger" in viewer.text and sqlite_url.removeprefix("sqlite:///") not in viewer.text
    admin = make_client(sqlite_url, user="admin").get("/greenflow/ledger")
    assert sqlite_url.removeprefix("sqlite:///") in admin.text


def test_an_unreachable_ledger_is_a_503_that_hides_the_password(make_client: Any) -> None:
    client = make_client("postgresql://greenflow:s3cr3t-pw@127.0.0.1:1/ledger", user="admin")
    for path in ("ledger", "api/entries"):
        response = client.get(f"/greenflow/{path}")
        assert response.status_code == 503 and "s3cr3t-pw" not in response.text
    assert "cannot connect to the ledger" in client.get("/greenflow/api/entries").json()["detail"]


def test_a_range_too_long_for_totals_still_lists_the_entries(page: Any) -> None:
    html = page("ledger", since="2020-01-01", until="2030-01-01").text
    assert 'data-entry="' in html and "longer than 400 days" in html


def test_text_from_entries_is_escaped(make_client: Any, seeded_sqlite: Any, ui: Any) -> None:
    evil = "<script>alert(1)</script>"
    seeded_sqlite.ledger.append(
        ui.make_entry("train_llm", "manual__evil", "train", "failed", at=ui.NOW, error=f"ValueError: {evil}")
    )
    client = make_client(seeded_sqlite.url)
    for path in ("ledger", "task?dag_id=train_llm&run_id=manual__evil&task_id=train"):
        html = client.get(f"/greenflow/{path}").text
        assert evil not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_integrity_page(page: Any) -> None:
    html = page("integrity").text
    # 14 attempts and the 3 budgets' chained definitions.
    assert "The hash chain holds: 17 entries verified" in html


def test_static_assets_are_a_fixed_list(page: Any) -> None:
    chart = page("static/chart.umd.min.js")
    assert chart.status_code == 200 and "Chart.js v4" in chart.text[:200]
    assert page("static/chart.js.LICENSE.md").text.startswith("The MIT License")
    assert page("static/..%2F..%2Fapp.py").status_code == 404
    assert page("static/app.py").status_code == 404
    assert page("static/greenflow.css", user=None).status_code == 401


def test_replayed_entries_are_marked_and_their_trace_hours_shown_apart(page: Any, seeded_sqlite: Any, ui: Any) -> None:
    """Issue 15: the page showed a replay's trace hours as real waiting time and did not mark the entry."""
    replay = {"replay": {"speed": 3600.0, "note": "times are a replayed trace's, not real"}}
    seeded_sqlite.ledger.append(
        ui.make_entry(
            "train_llm",
            "manual__replay",
            "train",
            "deferred",
            at=ui.NOW - timedelta(hours=1),
            deferred_h=10,
            extra=replay,
        )
    )
    html = page("ledger").text
    assert html.count("replay 3600x") == 1  # one row marked, as `greenflow ledger show` marks it
    totals = re.search(r'<div class="card" id="totals">(.*?)<canvas', html, re.S)[1]
    assert "5:00 h:mm real waits" in totals  # the two real deferrals (3 h + 2 h), not 15 h
    assert "1 replayed · 10:00 h:mm of trace time, not counted" in totals
    detail = page("ledger", dag_id="train_llm", run_id="manual__replay", task_id="train").text
    assert "waited 10:00 h:mm of trace time" in detail
    assert "replay 3600x: the times above are a replayed trace's, not real" in detail
