"""The Report page and its downloads: the report's figures over the DAGs a user may read, nothing else."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
from datetime import timedelta
from html import unescape
from typing import Any

import pytest

from greenflow.airflow.plugins.report_view import renderer_missing


def _span(ui: Any) -> dict[str, str]:
    """from/to dates around the seed (its entries are between NOW - 3 days and now)."""
    return {"from": (ui.NOW - timedelta(days=5)).date().isoformat(), "to": ui.NOW.date().isoformat()}


def _expected(entries: list[Any]) -> dict[str, float | None]:
    """The headline figures recomputed from the entries themselves (not through greenflow.report)."""
    with_energy = [e for e in entries if e.energy_kwh is not None]
    emitted = [e.operational_g for e in with_energy if e.operational_g is not None]
    saved = [e for e in entries if e.saved_g is not None and e.counterfactual_g is not None]
    return {
        "energy_kwh": sum(e.energy_kwh for e in with_energy) if with_energy else None,
        "location_based_g": sum(emitted) if emitted else None,
        "saved_g": sum(e.saved_g for e in saved) if saved else None,
        "budget_refusals": float(sum(1 for e in entries if e.decision == "skipped_budget")),
    }


def _page_figures(html: str) -> dict[str, str]:
    """The figures table of the page: name -> the value cell's text."""
    rows = re.findall(r'<tr data-figure="([a-z_]+)">.*?<td class="num">([^<]*)</td>', html, re.S)
    return dict(rows)


def _pdf_text(pdf: bytes) -> str:
    """The PDF's text by poppler's pdftotext (installed with the report's system dependencies)."""
    done = subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True, timeout=120)
    return done.stdout.decode()


def _exact(value: float | None) -> str:
    return "—" if value is None else f"{value:.6g}"


def test_the_page_shows_the_reports_figures_over_the_dags_the_user_may_read(
    make_client: Any, seeded: Any, ui: Any
) -> None:
    response = make_client(seeded.url).get("/greenflow/report", params=_span(ui))
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    expected = _expected(seeded.visible())
    figures = _page_figures(html)
    for name, value in expected.items():
        assert figures[name] == _exact(value), name
    # Not the secret DAG's 9 kWh, nor the Prefect and CLI entries' (0.5 kWh each).
    everything = _expected([e for e in seeded.entries])
    assert everything["energy_kwh"] != expected["energy_kwh"]
    assert "secret_dag" not in html and "prefect_flow" not in html and "cli_job" not in html
    assert "secret-budget" not in html and 'data-budget="train-daily"' in html
    assert "Airflow entries of the 2 DAGs you may read (nightly_eval, train_llm)" in html
    assert 'data-line="workflow:train_llm"' in html and 'data-line="workflow:nightly_eval"' in html
    # The unmeasured attempt is listed with its reason, not counted as 0.
    assert re.search(r"nightly_eval / publish \(attempt 1, interrupted", html)
    assert 'data-chart="daily"' in html and 'data-chart="runs"' in html
    assert 'href="/greenflow/report"' in html  # in the nav of every page


def test_a_user_restricted_to_one_dag_gets_that_dags_figures_only(make_client: Any, seeded: Any, ui: Any) -> None:
    client = make_client(seeded.url, user="trainer")
    html = client.get("/greenflow/report", params=_span(ui)).text
    mine = seeded.visible(frozenset({"train_llm"}))
    figures = _page_figures(html)
    for name, value in _expected(mine).items():
        assert figures[name] == _exact(value), name
    assert "nightly_eval" not in html and "secret_dag" not in html
    body = client.get("/greenflow/api/report.json", params=_span(ui)).json()
    assert body["figures"]["energy_kwh"]["value"] == pytest.approx(_expected(mine)["energy_kwh"])
    assert {line["key"] for line in body["breakdowns"]["workflow"]} == {"train_llm"}
    assert body["counts"]["entries"] == len(mine)
    # A scope naming a DAG the user may not read is refused, as a DAG filter is on the ledger page.
    refused = client.get("/greenflow/report", params={**_span(ui), "scope": "workflow:nightly_eval"})
    assert refused.status_code == 403
    assert client.get("/greenflow/api/report.csv", params={"scope": "workflow:secret_dag"}).status_code == 403


def test_scopes_pick_a_team_a_dag_or_a_tag_within_what_the_user_may_read(
    make_client: Any, seeded_sqlite: Any, ui: Any
) -> None:
    ledger = seeded_sqlite.ledger
    ledger.append(
        ui.make_entry("nightly_eval", "manual__team", "score", at=ui.NOW - timedelta(hours=1), kwh=2.0, team="vision")
    )
    ledger.append(
        ui.make_entry("secret_dag", "manual__team", "job", at=ui.NOW - timedelta(hours=1), kwh=7.0, team="vision")
    )
    client = make_client(seeded_sqlite.url)
    team = client.get("/greenflow/api/report.json", params={**_span(ui), "scope": "team:vision"}).json()
    assert team["figures"]["energy_kwh"]["value"] == pytest.approx(2.0)  # not the secret DAG's 7 kWh
    assert team["scope"].startswith("team:vision (Airflow entries of the 2 DAGs you may read")
    picked = {**_span(ui), "scope_kind": "workflow", "scope_value": "nightly_eval"}
    form = client.get("/greenflow/report", params=picked)
    assert form.status_code == 200
    expected = _expected(seeded_sqlite.visible(frozenset({"nightly_eval"})))
    # The seed's nightly_eval entries and the team entry above (also nightly_eval's).
    assert _page_figures(form.text)["energy_kwh"] == _exact((expected["energy_kwh"] or 0.0) + 2.0)
    assert '<option value="vision" label="team">' in form.text  # the team picker offers recorded teams
    everything = client.get("/greenflow/report", params={**_span(ui), "scope_kind": "all", "scope_value": ""})
    assert everything.status_code == 200


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"period": "2026-13"}, "month 13 does not exist"),
        ({"period": "last month"}, "is not a month, quarter or year"),
        ({"from": "2026-11-01"}, "to is missing"),
        ({"from": "2026-11-31", "to": "2026-12-01"}, "is not a date"),
        ({"from": "2026-12-01", "to": "2026-11-01"}, "before it starts"),
        ({"period": "2026-11", "from": "2026-11-01", "to": "2026-11-30"}, "given with from/to"),
        ({"scope": "planet:earth"}, "is not a scope"),
        ({"scope_kind": "team", "scope_value": ""}, "scope team needs a name"),
        ({"scope_kind": "galaxy", "scope_value": "x"}, "scope_kind='galaxy' is not a scope"),
    ],
)
def test_bad_periods_and_scopes_are_400_with_a_message(
    make_client: Any, seeded_sqlite: Any, params: dict[str, str], words: str
) -> None:
    client = make_client(seeded_sqlite.url)
    page = client.get("/greenflow/report", params=params)
    assert page.status_code == 400 and words in unescape(page.text) and "Traceback" not in page.text
    assert "--" not in re.sub(r"<!--.*?-->", "", page.text.split("<main>")[1])  # the form's words, not the CLI's
    api = client.get("/greenflow/api/report.json", params=params)
    assert api.status_code == 400 and words in api.json()["detail"] and api.json()["fix"]
    assert client.get("/greenflow/api/report.xlsx").status_code == 400


def test_downloads_have_their_content_types_and_parse(make_client: Any, seeded_sqlite: Any, ui: Any) -> None:
    client = make_client(seeded_sqlite.url)
    page = client.get("/greenflow/report", params=_span(ui)).text
    expected = _expected(seeded_sqlite.visible())

    as_json = client.get("/greenflow/api/report.json", params=_span(ui))
    assert as_json.headers["content-type"] == "application/json"
    assert as_json.headers["content-disposition"].startswith('attachment; filename="greenflow-report-')
    body = json.loads(as_json.content)
    assert body["schema"] == "greenflow.report/1"
    assert body["figures"]["location_based_g"]["value"] == pytest.approx(expected["location_based_g"])
    assert body["ledger"] == "SQLite ledger"  # the URL only for those who may read Airflow's configuration
    assert "secret_dag" not in as_json.text

    as_csv = client.get("/greenflow/api/report.csv", params=_span(ui))
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    (total,) = [row for row in rows if row["dimension"] == "total"]
    assert float(total["energy_kwh"]) == pytest.approx(expected["energy_kwh"])
    assert {row["key"] for row in rows if row["dimension"] == "workflow"} == {"train_llm", "nightly_eval"}

    for fmt, content_type, magic in (("html", "text/html", b"<"), ("pdf", "application/pdf", b"%PDF")):
        response = client.get(f"/greenflow/api/report.{fmt}", params=_span(ui))
        missing = renderer_missing(fmt)
        if missing is None:
            assert response.status_code == 200 and response.headers["content-type"].startswith(content_type)
            assert response.content.lstrip()[: len(magic)] == magic and b"secret_dag" not in response.content
            assert f'<a class="button" href="/greenflow/api/report.{fmt}?' in page
            text = _pdf_text(response.content) if fmt == "pdf" else response.text
            assert "train_llm" in text and "nightly_eval" in text and "secret_dag" not in text
        else:  # no button, and the page says why
            assert response.status_code == 400 and "not available" in response.json()["detail"]
            assert f'<span class="muted small download-missing" data-format="{fmt}"' in page
            assert f"/api/report.{fmt}?" not in page
    for fmt in ("json", "csv"):
        assert f'<a class="button" href="/greenflow/api/report.{fmt}?from=' in page


def test_secrets_in_unmeasured_reasons_are_masked(make_client: Any, seeded_sqlite: Any, ui: Any) -> None:
    seeded_sqlite.ledger.append(
        ui.make_entry(
            "train_llm",
            "manual__secret",
            "load",
            "failed",
            at=ui.NOW - timedelta(minutes=10),
            kwh=None,
            error="could not reach postgresql://etl:pw-in-the-error@db.internal/warehouse",
        )
    )
    client = make_client(seeded_sqlite.url)
    for response in (
        client.get("/greenflow/report", params=_span(ui)),
        client.get("/greenflow/api/report.json", params=_span(ui)),
    ):
        assert "pw-in-the-error" not in response.text and "postgresql://etl:***@db.internal" in response.text


def test_who_may_see_the_report(make_client: Any, seeded_sqlite: Any, ui: Any) -> None:
    assert make_client(seeded_sqlite.url, user=None).get("/greenflow/report").status_code == 401
    assert make_client(seeded_sqlite.url, user=None).get("/greenflow/api/report.json").status_code == 401
    assert make_client(seeded_sqlite.url, user="nobody").get("/greenflow/report").status_code == 403
    blind = make_client(seeded_sqlite.url, user="blind")
    html = blind.get("/greenflow/report", params=_span(ui)).text
    assert "You may not read any DAG" in html and _page_figures(html)["energy_kwh"] == "—"
    assert blind.get("/greenflow/api/report.json", params=_span(ui)).json()["counts"]["entries"] == 0


def test_the_default_period_is_this_month_and_a_missing_ledger_says_so(
    make_client: Any, seeded_sqlite: Any, tmp_path: Any
) -> None:
    from greenflow.clock import utcnow

    html = make_client(seeded_sqlite.url).get("/greenflow/report").text
    assert f'name="period" value="{utcnow():%Y-%m}"' in html
    missing = make_client(f"sqlite:///{tmp_path / 'none.db'}")
    assert "No entries yet: add CarbonAwareOperator to a DAG" in missing.get("/greenflow/report").text
    assert missing.get("/greenflow/api/report.json").status_code == 404


def test_chain_problems_in_dags_the_user_may_not_read_are_not_named(
    make_client: Any, seeded_sqlite: Any, ui: Any
) -> None:
    from sqlalchemy import update

    from greenflow.ledger.models import EntryRow

    secret = next(e for e in seeded_sqlite.entries if e.workflow_id == "secret_dag")
    with seeded_sqlite.ledger.write() as session:
        session.execute(update(EntryRow).where(EntryRow.seq == secret.seq).values(energy_kwh=0.001))
    body = make_client(seeded_sqlite.url).get("/greenflow/api/report.json", params=_span(ui)).json()
    check = body["evidence"]["verification"]
    assert check["ok"] is False and check["problem_count"] >= 1
    assert secret.entry_id not in json.dumps(check) and "a DAG you may not read" in json.dumps(check)
