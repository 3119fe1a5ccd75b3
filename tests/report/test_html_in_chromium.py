"""The HTML report opened in headless Chromium (Debian's ``/usr/bin/chromium``, Playwright): no console
errors, both charts loaded and drawn.

The report is written by the console script (``greenflow report --format html``) for the generated mixed
ledger. The screenshot goes to ``test-artifacts/ui/report-html.png``; ``GREENFLOW_UI_SCREENSHOTS_TO=docs/img``
also copies it there as ``report.png`` (the README's image).
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import headless_chromium
from tests.cli.test_report_cli import GREENFLOW

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("report-browser")]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "ui"
CHARTS = ("Daily emissions and savings", "Grid intensity at each run")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with headless_chromium() as chromium:
        yield chromium


def _pixel_spread(png: bytes) -> float:
    """Standard deviation of the image's pixels: 0 for a blank (single-colour) picture."""
    from matplotlib.image import imread

    return float(imread(io.BytesIO(png), format="png").std())


def test_the_html_report_renders_in_chromium_with_both_charts_drawn(
    browser: Any, mixed_ledger_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "november.html"
    result = subprocess.run(
        [*GREENFLOW, "--ledger", mixed_ledger_url, "report", "--period", "2026-11", "--format", "html", "-o", str(out)],
        cwd=REPO, env=dict(os.environ), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr

    errors: list[str] = []
    requests: list[str] = []
    context = browser.new_context(viewport={"width": 1200, "height": 1400})
    page = context.new_page()
    page.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
    page.goto(out.as_uri(), wait_until="load")
    assert page.get_by_role("heading", name="Energy and emissions report").count() == 1

    for alt in CHARTS:
        chart = page.get_by_role("img", name=alt, exact=True)
        assert chart.count() == 1, alt
        # Loaded and decoded by the browser, laid out with a real size.
        assert chart.evaluate("i => i.complete && i.naturalWidth > 0 && i.naturalHeight > 0"), alt
        box = chart.bounding_box()
        assert box and box["width"] > 300 and box["height"] > 100, (alt, box)
        # The inline SVG parses in the browser and holds the drawn series (matplotlib paths), not an empty axis.
        src = chart.get_attribute("src") or ""
        assert src.startswith("data:image/svg+xml;base64,"), alt
        svg = base64.b64decode(src.split(",", 1)[1]).decode()
        paths = page.evaluate(
            """svg => {
                const doc = new DOMParser().parseFromString(svg, "image/svg+xml");
                if (doc.querySelector("parsererror")) return -1;
                return doc.querySelectorAll("path").length;
            }""",
            svg,
        )
        assert paths > 10, (alt, paths)
        # What Chromium painted there is not blank.
        assert _pixel_spread(chart.screenshot()) > 0.05, alt

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report-html.png"
    page.evaluate("() => window.scrollTo(0, 0)")  # the element shots scrolled: the README shows the top
    page.screenshot(path=str(shot), full_page=False)
    target = os.environ.get("GREENFLOW_UI_SCREENSHOTS_TO")
    if target:  # refresh the README's image from this run
        shutil.copy(shot, REPO / target / "report.png")
    context.close()
    assert not errors, errors
    assert not requests, f"the report fetched {requests}: it must be self-contained"
