"""The app as an instrument (issue 17), measured in headless Chromium on the committed demo bundles.

Bounding boxes of the Browse and Classroom images at 1440x900 and 1920x1080 (and the projector mode at 1280x720),
the quiz driven by keyboard, a deep link round trip, whole-word search with pages, alt texts and tab stops.
"""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import OUTPUT

pytestmark = pytest.mark.browser

SIZES = [(1440, 900), (1920, 1080)]


@pytest.fixture(scope="module")
def demo_url():
    """The app over the committed demo bundles (no regressors needed: Browse, Classroom and Metrics read bundles)."""
    from braindiff_app.config import PACKAGE_DIR, load_settings
    from braindiff_app.ui import build_app, launch_app
    from tests.conftest import free_port

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("braindiff_app.config.PRECOMPUTED_DIR", PACKAGE_DIR / "precomputed")
        settings = load_settings(tier="demo")
        app, _, _ = build_app(settings)
        port = free_port()
        launch_app(app, settings, port=port, block=False, quiet=True)
        yield f"http://127.0.0.1:{port}/"
        app.close()


def _open(browser, size, url):
    page = browser.new_page(viewport={"width": size[0], "height": size[1]})
    page.set_default_timeout(60_000)
    page.goto(url)
    return page


def _image_side(page, selector: str) -> float:
    """Drawn side of a square image in an <img> with object-fit: contain (the smaller of its box's sides)."""
    box = page.locator(selector).first.bounding_box()
    assert box is not None, selector
    return min(box["width"], box["height"])


def _shown(page, subject: str, image_id: int) -> None:
    page.get_by_text(re.compile(rf"{subject} · trial \d+ of 100 · image id {image_id}( · protocol \w+)?$")).wait_for()
    page.wait_for_function(f"() => (document.querySelector('#browse-final img') || {{}}).alt === "
                           f"'Final reconstruction, subject {subject[-1]}, image {image_id}'")
    # Both main images decoded and laid out (the seen image can arrive after the final's alt text is set).
    page.wait_for_function("() => ['#browse-ground_truth img', '#browse-final img'].every(s => {"
                           " const e = document.querySelector(s);"
                           " return e && e.complete && e.naturalWidth > 0 && e.getBoundingClientRect().width > 0; })")


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_browse_main_images_are_large_and_crisp(browser, demo_url, size):
    page = _open(browser, size, demo_url + "?tab=browse&subject=demo-subj01&image=97")
    _shown(page, "demo-subj01", 97)
    seen, final = "#browse-ground_truth img", "#browse-final img"
    for selector in (seen, final):
        assert _image_side(page, selector) >= 384, selector
        assert page.locator(selector).evaluate("e => getComputedStyle(e).imageRendering") == "pixelated"
        box = page.locator(selector).bounding_box()
        assert box["y"] + box["height"] <= size[1], f"{selector} below the fold"
    # The VDVAE guess and the ablations beside, smaller than the main images.
    guess = page.locator("#browse-vdvae img").bounding_box()
    assert guess["x"] > page.locator(final).bounding_box()["x"] and _image_side(page, "#browse-vdvae img") < 384
    assert page.locator(seen).get_attribute("alt") == "Seen image, image 97"
    assert page.locator(final).get_attribute("alt") == "Final reconstruction, subject 1, image 97"
    # The image across subjects: the seen image, then subjects 1, 2, 5, 7 and their average, guess and final.
    across = page.locator("#browse-across img")
    across.nth(10).wait_for()
    assert across.count() == 11
    assert across.nth(4).get_attribute("alt") == "Subject 2 · final"
    # every caption whole: none cut off with an ellipsis (the long ones were, at both sizes)
    cut = page.locator("#browse-across .caption-label").evaluate_all(
        "els => els.filter(e => e.scrollWidth > e.clientWidth + 1 || e.scrollHeight > e.clientHeight + 1)"
        ".map(e => e.innerText)")
    assert cut == []
    page.screenshot(path=str(OUTPUT / f"browse_{size[0]}x{size[1]}.png"))
    page.close()


def test_browse_one_tab_stop_per_panel_and_every_image_described(browser, demo_url):
    page = _open(browser, SIZES[0], demo_url)
    page.get_by_text("trial 1 of 100").wait_for()
    page.locator("#browse-no_vision img").wait_for()
    for kind in ("ground_truth", "vdvae", "final", "no_vdvae", "no_text", "no_vision"):
        stops = page.locator(f"#browse-{kind}").evaluate(
            "e => [...e.querySelectorAll('button, a[href], input, select, textarea, [tabindex]')]"
            ".filter(x => x.tabIndex >= 0 && !x.disabled && x.offsetParent !== null).length")
        assert stops <= 1, f"{kind}: {stops} tab stops"
        assert page.locator(f"#browse-{kind} img").get_attribute("alt"), kind
    page.close()


def test_subject_switch_keeps_the_image_and_deep_link_round_trip(browser, demo_url):
    page = _open(browser, SIZES[0], demo_url + "?subject=demo-subj01&image=97")
    _shown(page, "demo-subj01", 97)
    page.get_by_label("Subject").first.click()
    page.get_by_role("option", name=re.compile("demo-subj05")).click()
    _shown(page, "demo-subj05", 97)  # the same NSD image, not trial 1
    page.get_by_label("Jump to image id").fill("10")
    page.get_by_label("Jump to image id").press("Enter")  # Enter jumps (no need for Go)
    _shown(page, "demo-subj05", 10)
    page.wait_for_function("() => new URL(location.href).searchParams.get('image') === '10'")
    link = page.url
    assert "subject=demo-subj05" in link and "image=10" in link
    header = page.locator("#browse-header").inner_text()
    page.close()
    again = _open(browser, SIZES[0], link)  # open the copied link: the same trial
    _shown(again, "demo-subj05", 10)
    assert again.locator("#browse-header").inner_text() == header
    again.close()
    classroom = _open(browser, SIZES[0], demo_url + "?tab=classroom")
    classroom.get_by_role("button", name="Next question").wait_for(state="visible")
    assert classroom.get_by_role("tab", name="Classroom").get_attribute("aria-selected") == "true"
    classroom.close()


def test_search_whole_words_count_and_pages(browser, demo_url):
    page = _open(browser, SIZES[0], demo_url)
    page.get_by_text("trial 1 of 100").wait_for()
    page.get_by_text("Showing 1–48 of 100 · page 1 of 3").wait_for()  # every trial, in pages
    page.get_by_role("button", name="Next ▶").click()
    page.get_by_text("Showing 49–96 of 100 · page 2 of 3").wait_for()
    page.get_by_role("button", name="Next ▶").click()
    page.get_by_text("Showing 97–100 of 100 · page 3 of 3").wait_for()
    page.locator(".thumbnail-item").nth(3).wait_for()
    page.get_by_label("Search captions").fill("red house")
    page.get_by_label("Search captions").press("Enter")
    info = page.locator("#browse-hits")
    info.get_by_text(re.compile(r"\d+ trials? match(es)? 'red house' \(every word, whole words or their plurals\)")
                     ).wait_for()
    n = int(re.search(r"(\d+) trial", info.inner_text()).group(1))
    assert 0 < n < 100
    page.close()


def _quiz_boxes(page):
    return {name: page.locator(sel).first.bounding_box() for name, sel in
            {"shown": "#classroom-shown img", **{f"c{i}": f"#classroom-choice-{i} img" for i in range(1, 5)},
             "score": "#classroom-score"}.items()}


@pytest.mark.parametrize("size", [*SIZES, (1280, 720), (960, 600)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_classroom_projector_mode_by_keyboard(browser, demo_url, size):
    width, height = size
    page = _open(browser, size, demo_url + "?tab=classroom")
    page.get_by_role("button", name="Next question").wait_for(state="visible")
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("n")  # N: next question
    page.get_by_text("Which one did the person see?").wait_for()
    page.locator("#classroom-choice-4 img").wait_for()
    if size == (1440, 900):  # without projector mode, all four choices are above the fold
        boxes = _quiz_boxes(page)
        assert all(boxes[f"c{i}"]["y"] + boxes[f"c{i}"]["height"] <= height for i in range(1, 5))
    page.keyboard.press("f")  # F: projector mode (full screen)
    page.wait_for_function("() => document.getElementById('classroom').classList.contains('bd-projector')")
    page.wait_for_timeout(500)
    page.keyboard.press("3")  # 3: vote for the third image
    page.get_by_text("Score: ").first.wait_for()
    page.locator("#classroom .classroom-choice.bd-right").wait_for()  # the right answer is highlighted
    marked = page.locator("#classroom .classroom-choice.bd-right").get_attribute("id")
    assert marked.startswith("classroom-choice-")
    boxes = _quiz_boxes(page)
    assert boxes["shown"]["height"] >= 0.6 * height, boxes["shown"]
    assert boxes["shown"]["y"] + boxes["shown"]["height"] <= height
    tops = sorted({round(boxes[f"c{i}"]["y"]) for i in range(1, 5)})
    lefts = sorted({round(boxes[f"c{i}"]["x"]) for i in range(1, 5)})
    assert len(tops) == 2 and len(lefts) == 2, f"choices not two by two: tops {tops}, lefts {lefts}"
    assert all(boxes[f"c{i}"]["x"] + boxes[f"c{i}"]["width"] <= width for i in range(1, 5))
    # each choice large enough to read across a classroom: about a quarter of the screen's height (one row of four
    # left them about 215 px on a 1920x1080 projector)
    assert all(min(boxes[f"c{i}"]["width"], boxes[f"c{i}"]["height"]) >= 0.24 * height for i in range(1, 5)), boxes
    assert boxes["score"]["y"] + boxes["score"]["height"] <= height, boxes["score"]
    assert page.locator("#classroom-score").evaluate("e => parseFloat(getComputedStyle(e).fontSize)") >= 40
    page.screenshot(path=str(OUTPUT / f"classroom_projector_{width}x{height}.png"))
    page.keyboard.press("n")  # N again: the next question, highlights cleared
    page.wait_for_function("() => !document.querySelector('#classroom .bd-right')")
    page.close()


def test_metrics_baselines_intervals_and_labelled_plots(browser, demo_url):
    page = _open(browser, SIZES[0], demo_url + "?tab=metrics")
    page.get_by_text("Table 2: ablations of").wait_for()
    page.get_by_role("cell", name="Baseline: low-pass seen image").wait_for()
    assert re.search(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]", page.locator("#metrics-table2").inner_text())
    page.get_by_text("Metrics these bundles do not have").wait_for()
    page.wait_for_timeout(2000)
    labels = page.evaluate(
        "() => [...document.querySelectorAll('[aria-label]')].map(e => e.getAttribute('aria-label'))")
    assert not [label for label in labels if "undefined" in label]
    page.close()
