"""Headless Chromium (Debian's `chromium`) driven by Playwright against a live app on localhost.

Screenshots go to ``test-output/browser/`` at the repo root. Without a Chromium binary the tests skip with the
reason; `.ci/run` installs it so CI runs them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

OUTPUT = Path(__file__).resolve().parents[2] / "test-output" / "browser"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
                  "--disable-component-update", "--disable-sync", "--disable-quic"]


def chromium_path() -> str | None:
    for candidate in (os.environ.get("BRAINDIFF_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None


@pytest.fixture(scope="module")
def browser():
    path = chromium_path()
    if path is None:
        pytest.skip("no Chromium binary found (apt-get install chromium, or set BRAINDIFF_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    OUTPUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:  # Playwright gives the browser a new, empty profile of its own
        browser = p.chromium.launch(executable_path=path, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    yield page
    page.close()
