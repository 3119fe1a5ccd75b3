"""The Carbon Ledger in a real Airflow: ``airflow api-server`` with the simple auth manager, the plugin loaded
through its entry point, Airflow served under an ``[api] base_url`` sub-path; the JSON API over HTTP with real
JWTs, and the pages inside Airflow's UI in headless Chromium (Debian's ``/usr/bin/chromium``, Playwright).

Screenshots go to ``test-artifacts/ui/`` (``GREENFLOW_UI_SCREENSHOTS_TO=docs/img`` also copies the two
used in the README there).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests

from greenflow.ledger import Ledger
from tests.browser import headless_chromium

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("airflow-ui-browser")]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "ui"
BASE_PATH = "/airflow"
RUN_ID = "manual__2026-01-02T08:00:00+00:00"  # the seed's run with a deferred, retried "train"
PASSWORDS = {"admin": "admin-pw-for-tests", "viewer": "viewer-pw-for-tests"}
DAG_FILE = """
from datetime import datetime

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG


def work():
    return None


for dag_id, tasks in {"train_llm": ["train", "evaluate", "report"], "nightly_eval": ["score", "publish"],
                      "secret_dag": ["job"]}.items():
    with DAG(dag_id, start_date=datetime(2026, 1, 1), schedule=None, catchup=False, tags=["greenflow"]) as dag:
        previous = None
        for task_id in tasks:
            task = PythonOperator(task_id=task_id, python_callable=work)
            if previous is not None:
                previous >> task
            previous = task
    globals()[dag_id] = dag
"""


@dataclass
class Server:
    """A running ``airflow api-server`` and the ledger it shows."""

    url: str  # the UI's root, base path included
    ledger: Ledger
    log: Path
    entries: list[Any] = field(default_factory=list)

    def token(self, user: str = "admin") -> str:
        """A JWT from the simple auth manager's token endpoint."""
        response = requests.post(
            f"{self.url}/auth/token", json={"username": user, "password": PASSWORDS[user]}, timeout=60
        )
        response.raise_for_status()
        return str(response.json()["access_token"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _airflow(env: dict[str, str], *args: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "airflow", *args], env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, f"airflow {' '.join(args)}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 400) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"airflow api-server exited ({process.returncode}):\n{log.read_text()[-4000:]}")
        try:
            if requests.get(f"{url}/api/v2/monitor/health", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(1)
    pytest.fail(f"airflow api-server was not healthy after {timeout:.0f} s:\n{log.read_text()[-4000:]}")


def _history(ui: Any) -> list[Any]:
    """A month of daily training and evaluation runs, so that the charts have something to show."""
    rng = random.Random(7)
    entries = []
    for days_ago in range(29, 0, -1):
        at = ui.NOW - timedelta(days=days_ago, hours=rng.randint(0, 6))
        run = f"scheduled__{(ui.NOW - timedelta(days=days_ago)).date().isoformat()}T00:00:00+00:00"
        deferred = rng.random() < 0.6
        entries.append(
            ui.make_entry(
                "train_llm",
                run,
                "train",
                "deferred" if deferred else "ran_now",
                at=at,
                kwh=round(rng.uniform(2.0, 6.0), 2),
                intensity=round(rng.uniform(90, 160)),
                counterfactual_intensity=round(rng.uniform(190, 280)) if deferred else None,
                deferred_h=rng.choice([1.5, 2.0, 3.5, 4.0]) if deferred else 0.0,
                budget="gpu-monthly",
            )
        )
        entries.append(
            ui.make_entry(
                "nightly_eval",
                run,
                "score",
                at=at + timedelta(hours=2),
                kwh=round(rng.uniform(0.2, 0.6), 2),
                intensity=round(rng.uniform(150, 260)),
            )
        )
    return entries


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, ui: Any) -> Iterator[Server]:
    """Airflow's API server on a free port under ``/airflow``, DAG runs with task instances, a seeded ledger."""
    home = tmp_path_factory.mktemp("airflow-ui-server")
    (home / "dags").mkdir()
    (home / "dags" / "greenflow_ui_dags.py").write_text(DAG_FILE)
    (home / "passwords.json").write_text(json.dumps(PASSWORDS))
    port = _free_port()
    url = f"http://127.0.0.1:{port}{BASE_PATH}"
    ledger_url = f"sqlite:///{home / 'ledger.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        {
            "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,viewer:viewer",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            "AIRFLOW__API__BASE_URL": url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": "greenflow-ui-test-secret-0123456789abcdef",
            "AIRFLOW__GREENFLOW__LEDGER_URL": ledger_url,
            "GREENFLOW_LEDGER_URL": ledger_url,
        }
    )
    _airflow(env, "db", "migrate")
    _airflow(env, "dags", "reserialize")
    ledger = Ledger(ledger_url)
    for entry in _history(ui):
        ledger.append(entry)
    log = home / "api-server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "airflow", "api-server", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_healthy(url, process, log)
        server = Server(url, ledger, log)
        headers = {"Authorization": f"Bearer {server.token()}"}
        created = requests.post(
            f"{url}/api/v2/dags/train_llm/dagRuns",
            json={"dag_run_id": RUN_ID, "logical_date": None},
            headers=headers,
            timeout=60,
        )
        assert created.status_code == 200, created.text
        server.entries = ui.seed(ledger, quirks=False)
        yield server
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
        ledger.close()


def test_json_api_through_the_real_server(server: Server) -> None:
    api = f"{server.url}/greenflow/api/entries"
    anonymous = requests.get(api, timeout=60)
    assert anonymous.status_code == 401
    viewer = {"Authorization": f"Bearer {server.token('viewer')}"}
    response = requests.get(api, params={"dag_id": "train_llm", "limit": 5}, headers=viewer, timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["entries"]) == 5 and {e["dag_id"] for e in body["entries"]} == {"train_llm"}
    assert body["next_cursor"]
    assert "frame-ancestors 'self'" in response.headers["content-security-policy"]
    follow = requests.get(
        api, params={"dag_id": "train_llm", "limit": 5, "cursor": body["next_cursor"]}, headers=viewer, timeout=60
    )
    assert not {e["entry_id"] for e in body["entries"]} & {e["entry_id"] for e in follow.json()["entries"]}
    bad = requests.get(api, params={"since": "last tuesday"}, headers=viewer, timeout=60)
    assert bad.status_code == 400 and "not an ISO 8601 time" in bad.json()["detail"]
    # The plugin is listed by Airflow with its views, and its pages answer at the hrefs Airflow was given.
    plugins = requests.get(f"{server.url}/api/v2/plugins", headers=viewer, timeout=60).json()["plugins"]
    (mine,) = [p for p in plugins if p["name"] == "greenflow"]
    hrefs = {v["url_route"]: v["href"] for v in mine["external_views"]}
    assert hrefs["carbon-ledger"] == f"{BASE_PATH}/greenflow/ledger"
    page = requests.get(f"http://{server.url.split('/')[2]}{hrefs['carbon-ledger']}", headers=viewer, timeout=60)
    assert page.status_code == 200 and 'data-budget="gpu-monthly"' in page.text


# -- the browser -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser(server: Server) -> Iterator[Any]:
    with headless_chromium() as chromium:
        yield chromium


def _logged_in_page(browser: Any, server: Server, errors: list[str], *, dark: bool = False) -> Any:
    context = browser.new_context(
        viewport={"width": 1600, "height": 1000},
        timezone_id="Europe/Amsterdam",
        color_scheme="dark" if dark else "light",
    )
    page = context.new_page()
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{server.url}/auth/login?next={quote(BASE_PATH + '/')}")
    page.get_by_label("Username").fill("viewer")
    page.get_by_label("Password").fill(PASSWORDS["viewer"])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/" not in url, timeout=60_000)  # logged in, back in the UI
    if dark:
        page.evaluate("() => localStorage.setItem('theme', 'dark')")
    return page


def _shoot(target: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    target.screenshot(path=str(path), full_page=True)
    return path


def test_carbon_ledger_page_and_task_tab_in_the_airflow_ui(browser: Any, server: Server) -> None:
    from playwright.sync_api import expect

    errors: list[str] = []
    page = _logged_in_page(browser, server, errors)

    # The nav entry leads to the page, rendered inside Airflow's UI.
    page.goto(f"{server.url}/")
    page.get_by_role("link", name="Carbon Ledger").first.click()
    page.wait_for_url(f"{server.url}/plugin/carbon-ledger**", timeout=60_000)
    frame = page.frame_locator("iframe[title='Carbon Ledger']")
    rows = frame.locator("table.entries tbody tr")
    # A full first page of the month's entries; retried, since the table may render again while it loads.
    expect(rows).to_have_count(50, timeout=60_000)
    assert frame.locator("[data-budget='gpu-monthly'] svg.bar rect.settled").count() == 1
    frame.locator("#daily-chart[data-rendered='true']").wait_for(timeout=60_000)
    frame.locator("#integrity-badge.ok").wait_for(timeout=60_000)
    # Times are shown in the browser's zone (Airflow's default): no "UTC" left in the cells.
    first_time = frame.locator("table.entries tbody tr td time").first.inner_text()
    assert "UTC" not in first_time and len(first_time) == 16
    assert frame.locator("[data-tz-name]").inner_text() == "Europe/Amsterdam"
    # The chart drew something (a blank canvas compresses to a tiny data URL).
    drawn = frame.locator("#daily-chart").evaluate("c => c.toDataURL().length")
    assert drawn > 5000
    page.wait_for_timeout(500)
    _shoot(page, "carbon-ledger.png")

    # Filtering inside the frame: the iframe navigates and Airflow keeps its URL in step.
    frame.locator("select[name=decision]").select_option("skipped_budget")
    frame.locator("button[type=submit]").click()
    frame.locator("table.entries tbody tr").first.wait_for(timeout=60_000)
    page.wait_for_function("() => location.search.includes('decision=skipped_budget')", timeout=60_000)
    assert frame.locator("table.entries tbody tr").count() == 2

    # The task-instance tab of the deferred, retried attempt.
    tab_url = f"{server.url}/dags/train_llm/runs/{quote(RUN_ID, safe='')}/tasks/train/plugin/carbon-ledger-task"
    page.goto(tab_url)
    tab = page.frame_locator("iframe[title='Carbon']")
    tab.locator("#forecast-chart[data-rendered='true']").wait_for(timeout=60_000)
    assert "attempt 2 · deferred" in tab.locator(".attempts").inner_text()
    assert tab.locator("#forecast-chart").evaluate("c => c.toDataURL().length") > 5000
    page.wait_for_timeout(500)
    _shoot(page, "task-instance-tab.png")

    assert not [e for e in errors if "Content Security Policy" in e or "greenflow" in e], errors


def test_dark_theme_follows_airflow(browser: Any, server: Server) -> None:
    errors: list[str] = []
    page = _logged_in_page(browser, server, errors, dark=True)
    page.goto(f"{server.url}/plugin/carbon-ledger")
    frame = page.frame_locator("iframe[title='Carbon Ledger']")
    frame.locator("#daily-chart[data-rendered='true']").wait_for(timeout=60_000)
    assert frame.locator("html").get_attribute("data-theme") == "dark"
    background = frame.locator("body").evaluate("b => getComputedStyle(b).backgroundColor")
    assert background == "rgb(17, 19, 24)"
    page.wait_for_timeout(500)
    _shoot(page, "carbon-ledger-dark.png")
    target = os.environ.get("GREENFLOW_UI_SCREENSHOTS_TO")
    if target:  # refresh the README's images from this run
        for name in ("carbon-ledger.png", "task-instance-tab.png"):
            shutil.copy(ARTIFACTS / name, REPO / target / name)


def test_report_page_renders_in_the_airflow_ui_without_console_errors(browser: Any, server: Server, ui: Any) -> None:
    from playwright.sync_api import expect

    errors: list[str] = []
    page = _logged_in_page(browser, server, errors)
    ours: list[str] = []  # console errors of the plugin's pages (Airflow's own UI may log its own)
    page.on(
        "console", lambda m: ours.append(m.text) if m.type == "error" and "/greenflow/" in m.location["url"] else None
    )
    page.goto(f"{server.url}/plugin/carbon-ledger")
    frame = page.frame_locator("iframe[title='Carbon Ledger']")
    frame.get_by_role("link", name="Report", exact=True).click()
    # A span over the month of history: both charts have points.
    frame.locator("input[name=from]").fill((ui.NOW - timedelta(days=30)).date().isoformat())
    frame.locator("input[name=to]").fill(ui.NOW.date().isoformat())
    expect(frame.locator("input[name=period]")).to_have_value("", timeout=60_000)  # the script cleared the month
    frame.get_by_role("button", name="Show").click()
    frame.locator("#daily-chart[data-rendered='true']").wait_for(timeout=60_000)
    frame.locator("#runs-chart[data-rendered='true']").wait_for(timeout=60_000)
    expect(frame.locator("tr[data-line='workflow:prefect_flow']")).to_have_count(0)  # Airflow entries only
    expect(frame.locator("tr[data-line='workflow:train_llm']")).to_have_count(1)
    for fmt in ("html", "json", "csv"):
        expect(frame.locator(f"a.button[data-format='{fmt}']")).to_have_count(1)
    assert frame.locator("#runs-chart").evaluate("c => c.toDataURL().length") > 5000
    shot = _shoot(page, "report-page.png")
    target = os.environ.get("GREENFLOW_UI_SCREENSHOTS_TO")
    if target:  # refresh docs/ui.md's image from this run
        shutil.copy(shot, REPO / target / shot.name)
    assert not ours, ours
    assert not [e for e in errors if "Content Security Policy" in e or "greenflow" in e], errors
