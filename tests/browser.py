"""Headless Chromium for the browser tests: Debian's ``/usr/bin/chromium`` driven by Playwright (no download).

One launch recipe for every test that renders a page (the Airflow UI pages, the HTML report), so the flags
that make Chromium start in a container without a display or a network stay in one place.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
# No sandbox (root in a container), no GPU, and nothing fetched from the network at start-up.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
)


@contextmanager
def headless_chromium() -> Iterator[Any]:
    """A launched Playwright browser; fails the test (not skips) when Chromium is missing."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (make test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=list(CHROMIUM_ARGS))
        try:
            yield chromium
        finally:
            chromium.close()
