"""HTML and PDF: the same figures as the JSON, charts drawn, the PDF renders to non-blank pages."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from greenflow.ledger import Ledger
from greenflow.report import Report, ReportPeriod, build_report
from greenflow.report.render_html import LABELS, number, render_html

REPO = Path(__file__).resolve().parents[2]
_SCRIPT = Path(sys.executable).parent / "greenflow"
GREENFLOW = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "greenflow.cli"]


@pytest.fixture(scope="module")
def report(mixed_ledger_url: str) -> Report:
    return build_report(Ledger(mixed_ledger_url), ReportPeriod.parse("2026-11"), "all")


def test_the_html_shows_every_headline_figure_with_its_value_or_reason(report: Report) -> None:
    page = render_html(report)
    data = report.to_dict()
    for name in LABELS:
        figure = data["figures"][name]
        row = re.search(rf'<tr id="figure-{name}">(.*?)</tr>', page, re.S)
        assert row, name
        if figure["value"] is None:
            assert "no figure" in row[1] and figure["reason"][:40] in row[1].replace("&#39;", "'"), name
        elif figure["unit"] == "ratio":
            assert f"{figure['value']:.1%}" in row[1], name
        else:
            assert number(figure["value"]) in row[1], name
    team = re.search(r'<table class="breakdown" id="by-team">(.*?)</table>', page, re.S)
    assert team and "vision" in team[1] and "nlp" in team[1]
    assert page.count('<tr><td class="n">') >= len(data["evidence"]["unmeasured_attempts"])


def test_the_html_charts_are_inline_svg_drawn_from_the_data(report: Report) -> None:
    page = render_html(report)
    uris = re.findall(r'<img class="chart" alt="([^"]+)" src="data:image/svg\+xml;base64,([^"]+)"', page)
    assert [alt for alt, _ in uris] == ["Daily emissions and savings", "Grid intensity at each run"]
    for _alt, payload in uris:
        svg = base64.b64decode(payload).decode()
        assert "<svg" in svg and svg.count("<path") > 10
    assert not re.search(r'(src|href)="https?://', page), "the page must not fetch anything"


def test_none_is_shown_as_a_dash_never_zero() -> None:
    assert number(None) == "—"
    assert number(0.0) == "0"
    assert number(1234.5678) == "1,235"
    assert number(0.000123456) == "0.0001235"


def test_the_pdf_renders_to_pages_with_the_totals(mixed_ledger_url: str, report: Report, tmp_path: Path) -> None:
    for tool in ("pdftoppm", "pdftotext"):
        assert shutil.which(tool), f"{tool} is missing: run `make system-deps` (poppler-utils)"
    out = tmp_path / "november.pdf"
    result = subprocess.run(
        [*GREENFLOW, "--ledger", mixed_ledger_url, "report", "--period", "2026-11", "--format", "pdf", "-o", str(out)],
        cwd=REPO, env=dict(os.environ), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert out.read_bytes().startswith(b"%PDF")
    subprocess.run(["pdftoppm", "-png", "-r", "40", str(out), str(tmp_path / "page")], check=True, timeout=120)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) >= 2
    from matplotlib.image import imread

    first = imread(str(pages[0]))
    assert first.std() > 0.01, "the first page is blank"
    text = subprocess.run(["pdftotext", "-layout", str(out), "-"], capture_output=True, text=True, check=True).stdout
    assert "Energy and emissions report" in text
    energy = report.to_dict()["figures"]["energy_kwh"]["value"]
    assert number(energy) in text
    assert "hash chain intact" in text
