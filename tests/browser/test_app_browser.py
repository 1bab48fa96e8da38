"""The app in a real browser: open each tab, pick a trial, play the quiz; screenshots in test-output/browser/."""

from __future__ import annotations

import re

import pytest

from braindiff_app.ui import text
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
    # A trial number typed beyond the last is brought back to it, in the box and in the panels (Gradio's own
    # slider failed the event: every panel showed "Error").
    box = page.locator("#browse-trial input[type=number]")
    box.fill("999")
    box.press("Enter")
    page.get_by_text("trial 5 of 5").wait_for()
    page.locator("img[src$='00004.png']").nth(5).wait_for()
    assert box.input_value() == "5"
    assert page.locator("#browse-panels .error").count() == 0
    page.get_by_label("Jump to image id").fill("abc")  # a bad id: a warning, the slider untouched
    page.get_by_role("button", name="Go", exact=True).click()
    page.get_by_text("'abc' is not an image id").wait_for()
    assert page.locator("#browse-trial .error").count() == 0 and box.input_value() == "5"
    page.get_by_label("Search captions").fill("person")
    page.get_by_role("button", name="Search captions").click()
    page.get_by_text("1 trial matches 'person'").wait_for()
    page.screenshot(path=str(OUTPUT / "browse.png"), full_page=True)


def test_a_stale_link_says_what_it_could_not_show(live_app, page):
    url, _ = live_app
    page.goto(url + "?tab=browse&subject=bogus&image=99999")
    page.get_by_text("The link names the bundle 'bogus', which this app does not have").wait_for()
    page.get_by_text("Image id 99999 is not among demo-subj01's test trials. Showing the first trial.").wait_for()
    page.get_by_text("trial 1 of 5").wait_for()
    assert page.locator(".block .error").count() == 0


def test_a_link_cannot_put_markup_into_a_warning(live_app, page):
    from urllib.parse import quote

    url, _ = live_app
    bad = '<a href="https://example.org/x">click</a><img src=x><b>bold</b>'
    page.goto(url + "?subject=" + quote(bad) + "&image=" + quote("<i>7</i>"))
    page.get_by_text(f"The link names the bundle '{bad}'").wait_for()  # the typed text, shown as text
    page.get_by_text("The link's image '<i>7</i>' is not an image id").wait_for()
    assert page.locator("a[href='https://example.org/x']").count() == 0
    assert page.locator(".toast-body img, .toast-body b, .toast-body i").count() == 0
    page.goto(url + "?tab=nonsense")
    page.get_by_text("The link's tab 'nonsense' is not one of browse, roi, brain, metrics, classroom, about; "
                     "showing Browse.").wait_for()


def test_classroom_asks_anew_when_the_quiz_changes(live_app, page):
    # The question, its marks and the score stayed on screen after another subject or "Show" was chosen.
    from braindiff_app.ui import text

    url, _ = live_app
    page.goto(url + "?tab=classroom")
    page.get_by_role("button", name="Next question").click()
    page.get_by_text(text.QUIZ_ASK).wait_for()
    page.get_by_role("button", name="1", exact=True).click()
    page.locator("#classroom .classroom-choice.bd-right").wait_for()
    shown = page.locator("#classroom-shown img").get_attribute("src")
    page.get_by_label(text.QUIZ_VDVAE).check()
    page.get_by_text(text.QUIZ_ASK).wait_for()
    page.wait_for_function("() => !document.querySelector('#classroom .classroom-choice.bd-right')")
    assert page.locator("#classroom-score").inner_text().strip() == ""
    assert page.locator("#classroom-shown img").get_attribute("src") != shown  # the guess, not the final
    assert page.locator(".block .error").count() == 0


def test_classroom_and_about_tabs(live_app, page):
    url, _ = live_app
    page.goto(url)
    page.get_by_role("tab", name="Classroom").click()
    page.get_by_role("button", name="2", exact=True).click()  # a vote before any question: said, nothing fails
    page.get_by_text("there is no question to answer yet").wait_for()
    assert page.locator("#classroom-stage .error").count() == 0
    page.get_by_role("button", name="Next question").click()
    page.get_by_text("Which one did the person see?").wait_for()
    page.get_by_role("button", name="1", exact=True).click()
    page.get_by_text("Score:").wait_for()
    page.locator("#classroom .classroom-choice.bd-right").wait_for()
    assert page.locator("#classroom .classroom-choice.bd-right").count() == 1  # the answer is revealed
    wrong = page.locator("#classroom .classroom-choice.bd-wrong").count()
    assert wrong == page.locator("#classroom-votes button.stop").count() <= 1  # a wrong vote's button in red
    score = page.locator("#classroom-score").inner_text()
    page.get_by_role("button", name="2", exact=True).click()  # a second vote: the first stands
    page.get_by_text("Already answered").wait_for()
    assert page.locator("#classroom-score").inner_text() == score
    assert page.locator("#classroom .classroom-choice.bd-right").count() == 1
    page.screenshot(path=str(OUTPUT / "classroom.png"), full_page=True)
    page.get_by_role("button", name="Full screen").click()  # classroom mode: only the quiz, filling the screen
    page.wait_for_function("() => document.fullscreenElement && document.fullscreenElement.id === 'classroom'")
    page.screenshot(path=str(OUTPUT / "classroom_fullscreen.png"))
    assert page.locator("#classroom-fullscreen").inner_text() == "Leave full screen"
    page.get_by_role("button", name="Leave full screen").click()
    page.wait_for_function("() => !document.fullscreenElement")
    assert page.locator("#classroom-fullscreen").inner_text() == "Full screen"
    page.get_by_role("tab", name="About").click()
    page.get_by_text("How a picture is read back from the brain").wait_for()
    page.get_by_text("You are looking at the demo tier").wait_for()
    assert page.locator("img[alt^='The two stages']").count() == 1  # the flow figure is described
    page.screenshot(path=str(OUTPUT / "about.png"), full_page=True)


@pytest.fixture
def demo_app(tmp_path, monkeypatch):
    """The app on the demo tier as a new user gets it: the committed bundles and ROI workspace."""
    from braindiff_app.config import PACKAGE_DIR

    monkeypatch.setattr("braindiff_app.config.PRECOMPUTED_DIR", PACKAGE_DIR / "precomputed")
    from braindiff_app.config import load_settings
    from braindiff_app.regression import subjects_with_regressors
    from braindiff_app.roi import roi_settings
    from braindiff_app.ui import build_app, launch_app
    from tests.conftest import free_port

    settings = load_settings(tier="demo")
    if not subjects_with_regressors(roi_settings(settings)[0]):
        pytest.skip("no demo regressors (run `braindiff demo build`)")
    app, _, _ = build_app(settings)
    port = free_port()
    launch_app(app, settings, port=port, block=False, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    app.close()


def test_roi_studio_paint_and_generate(demo_app, page):
    page.goto(demo_app)
    page.get_by_role("tab", name="ROI studio").click()
    # Opening the tab loads the models, then fills the subject, the flatmap and this note in one update.
    page.get_by_text("Using the demo's committed ROI workspace").wait_for(timeout=120_000)
    canvas = page.locator("canvas").first
    canvas.wait_for()
    _wait_idle(page)
    page.wait_for_timeout(10_000)  # the flatmap editor fades in and becomes paintable
    page.screenshot(path=str(OUTPUT / "roi_before.png"), full_page=True)
    box = canvas.bounding_box()
    # A stroke down the middle of the flatmap, where V1-V3 lie.
    x0, y0 = box["x"] + box["width"] * 0.62, box["y"] + box["height"] * 0.45
    page.mouse.move(x0, y0)
    page.mouse.down()
    for step in range(1, 15, 3):  # few events: each one is slow in a software-rendered canvas
        page.mouse.move(x0, y0 + step * box["height"] * 0.02)
    page.mouse.up()
    page.get_by_role("button", name="Generate").click()
    page.get_by_text(re.compile(r"roi-1-[0-9a-f]+")).first.wait_for(timeout=120_000)  # this experiment's recipe
    _wait_idle(page)
    page.screenshot(path=str(OUTPUT / "roi_generated.png"), full_page=True)
    assert page.get_by_text("Nothing selected").count() == 0
    for label in ("Stage-1 guess (VDVAE)", "ROI-optimal image", text.ROI_PATTERN):
        block = page.locator(".block", has=page.get_by_text(label, exact=True)).last
        assert block.locator("img").count() >= 1, label


def _wait_idle(page) -> None:
    """Wait until no component shows gradio's progress text."""
    page.wait_for_function("() => !/processing \\||steps \\|/.test(document.body.innerText)", timeout=120_000)


def test_metrics_tab(demo_app, page):
    page.goto(demo_app)
    page.get_by_role("tab", name="Metrics").click()
    page.get_by_text("Table 1: subjects").wait_for()
    page.get_by_text("Table 2: ablations of").wait_for()
    page.get_by_role("cell", name="No CLIP-vision").first.wait_for()  # a row of the ablation table
    assert page.get_by_role("cell", name="Baseline: flat mean colour").count() == 1
    page.screenshot(path=str(OUTPUT / "metrics.png"), full_page=True)
    before = page.locator("#metrics-table2").inner_text()
    page.get_by_label(text.METRICS_ABLATION_BUNDLE).click()  # another bundle for Table 2: shown without Update
    page.get_by_role("option").nth(1).click()
    page.wait_for_function("(t) => document.querySelector('#metrics-table2').innerText !== t", arg=before)
    assert "Table 2: ablations of" in page.locator("#metrics-table2").inner_text()


def test_browse_opens_on_the_demo(demo_app, page):
    """What a new user sees first: subject 1's first trial with every panel, its captions and metrics."""
    page.goto(demo_app)
    page.get_by_text("trial 1 of 100").wait_for()
    page.locator("img[src$='00000.png']").nth(5).wait_for()  # seen image, VDVAE guess, final, three ablations
    page.get_by_text("This trial's metrics").wait_for()
    page.get_by_text("VDVAE guess", exact=True).last.wait_for()  # a row of the trial's metrics table
    assert page.locator("#browse-final img").get_attribute("alt").startswith("Final reconstruction, subject 1, image")
    page.screenshot(path=str(OUTPUT / "browse_demo.png"), full_page=True)


def test_brain_response_opens_on_an_example(demo_app, page):
    page.goto(demo_app)
    page.get_by_role("tab", name="Brain response").click()  # no click on "Predict and decode"
    page.get_by_text(re.compile(r"Subject 1: encoder accuracy .* median r = ")).wait_for(timeout=120_000)
    _wait_idle(page)
    for label in (text.BR_INPUT, text.BR_FINAL):
        block = page.locator(".block", has=page.get_by_text(label, exact=True)).last
        assert block.locator("img").count() >= 1, label
    assert page.locator(".block .error").count() == 0
    summary = page.get_by_text("median r = ").first.inner_text()
    page.get_by_role("tab", name="Browse").click()
    page.get_by_role("tab", name="Brain response").click()  # a later opening keeps what is shown
    page.wait_for_timeout(1000)
    assert page.get_by_text("median r = ").first.inner_text() == summary
    seen = page.locator(".block", has=page.get_by_text(text.BR_INPUT, exact=True)).last.locator("img").first
    before = seen.get_attribute("src")
    box = page.locator("#br-test-image input")  # the opening gave the box its range: 999 comes back as 99
    box.fill("999")
    box.press("Enter")  # ... and Enter runs the loop on it (the panels kept image 0 until the button was pressed)
    page.wait_for_function("() => document.querySelector('#br-test-image input').value === '99'")
    page.wait_for_function("([el, src]) => el.getAttribute('src') !== src", arg=[seen.element_handle(), before],
                           timeout=120_000)
    _wait_idle(page)
    assert page.locator(".block .error").count() == 0
    page.goto(demo_app + "?tab=brain")  # opened by a link to the tab, not by a click on it
    page.get_by_text(re.compile(r"Subject 1: encoder accuracy .* median r = ")).wait_for(timeout=120_000)
