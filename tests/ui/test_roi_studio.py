"""Issue 17, the ROI studio as an instrument: the map it draws, its palette under colour blindness, recipe links,
controls restored from recipes, history captions, the named API and PNG images equal to the CLI's."""

from __future__ import annotations

import itertools
import json
import zlib

import numpy as np
import pytest
from scipy import ndimage

from braindiff_app.config import load_settings
from braindiff_app.data._flatmap_draw import ROI_COLORS
from braindiff_app.data.atlas import ALL_REGIONS, read_label_volume
from braindiff_app.data.nsd_layout import roi_path
from braindiff_app.roi import Recipe, load_subject_atlas, load_subject_flatmap, roi_settings
from braindiff_app.ui import text
from braindiff_app.ui.roi import REGION_PARAMS, ROIHandlers, history_caption
from braindiff_app.ui.roi_canvas import (
    ECCENTRICITY_COLOUR,
    LABEL_FONT_PX,
    REGION_COLOURS,
    brush_colour,
    curvature_base,
    region_at,
    studio_map,
)
from braindiff_app.ui.state import AppState
from tests.ui.test_roi import stand_in_handlers  # noqa: F401 - the fixture

# Machado, Oliveira & Fernandes (2009), deuteranomaly at severity 1.0, applied to linear RGB.
MACHADO_DEUTERANOPIA = np.array([[0.367322, 0.860646, -0.227968],
                                 [0.280085, 0.672501, 0.047413],
                                 [-0.011820, 0.042940, 0.968881]])


def _linear(rgb):
    c = np.asarray(rgb, dtype=float) / 255
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _lab(linear):
    """CIE L*a*b* (D65) of linear sRGB."""
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ linear
    xyz = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 216 / 24389, np.cbrt(xyz), (24389 / 27 * xyz + 16) / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def _seen_by_deuteranope(rgb):
    return _lab(np.clip(MACHADO_DEUTERANOPIA @ _linear(rgb), 0, 1))


def test_outline_colours_stay_distinct_under_deuteranopia():
    colours = {**REGION_COLOURS, "eccentricity": ECCENTRICITY_COLOUR}
    distance = {(a, b): float(np.linalg.norm(_seen_by_deuteranope(colours[a]) - _seen_by_deuteranope(colours[b])))
                for a, b in itertools.combinations(colours, 2)}
    assert min(distance.values()) > 15, min(distance.items(), key=lambda kv: kv[1])  # CIE76 delta E
    for pair in itertools.combinations(("V1", "V2", "V3"), 2):  # neighbours on the map
        assert distance[pair] > 30, pair
    # The former palette fails the same check: its V2 and V3 looked one yellow.
    old = [_seen_by_deuteranope(ROI_COLORS[r]) for r in ("V1", "V2", "V3")]
    assert min(np.linalg.norm(a - b) for a, b in itertools.combinations(old, 2)) < 30


@pytest.fixture(scope="module")
def demo_map():
    settings, _ = roi_settings(load_settings(tier="demo"))
    atlas = load_subject_atlas(settings, "1")
    image, lookup = load_subject_flatmap(settings, atlas)
    return settings, atlas, image, lookup, studio_map(image, lookup, atlas)


def test_map_outlines_come_from_the_atlas_in_the_palette(demo_map):
    _, atlas, image, lookup, smap = demo_map
    base = curvature_base(image)
    for name in ("V1", "V2", "faces"):  # the build-time outlines are gone from the base
        assert not (base[..., :3] == ROI_COLORS[name]).all(-1).any(), name
    untouched = (image[..., :3] == base[..., :3]).all(-1) & (image[..., 3] > 0)
    assert untouched.mean() > 0.8
    drawn = smap.draw()
    for name in ("V1", "V2", "V3", "places", "bodies"):  # (faces are white, like the names)
        ring = (drawn[..., :3] == REGION_COLOURS[name]).all(-1) & (lookup >= 0)
        assert ring.sum() > 200, name
        on_region = np.isin(lookup[ring], atlas.regions[name])
        assert on_region.mean() > 0.8, (name, on_region.mean())
    bands = smap.draw(eccentricity=True)
    assert (bands[..., :3] == ECCENTRICITY_COLOUR).all(-1).sum() > (drawn[..., :3] == 0).all(-1).sum() + 1000
    # Names at LABEL_FONT_PX: the canvas draws the 900-pixel map at >= 54 % (measured in the browser tests).
    assert LABEL_FONT_PX * 0.54 >= 12 and drawn.shape == image.shape


def test_off_cortex_pixels_keep_no_remnant_of_the_builders_names(demo_map):
    """The committed flatmap has translucent, grey pixels off the cortex (the build-time "V1" names, which showed
    as a grey smudge beside the studio's own V1 label); the studio's base keeps none of them."""
    _, _, image, lookup, smap = demo_map
    translucent = (image[..., 3] > 0) & (image[..., 3] < 255)
    assert translucent.sum() > 50 and (lookup[translucent] < 0).all()  # the remnants, all off the cortex
    assert not ((smap.base[..., 3] > 0) & (smap.base[..., 3] < 255)).any()
    clear = smap.base[..., 3] == 0
    assert clear[translucent].all() and (smap.base[clear, :3] == 255).all()  # no hidden colour to blend back
    # One opaque island of the build-time names lies over no voxel: gone; the cortex itself stays opaque.
    islands, n = ndimage.label(image[..., 3] == 255)
    sizes = np.bincount(islands.ravel())[1:]
    assert n == 2 and sizes.min() < 500 and not (lookup[islands == 1 + int(np.argmin(sizes))] >= 0).any()
    assert (smap.base[islands == 1 + int(np.argmin(sizes)), 3] == 0).all()
    assert (smap.base[islands == 1 + int(np.argmax(sizes)), 3] == 255).all()


def test_orientation_labels_match_the_demo_geometry(demo_map):
    """"dorsal (up)" and "left hemisphere" on the left are true of the map: V1d lies above V1v."""
    settings, atlas, _, lookup, smap = demo_map
    labels = read_label_volume(roi_path(settings.nsd_dir, 1, "prf-visualrois"))[tuple(atlas.voxel_ijk.T)]
    pixel_label = np.where(lookup >= 0, labels[np.clip(lookup, 0, None)], 0)
    for ventral, dorsal in ((1, 2), (3, 4), (5, 6)):  # V1v/V1d, V2v/V2d, V3v/V3d
        assert np.nonzero(pixel_label == dorsal)[0].mean() < np.nonzero(pixel_label == ventral)[0].mean() - 50
    assert {1, 2} <= set(np.unique(smap.side)) and (smap.side[:, :100] != 2).all()


def test_region_readout_names_the_voxel_the_brush_selects(demo_map):
    _, atlas, _, lookup, smap = demo_map
    rows, cols = np.nonzero(np.isin(lookup, atlas.regions["V2"]))
    y, x = int(rows[len(rows) // 2]), int(cols[len(cols) // 2])
    said = region_at(smap, atlas, x, y)
    assert "V2" in said and f"voxel {lookup[y, x]}" in said and "V1" not in said.split("·")[0]
    off = np.argwhere(lookup < 0)[0]
    assert "off the cortex" in region_at(smap, atlas, int(off[1]), int(off[0]))
    assert "outside" in region_at(smap, atlas, 10_000, 5)


def test_brush_colour_follows_the_sign():
    assert brush_colour(1.0) == "#dc2828" and brush_colour(0.5) == "#dc2828"
    assert brush_colour(-0.5) == "#285ae6" and brush_colour(None) == "#dc2828"


def test_recipe_link_round_trip_and_refusals():
    recipe = Recipe(subject="1", regions={"V1": 1.0, "ecc4+": -0.5}, painted=tuple(range(0, 3000, 7)),
                    painted_weight=-1.0, seed=12, settings={"tier": "demo", "strength": 0.5, "rescale": "norm"})
    token = recipe.to_link()
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    back = Recipe.from_link(token)
    assert back == recipe and back.content_id == recipe.content_id
    assert len(token) < len(json.dumps(recipe.to_json()))  # compressed
    with pytest.raises(ValueError, match="not a recipe that the studio.s Copy link wrote"):
        Recipe.from_link("not*base64")
    import base64

    bomb = base64.urlsafe_b64encode(zlib.compress(b" " * (20 * 2**20), 9)).decode().rstrip("=")
    with pytest.raises(ValueError, match="inflates to more than"):
        Recipe.from_link(bomb)
    with pytest.raises(ValueError, match="not a braindiff ROI recipe"):
        Recipe.from_link(base64.urlsafe_b64encode(zlib.compress(b'{"a": 1}')).decode())


def test_recipes_written_by_the_studio_are_complete(stand_in_handlers):  # noqa: F811
    handlers = ROIHandlers(AppState(stand_in_handlers))
    recipe = handlers.recipe("1", {"V1": 1.0}, None, painted_weight=1.0, seed=0)
    path = handlers.generate(recipe, session="s").recipe_path
    written = json.loads(open(path).read())["settings"]
    assert set(written) == {"strength", "vision_weight", "guidance_scale", "num_inference_steps", "rescale",
                            "protocol", "tier"}


def test_controls_from_a_recipe_make_the_same_recipe(stand_in_handlers):  # noqa: F811
    """Restoring a recipe into the controls (painted layer included), then building a recipe from those controls,
    gives the same recipe: replay, history and links restore what made the image."""
    from braindiff_app.ui.roi import _mask_from_editor

    handlers = ROIHandlers(AppState(stand_in_handlers))
    mask = np.zeros((4, 3), bool)
    mask[1, 1] = mask[3, 2] = True
    recipe = handlers.recipe("1", {"V1": -0.5, "faces": 1.0}, mask, painted_weight=-1.0, seed=9,
                             settings={"strength": 0.5, "num_inference_steps": 4, "rescale": "norm"})
    controls = handlers.controls(recipe)
    assert controls.subject == "1" and controls.seed == 9 and controls.painted_weight == -1.0
    assert controls.weights["faces"] == 1.0 and controls.weights["V2"] == 0.0 and set(controls.weights) == set(
        ALL_REGIONS)
    assert controls.layer.shape == (4, 3, 4) and tuple(controls.layer[1, 1]) == (40, 90, 230, 255)  # blue: -1
    again = handlers.recipe(controls.subject, controls.weights, _mask_from_editor({"layers": [controls.layer]}),
                            controls.painted_weight, controls.seed, settings=controls.settings)
    assert again.content_id == recipe.content_id


def test_history_captions_are_short_and_name_the_experiment():
    recipe = Recipe(subject="1", regions={r: 1.0 for r in ALL_REGIONS}, painted=(1, 2, 3), seed=123456)
    caption = history_caption(7, recipe)
    assert len(caption) <= 52 and caption.startswith("7 · S1 · V1+1") and caption.endswith("seed 123456")
    assert history_caption(1, Recipe(subject="average", regions={"faces": 1.0})) == "1 · avg · faces+1 · seed 0"


def test_api_names_every_roi_input_and_lists_no_stray_endpoint(live_app):
    from gradio_client import Client

    url, _ = live_app
    api = Client(url, verbose=False).view_api(return_format="dict", print_info=False)
    params = [p["parameter_name"] for p in api["named_endpoints"]["/roi_generate"]["parameters"]]
    assert params == ["subject", "seed", "canvas", "paint_weight", *REGION_PARAMS.values(), "candidates"]
    for name, endpoint in api["named_endpoints"].items():
        assert not any(p["parameter_name"].startswith("param_") for p in endpoint["parameters"]), name
    assert not {"/list", "/lambda"} & set(api["named_endpoints"]) and not api["unnamed_endpoints"]


def test_studio_images_are_the_clis_png(tmp_path, monkeypatch):
    """The final image an API client downloads is a PNG equal, pixel for pixel, to `braindiff roi --recipe`'s."""
    from gradio_client import Client
    from PIL import Image

    from braindiff_app.cli import main
    from braindiff_app.ui import build_app, launch_app
    from tests.conftest import free_port

    monkeypatch.setenv("BRAINDIFF_HOME", str(tmp_path / "home"))
    settings = load_settings(tier="demo", home=tmp_path / "home")
    app, _, _ = build_app(settings)
    port = free_port()
    launch_app(app, settings, port=port, block=False, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        out = client.predict(subject="1", seed=3, canvas=None, paint_weight=1, **{REGION_PARAMS["faces"]: 1},
                             candidates=1, api_name="/roi_generate")  # one image: the recipe's own seed
    finally:
        app.close()
    final_path, recipe_path = out[1], out[3]
    final_path = final_path if isinstance(final_path, str) else final_path["path"]
    recipe_path = recipe_path if isinstance(recipe_path, str) else recipe_path["path"]
    with Image.open(final_path) as image:
        assert image.format == "PNG"
        served = np.asarray(image.convert("RGB"))
    assert main(["roi", "--recipe", recipe_path, "--out", str(tmp_path / "cli")]) in (0, None)
    (cli_png,) = (tmp_path / "cli").glob("*_final.png")
    cli = np.asarray(Image.open(cli_png).convert("RGB"))
    assert served.std() > 5 and served.shape == cli.shape  # an image, not a flat field
    # Lossless: the WebP the app used to send was up to 30/255 off. What remains is float rounding between two
    # processes' pipeline calls (measured: 3 of 12288 values off by 1/255).
    difference = np.abs(served.astype(int) - cli)
    assert difference.max() <= 1 and (difference > 0).mean() < 0.002


@pytest.mark.roi_warm
def test_warm_up_reports_loading_then_ready(stand_in_handlers):  # noqa: F811
    handlers = ROIHandlers(AppState(stand_in_handlers))
    assert handlers.warm_status() == ("", True)
    handlers.warm()
    for _ in range(200):
        line, over = handlers.warm_status()
        if over:
            break
        assert line.startswith(text.ROI_WARMING[:20])
        import time

        time.sleep(0.05)
    assert over and line.startswith("_ROI models ready")


def test_presets_are_the_papers_figure_regions():
    from braindiff_app.ui.roi import PRESETS

    assert set(PRESETS) >= {"V1", "V2", "V3", "hV4", "faces", "words", "places", "bodies"}
    assert sum(1 for name in PRESETS if name.startswith("ecc")) == 5
    for weights in PRESETS.values():
        assert set(weights) <= set(ALL_REGIONS) and all(weights.values())
