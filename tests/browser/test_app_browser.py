"""The app in a real browser: open each tab, pick a trial, play the quiz; screenshots in test-output/browser/."""

from __future__ import annotations

import pytest

from tests.browser.conftest import OUTPUT

pytestmark = pytest.mark.browser


def test_browse_pick_trial(live_app, page):
    url, _ = live_app
    page.goto(url)
    page.get_by_text("trial 1 of 5").wait_for()
    page.locator("img[src$='00000.png']").nth(5).wait_for()  # the six panels of trial 1
    page.get_by_label("Jump to image id").fill("1021")
    page.get_by_role("button", name="Go", exact=True).click()
    page.get_by_text("trial 4 of 5").wait_for()
    page.locator("img[src$='00003.png']").nth(5).wait_for()  # the six panels of trial 4
    assert page.locator("img[src$='00000.png']").count() <= 1  # only the gallery's thumbnail remains
    page.get_by_label("Search captions").fill("person")
    page.get_by_role("button", name="Search captions").click()
    page.get_by_text("1 trial(s) match 'person'").wait_for()
    page.screenshot(path=str(OUTPUT / "browse.png"), full_page=True)


def test_classroom_and_about_tabs(live_app, page):
    url, _ = live_app
    page.goto(url)
    page.get_by_role("tab", name="Classroom").click()
    page.get_by_role("button", name="Next question").click()
    page.get_by_text("Which one did the person see?").wait_for()
    page.get_by_role("button", name="1", exact=True).click()
    page.get_by_text("Score:").wait_for()
    page.screenshot(path=str(OUTPUT / "classroom.png"), full_page=True)
    page.get_by_role("tab", name="About").click()
    page.get_by_text("How a picture is read back from the brain").wait_for()
    page.get_by_text("You are looking at the demo tier").wait_for()
    page.screenshot(path=str(OUTPUT / "about.png"), full_page=True)
