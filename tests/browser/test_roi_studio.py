"""The ROI studio in headless Chromium (issue 17): slider and label boxes at 1440x900 and 1920x1080, readable map
names, clearing the canvas and painting again (red and blue brush), the locked canvas of the average, presets by
keyboard, a recipe replayed into the controls, a history item restoring them, and a recipe link round trip whose
image equals the CLI's for the same recipe.
"""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

from braindiff_app.data.atlas import ALL_REGIONS
from braindiff_app.roi import Recipe
from braindiff_app.stage2 import Stage2Settings
from braindiff_app.ui import text
from braindiff_app.ui.roi import REGION_PARAMS
from braindiff_app.ui.roi_canvas import LABEL_FONT_PX
from tests.browser.conftest import OUTPUT

pytestmark = [pytest.mark.browser, pytest.mark.roi_warm]  # the app loads its ROI models when it starts

SIZES = [(1440, 900), (1920, 1080)]
DEMO_SETTINGS = {**Stage2Settings.for_tier("demo").to_json(), "tier": "demo"}


@pytest.fixture(scope="module")
def studio_url(tmp_path_factory):
    """The app on the demo tier with an empty home: the committed ROI workspace (as a new user gets it)."""
    from braindiff_app.config import load_settings
    from braindiff_app.ui import build_app, launch_app
    from tests.conftest import free_port

    settings = load_settings(tier="demo", home=tmp_path_factory.mktemp("home"), extra_bundle_dirs=())
    app, _, _ = build_app(settings)
    port = free_port()
    launch_app(app, settings, port=port, block=False, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    app.close()


def _open(browser, url: str, size=(1440, 900), ready: str = "Using the demo's committed ROI workspace"):
    page = browser.new_page(viewport={"width": size[0], "height": size[1]})
    page.set_default_timeout(120_000)
    page.goto(url)
    page.get_by_text(ready).wait_for()
    page.locator("#roi-canvas canvas").first.wait_for()
    page.wait_for_timeout(3000)  # the editor draws its background
    return page


def _canvas_pixels(page) -> np.ndarray:
    canvas = page.locator("#roi-canvas canvas").first
    canvas.scroll_into_view_if_needed()
    return np.asarray(Image.open(io.BytesIO(canvas.screenshot())).convert("RGB")).astype(int)


def _drawn_canvas(page, timeout: float = 60.0) -> np.ndarray:
    """The canvas's pixels once the editor has drawn a flatmap again (it redraws after a new value)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        pixels = _canvas_pixels(page)
        if pixels.std() > 30 or time.monotonic() > deadline:
            return pixels
        page.wait_for_timeout(1000)


def _stroke(page) -> None:
    """A stroke down the right hemisphere's V1-V3 (as drawn on the map)."""
    box = page.locator("#roi-canvas canvas").first.bounding_box()
    x0, y0 = box["x"] + box["width"] * 0.62, box["y"] + box["height"] * 0.45
    page.mouse.move(x0, y0)
    page.mouse.down()
    for step in range(1, 15, 3):
        page.mouse.move(x0, y0 + step * box["height"] * 0.02)
    page.mouse.up()
    page.wait_for_timeout(800)


def _red(pixels: np.ndarray) -> int:
    return int(((pixels[..., 0] > 180) & (pixels[..., 1] < 90) & (pixels[..., 2] < 90)).sum())


def _blue(pixels: np.ndarray) -> int:
    return int(((pixels[..., 2] > 180) & (pixels[..., 0] < 90) & (pixels[..., 1] < 140)).sum())


def _number(page, elem_id: str) -> float:
    return float(page.locator(f"#{elem_id} input[type=number]").input_value())


def _set_number(page, elem_id: str, value: float) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")
    page.wait_for_timeout(500)


def _controls(page) -> dict[str, float]:
    return {r: _number(page, f"roi-slider-{REGION_PARAMS[r]}") for r in ALL_REGIONS}


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_sliders_labels_and_map_names_are_whole_and_readable(browser, studio_url, size):
    page = _open(browser, studio_url + "?tab=roi", size)
    assert re.search(r"ROI models ready \(\d+\.\d s to load\)", page.locator("#roi-warm").inner_text())
    page.screenshot(path=str(OUTPUT / f"roi_studio_{size[0]}.png"))
    column = page.locator(".roi-sliders").first.bounding_box()
    boxes = page.evaluate("""() => [...document.querySelectorAll('[id^=roi-slider-]')].map((block) => {
      const box = (el) => { const r = el.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
      const label = block.querySelector('[data-testid=block-info]');
      const number = block.querySelector('input[type=number]');
      return {id: block.id, block: box(block), label: box(label), number: box(number),
              reset: box(block.querySelector('.reset-button')), range: box(block.querySelector('input[type=range]')),
              clipped: block.scrollWidth > block.clientWidth + 1 || label.scrollWidth > label.clientWidth + 1,
              value: number.value, numberFits: number.scrollWidth <= number.clientWidth + 1};
    })""")
    assert len(boxes) == len(ALL_REGIONS)
    for b in boxes:
        left, top, right, bottom = b["block"]
        assert column["x"] - 1 <= left and right <= column["x"] + column["width"] + 1, b
        for part in ("label", "number", "reset", "range"):
            part_left, part_top, part_right, part_bottom = b[part]
            assert left - 1 <= part_left and part_right <= right + 1 and part_right > part_left, (b["id"], part, b)
            assert top - 1 <= part_top and part_bottom <= bottom + 1, (b["id"], part, b)
        assert not b["clipped"] and b["numberFits"] and b["value"] == "0", b
        assert b["range"][2] - b["range"][0] >= 120, b  # a slider one can drag
    rows: dict[float, list] = {}
    for b in boxes:
        rows.setdefault(round(b["block"][1]), []).append(b["block"])
    for row in rows.values():  # sliders side by side never overlap
        row.sort()
        assert all(a[2] <= c[0] + 1 for a, c in zip(row, row[1:], strict=False)), row
    zoom = int(re.search(r"(\d+)%", page.locator("#roi-canvas").inner_text()).group(1))
    assert LABEL_FONT_PX * zoom / 100 >= 12, zoom  # region names drawn at >= 12 px on screen
    page.close()


def test_clear_canvas_then_paint_again_in_the_signs_colour(browser, studio_url):
    page = _open(browser, studio_url + "?tab=roi")
    flatmap = _canvas_pixels(page)
    _stroke(page)
    assert _red(_canvas_pixels(page)) > _red(flatmap) + 200
    page.get_by_role("button", name="Clear canvas").click()
    page.wait_for_timeout(3000)
    cleared = _drawn_canvas(page)
    assert cleared.std() > 30 and abs(cleared.mean() - flatmap.mean()) < 3  # the flatmap is back, the stroke gone
    assert _red(cleared) < _red(flatmap) + 50
    _set_number(page, "roi-paint-weight", -1)
    page.wait_for_timeout(3000)  # the brush update reaches the editor
    _stroke(page)
    for _ in range(10):  # a software-rendered canvas draws a stroke slowly
        blue = _blue(_canvas_pixels(page))
        if blue > _blue(cleared) + 1000:
            break
        page.wait_for_timeout(1000)
    assert blue > _blue(cleared) + 1000 and _red(_canvas_pixels(page)) < _red(flatmap) + 50  # -1: blue brush
    page.locator("#roi-generate").click()
    page.wait_for_function("() => (document.querySelector('#roi-link input, #roi-link textarea') || {}).value"
                           "?.includes('recipe=')")
    assert page.get_by_text("Nothing selected").count() == 0
    recipe = Recipe.from_link(re.search(r"recipe=([\w-]+)", page.url).group(1))
    assert recipe.painted and recipe.painted_weight == -1.0
    caption = page.locator("#roi-history .caption-label").first
    assert caption.inner_text().startswith("1 · S1 · ") and caption.evaluate("e => e.scrollWidth <= e.clientWidth")
    page.wait_for_timeout(2000)  # the thumbnail loads and the gallery settles
    shown, item = page.evaluate("""() => { const c = document.querySelector('#roi-history .caption-label');
      return [c, c.closest('.thumbnail-item')].map((e) => { const r = e.getBoundingClientRect();
      return [r.left, r.top, r.right, r.bottom]; }); }""")
    assert item[0] <= shown[0] and item[1] <= shown[1] and shown[2] <= item[2] and shown[3] <= item[3] + 1, (
        shown, item)  # the caption lies whole on its thumbnail
    page.close()


def test_average_is_refused_at_once_and_presets_work_by_keyboard(browser, studio_url):
    page = _open(browser, studio_url + "?tab=roi")
    page.locator("#roi-presets input[value='faces']").focus()
    page.keyboard.press("Space")
    page.wait_for_function("() => document.querySelector('#roi-slider-faces input[type=number]').value === '1'")
    page.keyboard.press("Tab")  # the next example: words (absent in the demo: stays 0, and the status says so)
    page.keyboard.press("Space")
    page.get_by_text(text.ROI_PRESET_ABSENT.format(subject="1", regions="words")).wait_for()
    assert _controls(page)["words"] == 0.0
    page.keyboard.press("Tab")  # places
    page.keyboard.press("Space")
    page.wait_for_function("() => document.querySelector('#roi-slider-places input[type=number]').value === '1'")
    assert _controls(page)["faces"] == 0.0
    _stroke(page)
    painted = _red(_canvas_pixels(page))
    page.locator("#roi-subject input").click()
    page.get_by_role("option", name="Subject 2").click()
    page.get_by_text(text.ROI_PAINT_KEPT.format(subject="2")).wait_for(timeout=60_000)
    page.wait_for_timeout(2000)
    assert _red(_drawn_canvas(page)) > painted - 100 and _controls(page)["places"] == 1.0
    page.locator("#roi-subject input").click()
    page.get_by_role("option", name="Average of subjects").click()
    page.get_by_text(text.ROI_CANVAS_AVERAGE).wait_for(timeout=60_000)  # said on the switch, not after a generate
    page.get_by_text(text.ROI_PAINT_AVERAGE_DROPPED).wait_for()
    assert _controls(page)["places"] == 1.0  # the weights survive the subject switch
    page.close()


@pytest.mark.parametrize("size", [(1440, 900), (1920, 1080)])
def test_the_activated_voxels_map_starts_below_its_panel_label(browser, studio_url, size):
    # The floating label and buttons covered the map's "LEFT/RIGHT HEMISPHERE" and "dorsal (up)" labels.
    page = _open(browser, studio_url + "?tab=roi", size=size)
    image = page.locator("#roi-pattern img").first
    image.wait_for()
    image.scroll_into_view_if_needed()
    label = page.locator("#roi-pattern label[data-testid='block-label']").bounding_box()
    buttons = page.locator("#roi-pattern .icon-button-wrapper").bounding_box()
    shown = image.bounding_box()
    assert label["y"] + label["height"] <= shown["y"] + 1 and buttons["y"] + buttons["height"] <= shown["y"] + 1
    page.close()


def test_average_chosen_first_empties_the_canvas_and_generates(browser, studio_url):
    # Gradio's editor threw "Cannot read properties of null (reading 'get_data')" on a locked canvas with a
    # background: the switch never finished (the canvas spun on "processing") and Generate did nothing.
    page = _open(browser, studio_url + "?tab=roi")
    flatmap = _canvas_pixels(page)
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.locator("#roi-subject input").click()
    page.get_by_role("option", name="Average of subjects").click()
    page.get_by_text(text.ROI_CANVAS_AVERAGE).wait_for(timeout=60_000)
    page.get_by_text("none of subjects 1, 2, 5, 7 has hV4 voxels").wait_for()  # not "subject 1 has no ..."
    page.wait_for_timeout(1500)
    assert _canvas_pixels(page).std() < flatmap.std() / 2  # the flatmap is gone: nothing to paint on
    page.locator("#roi-presets input[value='faces']").check()
    page.wait_for_function("() => document.querySelector('#roi-slider-faces input[type=number]').value === '1'")
    page.locator("#roi-generate").click()
    page.get_by_text(re.compile(r"· avg · faces\+1 · seed 0")).first.wait_for()
    src = page.locator("#roi-final img").first.get_attribute("src")
    final = np.asarray(Image.open(io.BytesIO(page.request.get(src).body())).convert("RGB")).astype(int)
    assert final.std() > 5 and errors == []
    page.close()


def test_a_weight_typed_out_of_range_and_a_generate_with_nothing_selected(browser, studio_url):
    page = _open(browser, studio_url + "?tab=roi")
    box = page.locator("#roi-slider-V1 input[type=number]")
    box.fill("5")  # Gradio's own slider failed the next event with "Value 5 is greater than maximum value 1"
    box.press("Enter")  # Enter, not Tab: Gradio's slider clamps by itself on blur
    page.wait_for_function("() => document.querySelector('#roi-slider-V1 input[type=number]').value === '1'")
    box.fill("0")
    box.press("Tab")
    page.wait_for_function("() => document.querySelector('#roi-slider-V1 input[type=number]').value === '0'")
    page.locator("#roi-generate").click()
    page.get_by_text(text.ROI_EMPTY.split(":")[0]).first.wait_for()  # the toast says why
    page.locator("#roi-final .error").wait_for()  # the one panel that marks the failure
    for panel in ("#roi-pattern", "#roi-history", "#roi-link", "#roi-subject", "#roi-slider-V1"):
        assert page.locator(f"{panel} .error").count() == 0, panel
    page.close()


def test_replayed_recipe_and_history_item_restore_the_controls(browser, studio_url, tmp_path):
    from braindiff_app.config import load_settings
    from braindiff_app.roi import load_subject_atlas, roi_settings

    atlas = load_subject_atlas(roi_settings(load_settings(tier="demo"))[0], "1")
    recipe = Recipe(subject="1", regions={"V2": -0.5, "faces": 1.0}, painted=tuple(atlas.regions["V1"][:80]),
                    painted_weight=-1.0, seed=5, settings=DEMO_SETTINGS)
    path = recipe.save(tmp_path / "recipe.json")
    page = _open(browser, studio_url + "?tab=roi")
    before = _canvas_pixels(page)
    page.locator("input[type=file]").last.set_input_files(str(path))
    page.wait_for_function("() => document.querySelector('#roi-seed input').value === '5'")
    page.get_by_text(re.compile(rf"roi-1-{recipe.content_id}")).first.wait_for()
    controls = _controls(page)
    assert controls["V2"] == -0.5 and controls["faces"] == 1.0 and controls["V1"] == 0.0
    assert _number(page, "roi-paint-weight") == -1.0
    page.wait_for_timeout(2000)
    assert _blue(_drawn_canvas(page)) > _blue(before) + 100  # the painted voxels, in the brush colour of -1
    # Change the controls, then click the history item: they come back.
    _set_number(page, "roi-slider-V2", 1)
    page.locator("#roi-seed input").fill("9")
    page.locator("#roi-history .thumbnail-item").first.click()
    page.wait_for_function("() => document.querySelector('#roi-seed input').value === '5'")
    assert _controls(page)["V2"] == -0.5
    page.close()


def test_a_bad_recipe_link_says_so_and_opens_the_studio(browser, studio_url):
    page = _open(browser, studio_url + "?tab=roi&recipe=not-a-recipe", ready="could not be read")
    page.locator("#roi-subject input").wait_for()
    assert page.locator("#roi-subject input").input_value() == "Subject 1"  # the label of subject "1"
    page.close()


def test_recipe_link_opens_the_same_controls_and_image_as_the_cli(browser, studio_url, tmp_path):
    from braindiff_app.cli import main

    recipe = Recipe(subject="2", regions={"V1": 1.0, "places": -0.5}, seed=11,
                    settings={**DEMO_SETTINGS, "strength": 0.6})  # a setting the studio has no control for
    page = _open(browser, studio_url + f"?tab=roi&recipe={recipe.to_link()}", ready=text.ROI_LINK_LOADED.split(":")[0])
    assert page.locator("#roi-subject input").input_value() == "Subject 2"
    assert page.locator("#roi-seed input").input_value() == "11"
    controls = _controls(page)
    assert controls["V1"] == 1.0 and controls["places"] == -0.5 and sum(map(abs, controls.values())) == 1.5
    page.locator("#roi-generate").click()
    page.get_by_text(re.compile(rf"roi-2-{recipe.content_id}")).first.wait_for()  # the very same recipe
    src = page.locator("#roi-final img").first.get_attribute("src")
    served = np.asarray(Image.open(io.BytesIO(page.request.get(src).body())).convert("RGB")).astype(int)
    page.screenshot(path=str(OUTPUT / "roi_link_generated.png"), full_page=True)
    page.close()
    assert main(["roi", "--recipe", str(recipe.save(tmp_path / "r.json")), "--out", str(tmp_path / "cli")]) in (0,
                                                                                                                 None)
    (cli_png,) = (tmp_path / "cli").glob("*_final.png")
    cli = np.asarray(Image.open(cli_png).convert("RGB")).astype(int)
    assert served.shape == cli.shape and served.std() > 5
    assert np.abs(served - cli).max() <= 1  # PNG: only float rounding between processes remains
